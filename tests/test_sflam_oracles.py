"""SFLAM-v0's certified oracles: the dual per-round solver and the CMDP policy, against independent solves."""

import gymnasium as gym
import numpy as np
import pytest
from scipy.optimize import linprog
from sflam_reference import reference_optimum
from test_sflam import _instance

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.sflam.config import make_config
from edgegen.envs.sflam.system import round_outcome
from edgegen.solvers.sflam_bcd import solve_sflam_bcd
from edgegen.solvers.sflam_cmdp import fit_cmdp_policy, latency_grid
from edgegen.solvers.sflam_dual import round_curve, solve_sflam_dual


def _check_decisions(cfg, gain, fixed, sol):
    """The solution's numbers are the env model's at its decisions, within the limits."""
    g = gain[np.arange(gain.shape[0]), sol.assignment]
    out = round_outcome(cfg, g, fixed, sol.bits, sol.share, sol.power_w)
    assert float(out.objective) == pytest.approx(sol.objective, rel=1e-12)
    assert sol.share.sum() <= 1.0 + 1e-12 and np.all(sol.power_w <= cfg.max_power_w * (1 + 1e-12))
    assert sorted(sol.assignment.tolist()) == list(range(gain.shape[0]))  # a matching
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 7086])
def test_dual_solver_matches_the_grid_reference_with_the_matching_free(seed):
    # 7086: the optimal matching (2, 0, 1) is a 3-cycle away from the scheduler's; BCD's swaps stay at
    # (0, 1, 2), 1.9 % worse.
    cfg = make_config("small")
    gain, fixed = _instance(cfg, seed)
    reference = reference_optimum(cfg, gain, fixed)
    sol = solve_sflam_dual(cfg, gain, fixed)
    _check_decisions(cfg, gain, fixed, sol)
    assert sol.objective == pytest.approx(reference, rel=1e-3)
    assert sol.lower_bound <= reference * (1 + 1e-9)  # the certificate is a valid bound
    assert sol.gap <= 1e-4 and sol.status == "optimal"
    if seed == 7086:
        assert sol.assignment.tolist() == [2, 0, 1]
        assert solve_sflam_bcd(cfg, gain, fixed).objective > 1.01 * sol.objective


def test_dual_solver_certifies_env_rounds_and_is_never_worse_than_bcd():
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    cfg = env.config
    env.reset(seed=64000)
    for r in range(3):
        gain, fixed, block = env.round_data()
        sol = solve_sflam_dual(cfg, gain, fixed, assignment=block)
        out = _check_decisions(cfg, gain, fixed, sol)
        assert np.array_equal(sol.assignment, block)
        assert float(out.round_latency_s) <= cfg.round_latency_s_limit * (1 + 1e-9)
        assert sol.gap <= 1e-4
        if r < 2:  # BCD takes seconds a round
            assert sol.objective <= solve_sflam_bcd(cfg, gain, fixed, assignment=block).objective * (1 + 1e-4)
        env.step(env.action_space.sample())


@pytest.mark.parametrize(
    "override",
    [{"round_latency_s_limit": 2.5e-9}, {"uplink_bandwidth_hz": 2e5}, {"max_power_dbm": -25.0}],
)
def test_dual_solver_reports_infeasible_rounds_with_the_least_latency_action(override):
    cfg = make_config(**override)
    env = gym.make("edgegen/SFLAM-v0", **override).unwrapped
    env.reset(seed=3)
    gain, fixed, block = env.round_data()
    sol = solve_sflam_dual(cfg, gain, fixed, assignment=block)
    assert sol.status == "infeasible" and sol.lower_bound == np.inf
    out = _check_decisions(cfg, gain, fixed, sol)
    assert float(out.round_latency_s) > cfg.round_latency_s_limit
    # the least latency: fewest bits at full power, no slower than equal shares (which it improves on
    # by giving the slowest devices more bandwidth)
    assert np.all(sol.bits == cfg.bits_choices[0]) and np.allclose(sol.power_w, cfg.max_power_w)
    m = cfg.selected_devices
    equal = round_outcome(cfg, gain[np.arange(m), block], fixed, sol.bits, np.full(m, 1 / m), sol.power_w)
    assert float(out.round_latency_s) <= float(equal.round_latency_s) * (1 + 1e-9)
    result = env.oracle("per_round")
    assert result.status == "infeasible"


def _sampled_rounds(env, seed):
    """One episode's rounds as the CMDP fit takes them: gains (R, M, M), fixed latency and blocks (R, M)."""
    d = env._draw_episodes(np.random.default_rng(seed), 1)
    m = env.config.selected_devices
    return d["block_gain"].reshape(-1, m, m), d["fixed_s"].reshape(-1, m), d["block"].reshape(-1, m)


