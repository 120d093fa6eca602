import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.fed_diffusion import FedDiffusionConfig, make_config
from edgegen.envs.fed_diffusion.env import FedDiffusionEnv
from edgegen.envs.quantization import payload_bits
from edgegen.solvers.fed_energy import solve_round_energy, with_payload

ID = "edgegen/FedDiffusion-v0"


@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_env_checkers_pass_without_warnings(render_mode):
    env = gym.make(ID, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_make_with_module_prefix_and_registry_settings():
    env = gym.make("edgegen:edgegen/FedDiffusion-v0")
    assert env.spec.max_episode_steps == 50
    assert env.unwrapped.cost_spec.names == ("deadline_miss_fraction",)


def _rollout(env, seed, steps, action_seed=0):
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(action_seed).uniform(-1, 1, (steps, env.action_space.shape[0]))
    trace = [obs]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a.astype(np.float32))
        trace += [obs, np.array([reward]), info["costs"], info["device_energy_j"]]
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


def test_same_seed_same_trajectory_and_seeds_differ():
    a = _rollout(gym.make(ID), seed=42, steps=120)
    b = _rollout(gym.make(ID), seed=42, steps=120)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"entry {i}")
    c = _rollout(gym.make(ID), seed=43, steps=5)
    assert not np.array_equal(a[0], c[0])


def test_pickle_round_trip_keeps_the_episode():
    env = gym.make(ID).unwrapped
    env.reset(seed=9)
    clone = pickle.loads(pickle.dumps(env))
    action = env.action_space.sample()
    np.testing.assert_array_equal(env.step(action)[0], clone.step(action)[0])


def test_oracle_action_reaches_oracle_energy_and_beats_baselines():
    env = gym.make(ID, num_rounds=20, max_episode_steps=20, oracle_in_info=True)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    u = env.unwrapped
    for _ in range(20):
        problem = u.round_problem()
        oracle = u.oracle_action("per_round")
        feasible = problem.feasible
        # the env's energy for the oracle action is the oracle's energy; no feasible device is late
        probe = pickle.loads(pickle.dumps(u))
        _, reward, _, _, info = probe.step(oracle)
        assert info["energy_j"] == pytest.approx(info["oracle_energy_j"], rel=1e-12)
        assert reward == pytest.approx(-info["energy_j"] / u.config.energy_scale_j)
        assert not np.any(info["late"] & feasible)
        assert np.array_equal(info["late"], ~feasible)
        for baseline in (u.equal_split_action(), rng.uniform(-1, 1, 10).astype(np.float32)):
            probe = pickle.loads(pickle.dumps(u))
            _, _, _, _, other = probe.step(baseline)
            late_ok = not np.any(other["late"] & feasible)
            assert (not late_ok) or other["energy_j"] >= info["energy_j"] * (1 - 1e-12)
        env.step(env.action_space.sample())


def test_costs_count_late_devices_and_reward_is_energy():
    env = gym.make(ID)
    env.reset(seed=1)
    # all upload and no compute time: every device is late
    _, reward, _, _, info = env.step(np.ones(10, dtype=np.float32))
    assert info["costs"][0] == 1.0 and info["late"].all()
    assert reward == pytest.approx(-info["energy_j"] / 10.0)
    np.testing.assert_allclose(info["device_energy_j"], info["compute_energy_j"] + info["upload_energy_j"])
    cfg = env.unwrapped.config
    np.testing.assert_allclose(info["frequency_hz"], cfg.max_frequency_hz)


