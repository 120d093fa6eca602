import pickle
import shutil
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.meg.config import MEGConfig, make_config
from edgegen.envs.meg.cost_model import latent_bits, task_energy_j, task_latency_s
from edgegen.envs.meg.env import MEGEnv
from edgegen.envs.meg.quality import DEFAULT_PROFILE, load_profile

ID = "edgegen/MEG-v0"


@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
@pytest.mark.parametrize("preset", ["paper", "fading"])
def test_env_checkers_pass_without_warnings(render_mode, preset):
    env = gym.make(ID, preset=preset, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_registry_and_spaces():
    env = gym.make("edgegen:edgegen/MEG-v0")
    assert env.spec.max_episode_steps == 64
    assert env.unwrapped.cost_spec.names == ("latency_s", "energy_j")
    assert env.unwrapped.cost_spec.limits == (3.8, 650.0)
    assert env.action_space.shape == (2,) and env.observation_space.shape == (3,)


def _rollout(env, seed, steps, action_seed=0):
    obs, _ = env.reset(seed=seed)
    actions = np.random.default_rng(action_seed).uniform(-1, 1, (steps, 2)).astype(np.float32)
    trace = [obs]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        trace += [obs, np.array([reward]), info["costs"]]
        if terminated or truncated:
            obs, _ = env.reset()
            trace.append(obs)
    return trace


@pytest.mark.parametrize("preset", ["paper", "fading"])
def test_same_seed_same_trajectory_and_seeds_differ(preset):
    a = _rollout(gym.make(ID, preset=preset), seed=42, steps=150)
    b = _rollout(gym.make(ID, preset=preset), seed=42, steps=150)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(x, y, err_msg=f"entry {i}")
    c = _rollout(gym.make(ID, preset=preset), seed=43, steps=5)
    assert not np.array_equal(a[0], c[0])


def test_action_mapping_costs_and_reward_by_hand():
    env = gym.make(ID, reward_spread=False).unwrapped
    cfg, profile = env.config, load_profile()
    env.reset(seed=3)
    for a0, a1, steps, rho in [
        (-1.0, -1.0, 4, 0.0),
        (1.0, 1.0, 12, 0.75),
        (0.0, 0.0, 8, 0.375),
        (-0.2, 0.5, 7, 0.5625),
    ]:
        _, reward, _, _, info = env.step(np.array([a0, a1], np.float32))
        assert info["steps"] == steps and info["merge_ratio"] == pytest.approx(rho, abs=1e-7)
        r = int(np.floor(rho * 4096 + 1e-6))
        assert info["merged_tokens"] == min(r, 3072)
        bits = 16 * (16 * (4096 - info["merged_tokens"]) + info["merged_tokens"])
        assert info["bits"] == bits == latent_bits(info["merged_tokens"])
        rate = 1e6 * np.log2(1 + 10 ** (info["snr_db"] / 10))
        assert info["rate_bps"] == pytest.approx(rate, rel=1e-9)
        tx = bits / rate
        assert info["costs"][0] == pytest.approx(task_latency_s(cfg.compute_model, steps, tx), rel=1e-12)
        assert info["costs"][1] == pytest.approx(task_energy_j(cfg.compute_model, steps, tx, 1.0), rel=1e-12)
        mean, _ = profile.ln_mse(steps, info["merge_ratio"], 0.1)
        assert -reward == pytest.approx(float(mean), rel=1e-9)
        assert info["cost"] == pytest.approx(max(info["costs"][0] / 3.8, info["costs"][1] / 650.0))


def test_reward_spread_matches_the_profile_statistics():
    env = gym.make(ID).unwrapped
    profile = load_profile()
    rewards = []
    for seed in range(40):
        env.reset(seed=seed)
        for _ in range(64):
            _, r, _, _, _ = env.step(np.array([0.0, 0.0], np.float32))  # N = 8, rho = 0.375
            rewards.append(-r)
    mean, std = profile.ln_mse(8, 0.375, 0.1)
    assert np.mean(rewards) == pytest.approx(float(mean), abs=4 * float(std) / np.sqrt(len(rewards)))
    assert np.std(rewards) == pytest.approx(float(std), rel=0.1)


def test_observation_reports_snr_and_previous_costs():
    env = gym.make(ID).unwrapped
    obs, info = env.reset(seed=1)
    assert obs[0] == pytest.approx(info["snr_db"] / 10, rel=1e-6) and obs[1] == obs[2] == 0.0
    obs, _, _, _, info = env.step(np.array([0.3, -0.4], np.float32))
    assert obs[1] == pytest.approx(info["costs"][0] / 3.8, rel=1e-6)
    assert obs[2] == pytest.approx(info["costs"][1] / 650.0, rel=1e-6)
    # SNR of the paper preset: distance in [200, 300] m, 30 dBm, -94 dBm noise, 35.3 + 37.6 log10 d
    snr_db = [env.step(np.zeros(2, np.float32))[4]["snr_db"] for _ in range(60)]
    lo, hi = 30 + 94 - (35.3 + 37.6 * np.log10(300)), 30 + 94 - (35.3 + 37.6 * np.log10(200))
    assert lo <= min(snr_db) and max(snr_db) <= hi


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("autoreset", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_envs_keep_costs_aligned(mode, autoreset):
    horizon, seeds = 3, [5, 6]
    vec = gym.make_vec(
        ID,
        num_envs=2,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": autoreset},
        horizon=horizon,
        max_episode_steps=horizon,
    )
    singles = [gym.make(ID, horizon=horizon).unwrapped for _ in seeds]
    for env, s in zip(singles, seeds, strict=True):
        env.reset(seed=s)
    vec.reset(seed=seeds)
    actions = np.random.default_rng(1).uniform(-1, 1, (9, 2, 2)).astype(np.float32)
    pending_reset = [False, False]
    for a in actions:
        _, _, _, _, infos = vec.step(a)
        for i, env in enumerate(singles):
            if pending_reset[i]:  # NEXT_STEP: this step was the reset; zero costs, action ignored
                assert np.array_equal(infos["costs"][i], [0.0, 0.0])
                env.reset()
                pending_reset[i] = False
                continue
            _, _, _, done, ref = env.step(a[i])
            costs = (
                infos["final_info"]["costs"][i]
                if autoreset == AutoresetMode.SAME_STEP and done
                else infos["costs"][i]
            )
            np.testing.assert_array_equal(costs, ref["costs"])
            if done:
                if autoreset == AutoresetMode.SAME_STEP:
                    assert np.array_equal(infos["costs"][i], [0.0, 0.0])
                    env.reset()
                else:
                    pending_reset[i] = True
    vec.close()


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (np.array([0.0, np.nan]), r"has NaN/inf at entries \[1\]"),
        (np.array([np.inf, 0.0]), r"has NaN/inf at entries \[0\]"),
        (np.zeros(3), r"must have shape \(2,\)"),
    ],
)
def test_bad_actions_raise(action, match):
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=f"MEG-v0 action {match}"):
        env.step(action)