def test_cmdp_policy_equals_the_time_sharing_lp_over_the_same_curves():
    # Independent check of the multiplier fit and the time-sharing: the LP over per-round
    # distributions on the T grid points (minimise the mean objective, mean latency <= T_max).
    cfg = make_config("small")
    env = gym.make("edgegen/SFLAM-v0", preset="small").unwrapped
    gains, fixed, blocks = _sampled_rounds(env, 5)
    rounds = gains.shape[0]
    policy = fit_cmdp_policy(cfg, gains, fixed, blocks, max_passes=0)
    grids = [latency_grid(cfg, float(f.max())) for f in fixed]
    values = [round_curve(cfg, g, f, b, t)[0] for g, f, b, t in zip(gains, fixed, blocks, grids, strict=True)]
    g_size = grids[0].size
    cost = np.concatenate([cfg.latency_weight * t + v for t, v in zip(grids, values, strict=True)]) / rounds
    ok = np.isfinite(cost)
    latency = np.concatenate(grids) / rounds
    a_eq = np.kron(np.eye(rounds), np.ones(g_size))  # one distribution per round
    lp = linprog(
        np.where(ok, cost, 0.0),
        A_ub=latency[None, :],
        b_ub=[cfg.round_latency_s_limit],
        A_eq=a_eq,
        b_eq=np.ones(rounds),
        bounds=[(0, 1 if f else 0) for f in ok],
        method="highs",
    )
    assert lp.status == 0
    assert policy.expected_objective == pytest.approx(lp.fun, rel=1e-9)
    assert policy.expected_latency_s <= cfg.round_latency_s_limit * (1 + 1e-12)
    assert policy.dual_value <= policy.expected_objective


def test_cmdp_policy_beats_the_per_round_oracle_and_meets_the_average_limit():
    # The default env, where T_max binds: the per-round optimum meets it in every round, a policy the
    # CMDP also allows, so the CMDP's certified bound must lie below its mean objective.
    cfg = make_config()
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    gains, fixed, blocks = _sampled_rounds(env, 6)
    policy = fit_cmdp_policy(cfg, gains, fixed, blocks)
    assert policy.multipliers[0] > 0 and policy.status in ("optimal", "feasible")
    assert policy.expected_latency_s == pytest.approx(cfg.round_latency_s_limit, rel=1e-9)
    assert policy.dual_value <= policy.expected_objective <= policy.dual_value * (1 + 2e-3)
    per_round = [
        solve_sflam_dual(cfg, g, f, assignment=b) for g, f, b in zip(gains, fixed, blocks, strict=True)
    ]
    assert all(s.status != "infeasible" for s in per_round)  # this sample's rounds can all make T_max
    per_round_mean = np.mean([s.objective for s in per_round])
    assert policy.dual_value <= per_round_mean
    assert policy.expected_objective < per_round_mean  # time-sharing the latency pays here
    # the round solver at a fitted multiplier solves the relaxed round: latency may exceed T_max
    sol = policy.solve_round(cfg, gains[0], fixed[0], blocks[0])
    assert sol.round_latency_s <= 4 * cfg.round_latency_s_limit
    assert sol.status in ("optimal", "feasible")


def test_cmdp_policy_without_a_feasible_policy_takes_the_least_latency_action_every_round():
    # Device clocks so slow that the fixed compute latency alone is hours: no policy meets T_max on
    # average. The CMDP fit says "infeasible", reports the least-latency policy's finite means (the
    # CI once saw NaN here), and its round decision is the per-round solver's least-latency action.
    cfg = make_config("small", device_frequency_hz=2000.0)
    env = gym.make("edgegen/SFLAM-v0", preset="small", device_frequency_hz=2000.0).unwrapped
    env.reset(seed=0)
    gains, fixed, blocks = _sampled_rounds(env, 7)
    policy = fit_cmdp_policy(cfg, gains, fixed, blocks)
    assert policy.status == "infeasible"
    least = [solve_sflam_dual(cfg, g, f, assignment=b) for g, f, b in zip(gains, fixed, blocks, strict=True)]
    assert all(s.status == "infeasible" for s in least)
    assert policy.expected_latency_s == pytest.approx(np.mean([s.round_latency_s for s in least]), rel=1e-12)
    assert policy.expected_objective == pytest.approx(np.mean([s.objective for s in least]), rel=1e-12)
    assert policy.expected_latency_s > 1000 * cfg.round_latency_s_limit
    sol = policy.solve_round(cfg, gains[0], fixed[0], blocks[0])
    assert np.all(sol.bits == cfg.bits_choices[0]) and np.allclose(sol.power_w, cfg.max_power_w)
    assert sol.round_latency_s == pytest.approx(least[0].round_latency_s, rel=1e-9)
    result = env.oracle()
    assert result.status == "infeasible" and np.isfinite(result.objective)
    assert np.all(np.isfinite(result.action))
