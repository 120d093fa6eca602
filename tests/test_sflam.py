"""SFLAM-v0: system model by hand, env contract, and the BCD oracle against the grid reference."""

import itertools
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy.optimize import linear_sum_assignment
from sflam_reference import reference_optimum
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.flops import get_count
from edgegen.envs.sflam.config import SFLAMConfig, make_config
from edgegen.envs.sflam.system import fixed_latency_s, round_outcome, upload_bits
from edgegen.envs.wireless import channel_gain, path_loss_db_macro
from edgegen.solvers.sflam_bcd import solve_sflam_bcd

ID = "edgegen/SFLAM-v0"


def test_round_outcome_by_hand():
    cfg = make_config()
    gain, dl_gain = np.array([1e-10, 3e-11]), np.array([2e-10, 5e-11])
    fixed = fixed_latency_s(cfg, dl_gain)
    values = 32 * 197 * 768
    cycles = 32 * get_count("vit-b16-device").training_flops / 128
    n0 = 10 ** (-174 / 10) * 1e-3
    for n in range(2):
        downlink = values * 32 / (20e6 * np.log2(1 + 1.0 * dl_gain[n] / (n0 * 20e6)))
        server = 10 * 32 * get_count("vit-b16-server").training_flops / 100e12
        assert fixed[n] == pytest.approx(cycles / 2e9 + server + downlink, rel=1e-12)
    bits, share, power = np.array([4, 32]), np.array([0.3, 0.5]), np.array([0.1, 0.2])
    out = round_outcome(cfg, gain, fixed, bits, share, power)
    rate = share * 20e6 * np.log2(1 + power * gain / (share * 20e6 * n0))
    up = np.array([values * 4 + 64, values * 32]) / rate
    assert np.allclose(out.upload_time_s, up, rtol=1e-12)
    assert out.round_latency_s == pytest.approx(np.max(fixed + up))
    energy = 2 * 1e-28 * cycles * 4e18 + np.sum(power * up)
    assert out.energy_j == pytest.approx(energy, rel=1e-12)
    quant = (16 / (4 * 15**2) + 0.0) / 2  # A = 4: A^2 / (4 (2^b - 1)^2), 0 at 32 bits
    assert out.quantization == pytest.approx(quant)
    assert out.objective == pytest.approx(0.2 * out.round_latency_s + 0.5 * energy + 50 * quant)
    assert upload_bits(cfg, 32) == values * 32


def _instance(cfg, seed):
    rng = np.random.default_rng(seed)
    m = cfg.selected_devices
    loss = path_loss_db_macro(rng.uniform(cfg.min_distance_m, cfg.max_distance_m, m)) + rng.normal(0, 6, m)
    return channel_gain(loss[:, None], 0.0, rng.exponential(1.0, (m, m))), fixed_latency_s(
        cfg, channel_gain(loss)
    )


def _bcd_vs_reference(n_instances):
    cfg = make_config("small")
    ratios = []
    for seed in range(n_instances):
        gain, fixed = _instance(cfg, seed)
        reference = reference_optimum(cfg, gain, fixed)
        if not np.isfinite(reference):
            continue
        sol = solve_sflam_bcd(cfg, gain, fixed)
        assert sol.round_latency_s <= cfg.round_latency_s_limit * (1 + 1e-6)
        history = np.array(sol.history)
        assert np.all(np.diff(history) <= 1e-9 * np.abs(history[:-1]) + 1e-12)  # BCD never goes up
        ratios.append(sol.objective / reference)
    return np.array(ratios)


def test_bcd_within_one_percent_of_the_grid_reference_on_small_instances():
    ratios = _bcd_vs_reference(5)
    assert ratios.size >= 4
    assert np.all(ratios <= 1.01), ratios


@pytest.mark.parametrize("seed", [0, 3])
def test_lambert_w_allocation_agrees_with_the_cvxpy_sca_block(seed):
    from edgegen.solvers.sflam_bcd import _power_bandwidth_step, least_latency_start, optimal_allocation

    cfg = make_config()
    rng = np.random.default_rng(seed)
    m = 4
    gain = channel_gain(path_loss_db_macro(rng.uniform(50, 300, m)) + rng.normal(0, 6, m))
    fixed = fixed_latency_s(cfg, gain)
    bits = np.array([4, 8, 4, 16])
    share, power, value = optimal_allocation(cfg, gain, fixed, bits)
    out = round_outcome(cfg, gain, fixed, bits, share, power)
    assert out.round_latency_s <= cfg.round_latency_s_limit * (1 + 1e-9)
    assert np.all(power <= cfg.max_power_w) and share.sum() == pytest.approx(1.0)
    assert value == pytest.approx(float(out.objective), rel=1e-12)
    _, start_share, start_power, _ = least_latency_start(cfg, gain, fixed, 2)
    sca_share, sca_power = _power_bandwidth_step(cfg, gain, fixed, bits, start_share, start_power)
    sca = round_outcome(cfg, gain, fixed, bits, sca_share, sca_power)
    assert value == pytest.approx(float(sca.objective), rel=1e-6)