def _vector_reference(seeds, actions, rounds):
    """Per env: (costs at each step, whether that step ended the episode), replayed on single envs."""
    out = []
    for i, seed in enumerate(seeds):
        env = gym.make(ID, num_rounds=rounds, max_episode_steps=rounds)
        env.reset(seed=seed)
        costs, ends = [], []
        for a in actions[:, i]:
            _, _, term, trunc, info = env.step(a)
            costs.append(info["costs"][0])
            ends.append(term or trunc)
            if term or trunc:
                env.reset()
        out.append((costs, ends))
    return out


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("autoreset", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_envs_keep_costs_aligned(mode, autoreset):
    rounds, n_envs, seeds = 3, 2, [5, 6]
    vec = gym.make_vec(
        ID,
        num_envs=n_envs,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": autoreset},
        num_rounds=rounds,
        max_episode_steps=rounds,
    )
    vec.reset(seed=seeds)
    rng = np.random.default_rng(1)
    # actions -1 make every device late (cost 1); +0 are mostly on time: a distinct cost per step
    actions = rng.choice([-1.0, 0.0], size=(9, n_envs))[:, :, None] * np.ones((1, 1, 10), np.float32)
    if autoreset == AutoresetMode.NEXT_STEP:
        # the step after an episode end is a reset step: the action is ignored and costs are zero
        ref_actions = [a for j, a in enumerate(actions) if (j + 1) % (rounds + 1) != 0]
        reference = _vector_reference(seeds, np.array(ref_actions), rounds)
        for j, a in enumerate(actions):
            _, _, _, _, infos = vec.step(a)
            for i in range(n_envs):
                if (j + 1) % (rounds + 1) == 0:
                    assert infos["costs"][i][0] == 0.0
                else:
                    k = j - (j + 1) // (rounds + 1)
                    assert infos["costs"][i][0] == reference[i][0][k]
    else:
        reference = _vector_reference(seeds, actions, rounds)
        for j, a in enumerate(actions):
            _, _, term, trunc, infos = vec.step(a)
            for i in range(n_envs):
                if term[i] or trunc[i]:
                    assert infos["final_info"]["costs"][i][0] == reference[i][0][j]
                    assert infos["costs"][i][0] == 0.0  # the reset's info
                else:
                    assert infos["costs"][i][0] == reference[i][0][j]
    vec.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([0.0] * 9 + [np.nan]), r"NaN/inf at entries \[9\]"),
        (np.array([np.inf] + [0.0] * 9), r"NaN/inf at entries \[0\]"),
        (np.zeros(9), r"action must have shape \(10,\)"),
    ],
)
def test_bad_actions_raise(action, match):
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.step(action)


def test_out_of_range_actions_are_clipped():
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    clone = pickle.loads(pickle.dumps(env))
    a = np.linspace(-3, 3, 10)
    _, r1, _, _, i1 = env.step(a)
    _, r2, _, _, i2 = clone.step(np.clip(a, -1, 1))
    assert r1 == r2 and np.array_equal(i1["late"], i2["late"])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_power_dbm", 60.0, r"max_power_dbm must be \[-30, 50\]"),
        ("num_devices", 0, "num_devices must be >= 1"),
        ("fixed_bits", 33, r"fixed_bits must be integers in \[1, 32\]"),
        ("demanded_bits_choices", (0, 8), r"demanded_bits_choices must be integers in \[1, 32\]"),
        ("round_time_s", 5.0, r"round_time_s must be > .* s \(the farthest"),
        ("round_time_s", -1.0, r"round_time_s must be > 0"),
        ("kappa", float("nan"), "kappa must be > 0"),
        ("quantization", "int4", "quantization must be one of"),
        ("deadline_miss_fraction_limit", 0.0, r"deadline_miss_fraction_limit must be \(0, 1\]"),
    ],
)
def test_bad_config_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=f"FedDiffusionConfig.{match}"):
        FedDiffusionConfig(**{field: value})


def test_unknown_preset_and_field():
    with pytest.raises(ValueError, match="unknown FedDiffusion-v0 preset 'huge'"):
        make_config("huge")
    with pytest.raises(TypeError, match=r"unknown FedDiffusionConfig field\(s\) \['bandwidth'\]"):
        gym.make(ID, bandwidth=1.0)


def test_step_before_reset_and_bad_render_mode():
    env = FedDiffusionEnv()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(10))
    with pytest.raises(RuntimeError, match="call reset"):
        env.oracle_action()
    with pytest.raises(ValueError, match="render_mode must be one of"):
        FedDiffusionEnv(render_mode="human")