def test_out_of_range_actions_are_clipped():
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    clone = pickle.loads(pickle.dumps(env))
    _, r1, _, _, i1 = env.step(np.array([5.0, -7.0]))
    _, r2, _, _, i2 = clone.step(np.array([1.0, -1.0]))
    assert r1 == r2 and np.array_equal(i1["costs"], i2["costs"])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("max_steps", 3, r"max_steps must be an integer >= min_steps"),
        ("max_merge_ratio", 1.5, r"max_merge_ratio must be in \(0, 1\]"),
        ("latency_s_limit", 0.0, "latency_s_limit must be finite and > 0"),
        ("fading_correlation", 1.0, r"fading_correlation must be in \[0, 1\)"),
        ("feature_noise", "awgn", "feature_noise must be 'fixed' or 'snr'"),
        ("latent_size", 30, "latent_size must be a positive multiple of 4"),
        ("unet_model", "sd15", "unet_model: architecture 'sd15' is not in"),
        ("backend", "gpu", "backend must be 'profile' or 'live'"),
    ],
)
def test_bad_config_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=f"MEGConfig.{match}"):
        MEGConfig(**{field: value})


def test_unknown_preset_field_and_uncovered_steps():
    with pytest.raises(ValueError, match="unknown MEG-v0 preset 'city'"):
        make_config("city")
    with pytest.raises(TypeError, match=r"unknown MEGConfig field\(s\) \['power'\]"):
        gym.make(ID, power=1.0)
    with pytest.raises(ValueError, match=r"steps must lie in \[4, 12\]"):
        gym.make(ID, min_steps=2)


def test_missing_and_corrupt_profile_name_the_file_and_the_rebuild_command(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(
        FileNotFoundError, match=rf"{missing}.*python -m edgegen.envs.backends.diffusion.profile"
    ):
        gym.make(ID, profile_path=str(missing))
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(
        ValueError, match=rf"{corrupt} is corrupt.*python -m edgegen.envs.backends.diffusion.profile"
    ):
        gym.make(ID, profile_path=str(corrupt))
    partial = tmp_path / "partial.npz"
    with np.load(DEFAULT_PROFILE) as data:
        np.savez(partial, **{k: data[k] for k in data.files if k != "ln_mse_std_finetuned"})
    with pytest.raises(ValueError, match=r"missing arrays \['ln_mse_std_finetuned'\]"):
        load_profile(partial)
    copy = tmp_path / "copy.npz"
    shutil.copy(DEFAULT_PROFILE, copy)
    assert gym.make(ID, profile_path=str(copy)).reset(seed=0)[0].shape == (3,)


def test_step_before_reset_and_render_modes():
    env = MEGEnv()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(np.zeros(2))
    with pytest.raises(RuntimeError, match="call reset"):
        env.oracle_action()
    with pytest.raises(ValueError, match="render_mode must be one of"):
        MEGEnv(render_mode="human")
    env = gym.make(ID, render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([1.0, -1.0], np.float32))
    assert env.render().startswith("frame 1/64  N=12 rho=0.00")
    env = gym.make(ID, render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.array([1.0, -1.0], np.float32))  # N = 12 unmerged: over the latency budget
    image = env.render()
    assert image.dtype == np.uint8 and (image == [200, 40, 40]).all(axis=-1).any()


def test_snr_tied_feature_noise_lowers_quality_in_bad_frames():
    env = gym.make(ID, feature_noise="snr", reward_spread=False).unwrapped
    env.reset(seed=0)
    out = [env.step(np.array([0.0, 0.0], np.float32))[4] for _ in range(64)]
    snr = np.array([i["snr_db"] for i in out])
    sigma = np.array([i["sigma"] for i in out])
    np.testing.assert_allclose(sigma, 0.1 * 10 ** (-snr / 20), rtol=1e-12)
    ln_mse = np.array([i["ln_mse"] for i in out])
    assert np.corrcoef(snr, ln_mse)[0, 1] < -0.9
