"""The FedDiffusion KKT oracle against cvxpy, random search and its own closed forms."""

import numpy as np
import pytest

from edgegen.envs.fed_diffusion.energy import RoundProblem, round_outcome
from edgegen.solvers.fed_energy import (
    frequency_at_multiplier,
    solve_round_cvxpy,
    solve_round_energy,
    upload_time_at_multiplier,
)


def random_problem(rng: np.random.Generator, k: int) -> RoundProblem:
    """Wide random instances, so that p_max / f_max bind and some devices cannot finish."""
    return RoundProblem(
        cycles=rng.uniform(1e9, 4e10, k),
        payload_bits=rng.uniform(1e7, 5e8, k),
        gain=10 ** rng.uniform(-13, -8, k),
        bandwidth_hz=rng.uniform(5e5, 5e6, k),
        noise_power_w=10 ** rng.uniform(-15, -13.5, k),
        round_time_s=float(rng.uniform(20, 80)),
        max_frequency_hz=float(rng.uniform(1e9, 3e9)),
        max_power_w=float(rng.uniform(0.05, 1.0)),
        kappa=1e-28,
    )


def test_kkt_matches_cvxpy_on_200_instances():
    rng = np.random.default_rng(2026)
    worst = 0.0
    seen = {"interior": 0, "p_max": 0, "f_max": 0, "infeasible": 0}
    for _ in range(200):
        problem = random_problem(rng, 6)
        kkt = solve_round_energy(problem)
        ref = solve_round_cvxpy(problem)
        assert kkt.converged and kkt.status in ("optimal", "partially infeasible")
        assert kkt.max_violation <= 1e-12
        np.testing.assert_array_equal(kkt.feasible, ref.feasible)
        rel = abs(kkt.total_energy_j - ref.total_energy_j) / ref.total_energy_j
        worst = max(worst, rel)
        out, f = kkt.outcome, kkt.feasible
        p_cap = f & np.isclose(out.power_w, problem.max_power_w, rtol=1e-9)
        f_cap = f & np.isclose(out.frequency_hz, problem.max_frequency_hz, rtol=1e-9)
        seen["p_max"] += p_cap.sum()
        seen["f_max"] += f_cap.sum()
        seen["interior"] += (f & ~p_cap & ~f_cap).sum()
        seen["infeasible"] += (~f).sum()
    assert worst <= 1e-6, worst
    assert min(seen.values()) >= 10, seen  # every regime is exercised


def test_infeasible_devices_are_reported_and_run_flat_out():
    rng = np.random.default_rng(7)
    problem = random_problem(rng, 200)
    result = solve_round_energy(problem)
    expected = problem.cycles / problem.max_frequency_hz + problem.min_upload_time_s <= problem.round_time_s
    np.testing.assert_array_equal(result.feasible, expected)
    assert (~expected).any()
    bad = ~result.feasible
    np.testing.assert_allclose(result.outcome.frequency_hz[bad], problem.max_frequency_hz)
    np.testing.assert_allclose(result.outcome.power_w[bad], problem.max_power_w, rtol=1e-9)
    assert np.all(np.isnan(result.multiplier[bad]))
    assert result.status == "partially infeasible"


def test_solution_satisfies_the_kkt_closed_forms():
    rng = np.random.default_rng(11)
    problem = random_problem(rng, 300)
    result = solve_round_energy(problem)
    out, lam = result.outcome, result.multiplier
    interior = (
        result.feasible
        & (out.power_w < problem.max_power_w * (1 - 1e-9))
        & (out.frequency_hz < problem.max_frequency_hz * (1 - 1e-9))
    )
    assert interior.sum() > 50
    # f* = (lambda / 2 kappa)^(1/3) and t* = c / (1 + W0((lambda / a - 1) / e)) (scipy's lambertw)
    np.testing.assert_allclose(
        frequency_at_multiplier(problem, lam)[interior], out.frequency_hz[interior], rtol=1e-8
    )
    np.testing.assert_allclose(
        upload_time_at_multiplier(problem, lam)[interior], out.upload_time_s[interior], rtol=1e-8
    )
    # the deadline binds for every feasible device
    total = out.compute_time_s + out.upload_time_s
    np.testing.assert_allclose(total[result.feasible], problem.round_time_s, rtol=1e-12)


def test_random_search_never_beats_the_oracle():
    rng = np.random.default_rng(5)
    for _ in range(5):
        problem = random_problem(rng, 3)
        best = solve_round_energy(problem)
        shares = rng.uniform(0, 1, size=(10_000, 3))
        outcome = round_outcome(problem, shares)
        # a feasible action: no device late except those that cannot finish at all
        ok = ~np.any(outcome.late & problem.feasible, axis=1)
        energy = outcome.energy_j.sum(axis=1)
        if ok.any():
            assert energy[ok].min() >= best.total_energy_j * (1 - 1e-12)
        # per device (devices decouple): 10,000 shares each, none beats the oracle
        per_device = outcome.energy_j[~outcome.late]
        devices = np.broadcast_to(np.arange(3), shares.shape)[~outcome.late]
        for k in range(3):
            if problem.feasible[k] and np.any(devices == k):
                assert per_device[devices == k].min() >= best.energy_j[k] * (1 - 1e-12)