@pytest.mark.slow
def test_bcd_within_one_percent_of_the_grid_reference_on_100_instances():
    ratios = _bcd_vs_reference(100)
    assert np.mean(ratios <= 1.01) >= 0.95, f"worst {ratios.max():.4f}"


@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_env_checkers_pass_without_warnings(render_mode):
    env = gym.make(ID, render_mode=render_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)


def test_seeded_episodes_repeat_and_reward_is_minus_the_objective():
    def rollout(seed):
        env = gym.make(ID)
        env.reset(seed=seed)
        rng = np.random.default_rng(0)
        return [env.step(rng.uniform(-1, 1, 30).astype(np.float32)) for _ in range(20)]

    a, b = rollout(3), rollout(3)
    for x, y in zip(a, b, strict=True):
        assert x[1] == y[1] and np.array_equal(x[0], y[0]) and np.array_equal(x[4]["costs"], y[4]["costs"])
    assert a[-1][3] and not a[-2][3]  # truncates after 20 rounds
    assert rollout(4)[0][1] != a[0][1]
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    gain, fixed, block = env.round_data()
    _, reward, _, _, info = env.step(env.baseline_action("fixed_8bit"))
    out = round_outcome(
        env.config,
        gain[np.arange(10), block],
        fixed,
        np.full(10, 8),
        np.full(10, 0.1),
        np.full(10, env.config.max_power_w),
    )
    assert reward == pytest.approx(-float(out.objective), rel=1e-5)
    assert info["costs"][0] == pytest.approx(float(out.round_latency_s), rel=1e-5)


def test_oracle_beats_baselines_and_meets_the_limit():
    env = gym.make(ID).unwrapped
    totals = {}
    for policy in ("oracle", "fixed_8bit", "full_precision"):
        env.reset(seed=1)
        values, latency = [], []
        for _ in range(3):
            action = env.oracle_action("per_round") if policy == "oracle" else env.baseline_action(policy)
            _, r, _, _, info = env.step(action)
            values.append(r)
            latency.append(info["costs"][0])
        totals[policy] = (np.mean(values), np.max(latency))
    assert totals["oracle"][0] > totals["fixed_8bit"][0] > totals["full_precision"][0]
    assert totals["oracle"][1] <= 2.5 * (1 + 1e-4)


@pytest.mark.parametrize(
    ("action", "match"),
    [(np.full(30, np.nan), r"NaN/inf at entries \[0, 1"), (np.zeros(29), r"must have shape \(30,\)")],
)
def test_bad_actions_raise(action, match):
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=f"SFLAM-v0 action.*{match}"):
        env.step(action)


def test_action_mapping_round_trip_and_clipping():
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    bits, share, power = np.array([2, 4, 8, 16, 32] * 2), np.linspace(1, 2, 10), np.linspace(0.01, 0.19, 10)
    share = share / share.sum()
    got = env.decisions(env.physical_to_action(bits, share, power))
    assert np.array_equal(got[0], bits)
    np.testing.assert_allclose(got[1], share, rtol=1e-6)
    np.testing.assert_allclose(got[2], power, rtol=1e-6)
    clone = pickle.loads(pickle.dumps(env))
    a = np.random.default_rng(0).uniform(-3, 3, 30)
    assert env.step(a)[1] == clone.step(np.clip(a, -1, 1))[1]


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("selected_devices", 60, r"selected_devices must be an integer in \[1, num_devices=50\]"),
        ("bits_choices", (8, 4), "bits_choices must be increasing distinct integers"),
        ("round_latency_s_limit", 0.0, "round_latency_s_limit must be finite and > 0"),
        ("max_power_dbm", 70.0, r"max_power_dbm must be in \[-30, 50\] dBm"),
    ],
)
def test_bad_config_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=f"SFLAMConfig.{match}"):
        SFLAMConfig(**{field: value})


def test_indexed_outcome_equals_the_general_model():
    from edgegen.envs.sflam.system import RoundTables, round_outcome_indexed

    cfg = make_config()
    rng = np.random.default_rng(2)
    gain, fixed = rng.uniform(1e-12, 1e-9, 10), rng.uniform(0.5, 1.5, 10)
    index = rng.integers(0, 5, 10)
    share, power = rng.dirichlet(np.ones(10)), rng.uniform(0.01, 0.19, 10)
    bits = np.asarray(cfg.bits_choices)[index]
    ref = round_outcome(cfg, gain, fixed, bits, share, power)
    latency, t, e, q, obj = round_outcome_indexed(
        RoundTables.from_config(cfg), gain / cfg.uplink_noise_w, fixed, index, share, power
    )
    np.testing.assert_allclose(latency, ref.latency_s, rtol=1e-12)
    assert (t, e, q, obj) == pytest.approx(
        (ref.round_latency_s, ref.energy_j, ref.quantization, ref.objective)
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_envs_match_single_envs_and_reset_with_zero_costs(mode):
    from gymnasium.vector import AutoresetMode

    vec = gym.make_vec(
        ID,
        num_envs=2,
        vectorization_mode=mode,
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        num_rounds=2,
        max_episode_steps=2,
    )
    singles = [gym.make(ID, num_rounds=2).unwrapped for _ in range(2)]
    vec.reset(seed=[7, 8])
    for env, seed in zip(singles, [7, 8], strict=True):
        env.reset(seed=seed)
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 2, 30)).astype(np.float32)
    for a in actions:
        _, rewards, _, trunc, infos = vec.step(a)
        for i, env in enumerate(singles):
            _, reward, _, done, info = env.step(a[i])
            assert rewards[i] == pytest.approx(reward)
            if done:
                assert trunc[i] and infos["final_info"]["costs"][i][0] == pytest.approx(info["costs"][0])
                assert infos["costs"][i][0] == 0.0
                env.reset()
    vec.close()


