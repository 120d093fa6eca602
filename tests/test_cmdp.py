import gymnasium as gym
import numpy as np
import pytest

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.cmdp import (
    CostSpec,
    RecordEpisodeCostStatistics,
    SafetyGymnasiumAdapter,
    SingleCostWrapper,
    get_cost_spec,
)


def _env(**kwargs):
    return gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5, **kwargs)


def test_cost_spec_validation():
    spec = CostSpec(("latency_s", "energy_j"), ("s", "J"), (4.0, 900.0))
    assert spec.index("energy_j") == 1
    assert spec.with_limits({"energy_j": 10.0}).limits == (4.0, 10.0)
    with pytest.raises(ValueError, match="limit of 'a' must be finite and > 0"):
        CostSpec(("a",), ("s",), (0.0,))
    with pytest.raises(ValueError, match="same length"):
        CostSpec(("a", "b"), ("s",), (1.0, 1.0))
    with pytest.raises(ValueError, match="unknown cost 'x'"):
        spec.index("x")


def test_reset_returns_zero_costs_and_step_the_normalised_max():
    env = _env()
    _, info = env.reset(seed=0)
    assert info["cost"] == 0.0 and info["costs"].tolist() == [0.0]
    # an extreme action makes devices late: cost = miss fraction / limit
    _, _, _, _, info = env.step(np.full(10, -1.0, dtype=np.float32))
    assert info["costs"].dtype == np.float64
    assert info["cost"] == pytest.approx(info["costs"][0] / 0.05)
    assert info["costs"][0] == pytest.approx(np.mean(info["late"]))


def test_single_cost_and_safety_gymnasium_adapters():
    single = SingleCostWrapper(_env(), cost="deadline_miss_fraction")
    assert get_cost_spec(single).limits == (0.05,)
    single.reset(seed=1)
    _, _, _, _, info = single.step(np.full(10, -1.0, dtype=np.float32))
    assert info["cost"] == pytest.approx(info["costs"][0] / 0.05)

    normalised = SingleCostWrapper(_env())
    assert get_cost_spec(normalised).names == ("max_cost_ratio",)

    safe = SafetyGymnasiumAdapter(_env())
    safe.reset(seed=1)
    out = safe.step(np.full(10, -1.0, dtype=np.float32))
    assert len(out) == 6
    assert out[2] == pytest.approx(out[5]["cost"]) and out[2] > 0


def test_episode_cost_statistics_sum_the_steps():
    env = RecordEpisodeCostStatistics(_env())
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    total, done, info = np.zeros(1), False, {}
    while not done:
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 10).astype(np.float32))
        total += info["costs"]
        done = terminated or truncated
    np.testing.assert_allclose(info["episode_cost"]["sum"], total)
    np.testing.assert_allclose(info["episode_cost"]["mean"], total / 5)
    assert info["episode_cost"]["violation"] == bool(total[0] / 5 > 0.05)
    assert len(env.cost_queue) == 1


def test_get_cost_spec_through_vector_envs_and_errors():
    vec = gym.make_vec("edgegen/FedDiffusion-v0", num_envs=2, vectorization_mode="sync")
    assert get_cost_spec(vec).names == ("deadline_miss_fraction",)
    with pytest.raises(ValueError, match="declares no cost_spec"):
        get_cost_spec(gym.make("CartPole-v1"))


def test_normalize_costs_divides_by_the_limits_and_any_agent_sees_limits_of_one():
    from edgegen.envs.cmdp import NormalizeCosts

    plain, wrapped = gym.make("edgegen/MEG-v0"), NormalizeCosts(gym.make("edgegen/MEG-v0"))
    limits = np.array([3.8, 650.0])
    spec = get_cost_spec(wrapped)
    assert spec.names == ("latency_s", "energy_j") and spec.limits == (1.0, 1.0) and spec.units == ("1", "1")
    _, info = wrapped.reset(seed=2)
    assert np.all(info["costs"] == 0) and "costs_raw" in info
    plain.reset(seed=2)
    for a in np.random.default_rng(0).uniform(-1, 1, size=(10, 2)).astype(np.float32):
        raw = plain.step(a)[4]
        info = wrapped.step(a)[4]
        np.testing.assert_allclose(info["costs"], raw["costs"] / limits, rtol=1e-15)
        np.testing.assert_array_equal(info["costs_raw"], raw["costs"])
        assert info["cost"] == raw["cost"] == pytest.approx(max(raw["costs"] / limits), rel=1e-15)


def test_clip_costs_caps_each_cost_at_a_multiple_of_its_limit_and_keeps_the_rest():
    from edgegen.envs.cmdp import ClipCosts

    plain, wrapped = gym.make("edgegen/SFLAM-v0"), ClipCosts(gym.make("edgegen/SFLAM-v0"), max_multiple=4.0)
    assert get_cost_spec(wrapped) == get_cost_spec(plain)
    plain.reset(seed=3)
    wrapped.reset(seed=3)
    clipped = kept = 0
    for a in np.clip(0.5 + np.random.default_rng(1).normal(0, 0.3, (20, 30)), -1, 1).astype(np.float32):
        raw = plain.step(a)[4]["costs"][0]
        info = wrapped.step(a)[4]
        assert info["costs_raw"][0] == raw
        # the cap is 4 x 2.5 s = 10 s; these actions give rounds of 7-15 s, on both sides of it
        assert info["costs"][0] == (10.0 if raw > 10.0 else raw)
        assert info["cost"] == pytest.approx(info["costs"][0] / 2.5, rel=1e-12)  # one cost: its share
        clipped, kept = clipped + (raw > 10.0), kept + (raw <= 10.0)
    assert clipped > 0 and kept > 0, (clipped, kept)
    with pytest.raises(ValueError, match="max_multiple must be > 1"):
        ClipCosts(gym.make("edgegen/SFLAM-v0"), max_multiple=1.0)


def test_ppo_lagrangian_on_normalized_costs_moves_its_multipliers_as_on_raw_costs():
    # PPOLagrangian's multiplier step is on cost / limit - 1: the wrapper must not change it. (Only
    # the first step is compared: later rollouts differ, as the cost critics learn other scales.)
    from stable_baselines3.common.env_util import make_vec_env

    from edgegen.agents import PPOLagrangian
    from edgegen.envs.cmdp import NormalizeCosts

    lambdas = []
    for wrapper in (None, NormalizeCosts):
        vec = make_vec_env("edgegen/MEG-v0", n_envs=1, seed=4, wrapper_class=wrapper)
        model = PPOLagrangian("MlpPolicy", vec, n_steps=128, batch_size=64, n_epochs=1, seed=4)
        model.learn(128)
        lambdas.append(model.lambdas.copy())
    assert np.all(lambdas[0] > 0)
    np.testing.assert_allclose(lambdas[1], lambdas[0], rtol=1e-6)  # costs pass through float32