def test_render_modes():
    env = gym.make(ID, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.full(10, -1.0, np.float32))
    image = env.render()
    assert image.dtype == np.uint8 and image.ndim == 3
    assert (image == [200, 40, 40]).all(axis=-1).any()  # the violated constraint is drawn red
    text = gym.make(ID, render_mode="ansi")
    text.reset(seed=0)
    text.step(np.zeros(10, np.float32))
    assert text.render().startswith("round 1/50")


def test_default_preset_balances_energy_and_binds_the_deadline():
    """Documented design choice: at the oracle both energy parts are >= 10 % of the total."""
    env = gym.make(ID)
    shares, misses = [], []
    for seed in range(10):
        env.reset(seed=seed)
        result = solve_round_energy(env.unwrapped._episode)
        out = result.outcome
        shares.append(out.compute_energy_j.sum() / out.energy_j.sum())
        misses.append(np.mean(~result.feasible))
        assert np.all(result.multiplier[result.feasible] > 0)
    assert 0.1 <= np.mean(shares) <= 0.9
    assert np.mean(misses) < 0.05  # the oracle meets the deadline-miss limit


def test_oracle_energy_rises_with_bits():
    """Fewer bits, less energy: 32-bit >= fixed 8-bit >= 4-bit at the oracle (same channels)."""
    env = gym.make(ID)
    env.reset(seed=4)
    problem = env.unwrapped._episode
    d = env.unwrapped.config.num_params
    energies = [
        solve_round_energy(with_payload(problem, payload_bits(d, b))).total_energy_j.sum()
        for b in (32, 16, 8, 4)
    ]
    assert energies == sorted(energies, reverse=True)


def test_oracle_in_info_off_solves_lazily_with_the_same_answer():
    lazy = gym.make(ID)
    eager = gym.make(ID, oracle_in_info=True)
    lazy.reset(seed=8)
    eager.reset(seed=8)
    action = np.zeros(10, np.float32)
    _, _, _, _, info = lazy.step(action)
    assert "oracle_energy_j" not in info
    _, _, _, _, info_eager = eager.step(action)
    np.testing.assert_array_equal(
        lazy.unwrapped.oracle_action("per_round"), eager.unwrapped.oracle_action("per_round")
    )
    _, _, _, _, info = lazy.step(lazy.unwrapped.oracle_action("per_round"))
    _, _, _, _, info_eager = eager.step(eager.unwrapped.oracle_action("per_round"))
    assert (
        info["energy_j"] == info_eager["energy_j"] == pytest.approx(info_eager["oracle_energy_j"], rel=1e-12)
    )


@pytest.mark.parametrize(
    ("kwargs", "episodes"),
    [
        ({}, 20),  # 10,000 device-rounds
        ({"preset": "large"}, 20),  # 50,000 device-rounds
        ({"kappa": 1e-100}, 4),  # every device power-capped: the share sits exactly on t_min / T
        ({"total_bandwidth_hz": 1e15}, 4),  # shares ~1e-9, below float32's spacing near -1
    ],
    ids=["default", "large", "tiny-kappa", "huge-bandwidth"],
)
def test_oracle_action_makes_no_device_late_that_can_be_on_time(kwargs, episodes):
    # The oracle's float32 action is rounded inward: storing it must not make a feasible device late.
    env = gym.make(ID, **kwargs)
    late_but_feasible = device_rounds = 0
    for episode in range(episodes):
        env.reset(seed=77000 + episode)
        for _ in range(env.unwrapped.horizon):
            feasible = env.unwrapped.round_problem().feasible
            _, _, _, _, info = env.step(env.unwrapped.oracle_action("per_round"))
            late_but_feasible += int(np.count_nonzero(info["late"] & feasible))
            device_rounds += feasible.size
    assert device_rounds == episodes * env.unwrapped.horizon * env.unwrapped.config.num_devices
    assert late_but_feasible == 0
