"""The FedDiffusion KKT oracle against cvxpy, random search and its own closed forms."""

import numpy as np
import pytest

from envs.fed_diffusion.energy import RoundProblem, round_outcome
from solvers.fed_energy import (
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
