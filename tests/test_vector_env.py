"""The native batched vector envs against Gymnasium's SyncVectorEnv over the scalar envs."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import PPOLagrangian
from edgegen.agents.vec_env import SB3VecEnv

# (id, kwargs, exact): FedDiffusion and MEG are bit for bit; SFLAM sums its rounds in another order.
CASES = [
    ("edgegen/FedDiffusion-v0", {}, True),
    ("edgegen/FedDiffusion-v0", {"preset": "static", "num_rounds": 7}, True),
    ("edgegen/MEG-v0", {}, True),
    ("edgegen/MEG-v0", {"preset": "fading", "horizon": 9}, True),
    ("edgegen/MEG-v0", {"feature_noise": "snr", "horizon": 5}, True),
    ("edgegen/SFLAM-v0", {}, False),
    ("edgegen/SFLAM-v0", {"preset": "small", "num_rounds": 6}, False),
]
IDS = [f"{i.split('/')[1]}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for i, kw, _ in CASES]


def _pair(env_id, kwargs, mode, n=4):
    batched = gym.make_vec(
        env_id, num_envs=n, vectorization_mode="vector_entry_point", autoreset_mode=mode, **kwargs
    )
    sync = gym.make_vec(
        env_id, num_envs=n, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, **kwargs
    )
    return batched, sync


def _same(a, b, exact):
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize(("env_id", "kwargs", "exact"), CASES, ids=IDS)
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP], ids=["next", "same"])
def test_batched_env_equals_sync_vector_env_step_for_step(env_id, kwargs, exact, mode):
    batched, sync = _pair(env_id, kwargs, mode)
    assert batched.observation_space == sync.observation_space
    assert batched.action_space == sync.action_space
    obs_b, _ = batched.reset(seed=11)
    obs_s, _ = sync.reset(seed=11)
    np.testing.assert_array_equal(obs_b, obs_s)
    rng = np.random.default_rng(5)
    horizon = gym.make(env_id, **kwargs).unwrapped.horizon
    episodes_seen = 0
    for _ in range(3 * horizon + 4):  # several episodes, each ending and autoresetting
        actions = rng.uniform(-1.2, 1.2, batched.action_space.shape).astype(np.float32)
        out_b, out_s = batched.step(actions), sync.step(actions)
        for x, y in zip(out_b[:4], out_s[:4], strict=True):
            _same(x, y, exact)
        _same(out_b[4]["costs"], out_s[4]["costs"], exact)
        _same(out_b[4]["cost"], out_s[4]["cost"], exact)
        if mode == AutoresetMode.SAME_STEP and "final_info" in out_s[4]:
            mask = out_s[4]["_final_info"]
            np.testing.assert_array_equal(out_b[4]["_final_info"], mask)
            _same(out_b[4]["final_info"]["costs"][mask], out_s[4]["final_info"]["costs"][mask], exact)
            for i in np.flatnonzero(mask):
                _same(out_b[4]["final_obs"][i], out_s[4]["final_obs"][i], exact)
        episodes_seen += int(out_s[3].sum())
    assert episodes_seen >= 3 * 4


@pytest.mark.parametrize("env_id", ["edgegen/FedDiffusion-v0", "edgegen/MEG-v0", "edgegen/SFLAM-v0"])
def test_batched_env_reseeds_like_sync_and_resets_by_mask(env_id):
    batched, sync = _pair(env_id, {}, AutoresetMode.NEXT_STEP, n=3)
    obs_b, _ = batched.reset(seed=[4, None, 9])
    obs_s, _ = sync.reset(seed=[4, None, 9])
    np.testing.assert_array_equal(obs_b[[0, 2]], obs_s[[0, 2]])
    batched.step(batched.action_space.sample())
    mask = np.array([True, False, True])
    obs_b, info = batched.reset(seed=[7, None, 8], options={"reset_mask": mask})
    single = gym.make(env_id)
    np.testing.assert_array_equal(obs_b[0], single.reset(seed=7)[0])
    np.testing.assert_array_equal(obs_b[2], single.reset(seed=8)[0])
    np.testing.assert_array_equal(info["_costs"], mask)


@pytest.mark.parametrize("env_id", ["edgegen/FedDiffusion-v0", "edgegen/MEG-v0", "edgegen/SFLAM-v0"])
def test_bad_batched_actions_name_the_sub_env(env_id):
    batched = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
    batched.reset(seed=0)
    actions = np.zeros(batched.action_space.shape)
    actions[2, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"NaN/inf in sub-env\(s\) \[2\] \(entries by sub-env: \{2: \[1\]\}\)"
    ):
        batched.step(actions)
    with pytest.raises(ValueError, match="batched actions must have shape"):
        batched.step(actions[:2])
    with pytest.raises(ValueError, match="live backend stays scalar"):
        gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", backend="live")


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [("edgegen/FedDiffusion-v0", {}), ("edgegen/MEG-v0", {}), ("edgegen/SFLAM-v0", {"preset": "small"})],
)
def test_batched_oracle_equals_the_scalar_oracles(env_id, kwargs):
    batched, sync = _pair(env_id, kwargs, AutoresetMode.NEXT_STEP, n=3)
    batched.reset(seed=21)
    sync.reset(seed=21)
    for kind in ("cmdp", "per_round", "cmdp"):
        if kind not in sync.envs[0].unwrapped.oracle_kinds:
            continue
        results = batched.oracle(kind)
        scalar = sync.call("oracle", kind)
        for mine, theirs in zip(results, scalar, strict=True):
            np.testing.assert_allclose(mine.action, theirs.action, atol=2e-7)
            assert mine.objective == pytest.approx(theirs.objective, rel=1e-9)
            assert mine.status == theirs.status
        actions = np.stack([r.action for r in results])
        out_b, out_s = batched.step(actions), sync.step(actions)
        np.testing.assert_allclose(out_b[4]["costs"], out_s[4]["costs"], rtol=1e-12)


def test_ppo_lagrangian_trains_on_the_batched_env_and_its_costs_arrive():
    vec = SB3VecEnv(
        gym.make_vec(
            "edgegen/FedDiffusion-v0",
            num_envs=8,
            vectorization_mode="vector_entry_point",
            autoreset_mode="SameStep",
        )
    )
    model = PPOLagrangian("MlpPolicy", vec, n_steps=64, batch_size=128, n_epochs=1, seed=0, lagrangian="pid")
    model.learn(8 * 64 * 2)
    # 2 rollouts of 8 x 64 steps: 16 episodes of 50 rounds ended, each with its summed miss fraction
    assert len(model.ep_cost_buffer) >= 8
    sums = np.asarray(model.ep_cost_buffer)[:, 0]
    assert np.all((sums >= 0) & (sums <= 50))
    assert sums.mean() > 0.05 * 50  # an untrained policy misses more than the 5 % limit ...
    assert model.lambdas[0] > 0  # ... so the PID multiplier rises from 0
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(gym.make_vec("edgegen/MEG-v0", num_envs=2, vectorization_mode="vector_entry_point"))