def test_scheduler_matching_maximises_the_sum_rate_per_round():
    from edgegen.envs.sflam.scheduler import rate_matching
    from edgegen.envs.sflam.system import equal_share_rates_bps

    cfg = make_config()
    rng = np.random.default_rng(5)
    block_gain = rng.uniform(1e-13, 1e-9, (3, 5, 5)) * rng.exponential(1.0, (3, 5, 5))
    blocks = rate_matching(cfg, block_gain)  # all three rounds in one call
    for r in range(3):
        rates = equal_share_rates_bps(cfg, block_gain[r])
        best = max(itertools.permutations(range(5)), key=lambda p: rates[np.arange(5), list(p)].sum())
        assert blocks[r].tolist() == list(best)


def test_bandwidth_weights_are_floored_not_zero():
    env = gym.make(ID).unwrapped
    env.reset(seed=0)
    action = np.zeros(30)
    action[1::3] = -1.0  # every weight at its floor: equal shares
    np.testing.assert_allclose(env.decisions(action)[1], 0.1, rtol=1e-12)
    action[1::3] = 1.0
    action[1] = -1.0  # one device asks for nothing: it keeps 1/1024 of a weight, no division by zero
    share = env.decisions(action)[1]
    assert share[0] == pytest.approx((1 / 1024) / (9 + 1 / 1024), rel=1e-12)
    assert share[1:] == pytest.approx(1 / (9 + 1 / 1024), rel=1e-12)
    action[1] = 2 * (1 / 512) - 1  # u = 1/512, above the floor: the weight is u
    assert env.decisions(action)[1][0] == pytest.approx((1 / 512) / (9 + 1 / 512), rel=1e-6)
    action[1] = -1.0
    _, reward, _, _, info = env.step(action)
    # the slowed device takes long (~1/900 of an equal share) but finishes: no ~1e8 s round
    assert np.isfinite(reward) and 10 * env.config.round_latency_s_limit < info["costs"][0] < 1e5


def test_unseeded_resets_draw_distinct_reproducible_consistent_episodes():
    def episodes(n):
        env = gym.make(ID).unwrapped
        env.reset(seed=11)
        out = []
        for _ in range(n):  # 40 episodes: the seeded one, then blocks of 16
            obs, _ = env.reset()
            gain, fixed, block = env.round_data()
            out.append((obs.copy(), gain, fixed, block))
        return env, out

    env, a = episodes(40)
    _, b = episodes(40)
    for x, y in zip(a, b, strict=True):
        assert all(np.array_equal(u, v) for u, v in zip(x, y, strict=True))
    assert len({x[0].tobytes() for x in a}) == 40  # no episode repeats
    cfg = env.config
    for obs, gain, fixed, block in a[::7]:  # each episode's first round, recomputed from its own data
        matched = gain[np.arange(10), block]
        efficiency = np.log2(1 + cfg.max_power_w * 10 * matched / cfg.uplink_noise_w) / 10
        assert np.allclose(obs[0:20:2], np.minimum(efficiency, 10), rtol=1e-6)
        assert np.allclose(obs[1:20:2], fixed / cfg.round_latency_s_limit, rtol=1e-6)
        rates = np.log1p(gain * (cfg.max_power_w * 10 / cfg.uplink_noise_w))
        assert np.array_equal(block, linear_sum_assignment(rates, maximize=True)[1])


def test_changing_a_returned_observation_changes_nothing_after():
    def rollout(scribble):
        env = gym.make(ID)
        obs, _ = env.reset(seed=2)
        seen, rng = [], np.random.default_rng(0)
        for _ in range(50):  # crosses an episode end: the next episode comes from a drawn block
            seen.append(obs.copy())
            if scribble:
                obs *= -1.0
            obs, _, _, truncated, _ = env.step(rng.uniform(-1, 1, 30).astype(np.float32))
            if truncated:
                obs, _ = env.reset()
        return seen

    assert all(np.array_equal(x, y) for x, y in zip(rollout(False), rollout(True), strict=True))