def test_batched_rounds_equal_one_by_one():
    rng = np.random.default_rng(3)
    problems = [random_problem(rng, 4) for _ in range(3)]
    stacked = RoundProblem(
        cycles=np.stack([p.cycles for p in problems]),
        payload_bits=np.stack([p.payload_bits for p in problems]),
        gain=np.stack([p.gain for p in problems]),
        bandwidth_hz=np.stack([p.bandwidth_hz for p in problems]),
        noise_power_w=np.stack([p.noise_power_w for p in problems]),
        round_time_s=40.0,
        max_frequency_hz=2e9,
        max_power_w=0.2,
        kappa=1e-28,
    )
    batch = solve_round_energy(stacked)
    for i in range(3):
        single = solve_round_energy(stacked[i])
        np.testing.assert_allclose(batch.energy_j[i], single.energy_j, rtol=1e-12)


def test_cvxpy_rejects_batches():
    rng = np.random.default_rng(0)
    p = random_problem(rng, 2)
    batch = RoundProblem(
        np.stack([p.cycles] * 2),
        np.stack([p.payload_bits] * 2),
        np.stack([p.gain] * 2),
        p.bandwidth_hz,
        p.noise_power_w,
        30.0,
        2e9,
        0.2,
        1e-28,
    )
    with pytest.raises(ValueError, match="one round"):
        solve_round_cvxpy(batch)


# -- the CMDP oracle (solvers.fed_cmdp) ---------------------------------------------------------------


def _sampled_episodes(config, episodes, seed):
    from edgegen.envs.fed_diffusion.env import EpisodeBuilder, draw_episode

    rng = np.random.default_rng(seed)
    draws = [draw_episode(config, rng) for _ in range(episodes)]
    return EpisodeBuilder(config).build(**{k: np.stack([d[k] for d in draws]) for k in draws[0]}).problem


def test_cheapest_late_choice_is_an_end_of_the_share_range():
    from edgegen.envs.fed_diffusion.config import make_config
    from edgegen.envs.fed_diffusion.energy import round_outcome
    from edgegen.solvers.fed_cmdp import device_choices

    problem = _sampled_episodes(make_config(), 2, seed=31)[:, :3]  # (2, 3, K)
    _, _, late_share, late_energy = device_choices(problem)
    best = np.full(problem.gain.shape, np.inf)
    for s in np.linspace(0.0, 1.0, 2001):  # every share on a fine grid: the late ones
        out = round_outcome(problem, np.full(problem.gain.shape, s))
        best = np.where(out.late, np.minimum(best, out.energy_j), best)
    np.testing.assert_allclose(late_energy, best, rtol=1e-12)
    assert set(np.unique(late_share)) <= {0.0, 1.0}


def test_cmdp_threshold_policy_is_the_lp_optimum_of_the_samples():
    from scipy.optimize import linprog

    from edgegen.envs.fed_diffusion.config import make_config
    from edgegen.solvers.fed_cmdp import device_choices, fit_cmdp_policy

    cfg = make_config(deadline_miss_fraction_limit=0.01)  # binds on these samples
    problem = _sampled_episodes(cfg, 12, seed=32)
    policy = fit_cmdp_policy(problem, cfg.deadline_miss_fraction_limit)
    _, on_e, _, late_e = device_choices(problem)
    on_e, late_e = on_e.ravel(), late_e.ravel()
    forced = ~np.isfinite(on_e)
    n, rounds = on_e.size, on_e.size // cfg.num_devices
    # x = probability that a (round, device) pair goes late: min sum(on (1 - x) + late x), sum x <= eps n
    lp = linprog(
        np.where(forced, 0.0, late_e - on_e),
        A_ub=np.ones((1, n)),
        b_ub=[cfg.deadline_miss_fraction_limit * n],
        bounds=[(1, 1) if f else (0, 1) for f in forced],
        method="highs",
    )
    assert lp.status == 0
    optimum = (lp.fun + np.sum(np.where(forced, late_e, on_e))) / rounds
    assert policy.expected_energy_j == pytest.approx(optimum, rel=1e-9)
    assert (
        policy.dual_value == pytest.approx(optimum, rel=1e-9)
        and policy.dual_value <= policy.expected_energy_j
    )
    assert policy.expected_miss_fraction == pytest.approx(cfg.deadline_miss_fraction_limit, rel=1e-12)
    assert policy.threshold_j > 0 and policy.status == "optimal"


def test_cmdp_policy_meets_the_average_limit_on_fresh_episodes():
    from edgegen.envs.fed_diffusion.config import make_config
    from edgegen.envs.fed_diffusion.energy import round_outcome
    from edgegen.envs.fed_diffusion.env import cmdp_policy

    cfg = make_config(deadline_miss_fraction_limit=0.025)  # binding (3 % would go late freely)
    policy = cmdp_policy(cfg)
    assert policy.status == "optimal" and policy.threshold_j > 0
    fresh = _sampled_episodes(cfg, 400, seed=33)  # (400, R, K): episodes are the independent units
    shares, _ = policy.shares(fresh)
    out = round_outcome(fresh, shares)
    miss = out.late.mean(axis=(1, 2))
    energy = out.energy_j.sum(axis=-1).mean(axis=1)
    se = lambda x: x.std(ddof=1) / np.sqrt(x.size)  # noqa: E731
    assert abs(miss.mean() - policy.expected_miss_fraction) <= 3 * se(miss)
    assert abs(energy.mean() - policy.expected_energy_j) <= 3 * se(energy)
    # and it spends less than the per-round oracle, which lets no device be late
    per_round = solve_round_energy(fresh).total_energy_j.mean()
    assert energy.mean() < per_round
