"""FedDiffusion-v0's CMDP oracle: the least expected energy under the *average* miss-fraction limit.

The env's constraint is an average: the mean deadline-miss fraction per round within its limit.

The per-round oracle (``solvers.fed_energy``) lets no device be late. The env allows a mean miss
fraction ``eps`` per round, and a device that gives up on the deadline can spend less: with its upload
share at 0 it computes over the whole round and uploads at full power, at 1 it computes flat out and
uploads over the whole round (any other late share is dearer; both are late). A multiplier ``nu`` on
the average miss fraction separates the problem per device and round: a device goes late when

    Delta = E_on_time - E_late > theta = nu / K

(``E_on_time`` the per-round KKT optimum of that device, +inf when it cannot make the deadline at all,
``E_late`` the cheaper late share). ``theta`` is fitted on sampled rounds (episodes drawn by the env's
model from a fixed seed) as the threshold at which a fraction ``eps`` of the sampled devices is late:
the sampled problem is a fractional knapsack (unit weights), so the policy with the boundary device
time-shared is optimal over the samples and the Lagrange dual value at ``theta`` equals its
objective (gap 0 up to round-off). On fresh rounds the threshold policy's expected miss fraction is
``eps`` up to sampling noise, since ``Delta`` has a continuous distribution.

If the devices that cannot make the deadline at all already exceed ``eps``, the CMDP is infeasible:
the policy keeps every other device on time and the status says "infeasible".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgegen.envs.fed_diffusion.energy import RoundProblem, round_outcome
from edgegen.envs.oracle_result import OracleStatus
from edgegen.solvers.fed_energy import solve_round_energy

__all__ = ["FedCMDPPolicy", "device_choices", "fit_cmdp_policy"]


def device_choices(problem: RoundProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each device's two options in each round.

    Returns (on-time optimal share, its energy (inf if impossible), cheapest late share (0 or 1), its
    energy), shaped like ``problem.gain``.
    """
    sol = solve_round_energy(problem)
    on_time = np.where(sol.feasible, sol.energy_j, np.inf)
    shape = problem.gain.shape
    late_energy = np.stack([round_outcome(problem, np.full(shape, s)).energy_j for s in (0.0, 1.0)], axis=0)
    late_share = np.argmin(late_energy, axis=0).astype(np.float64)
    return sol.upload_share, on_time, late_share, late_energy.min(axis=0)


@dataclass(frozen=True)
class FedCMDPPolicy:
    """The fitted threshold policy.

    Attributes:
        threshold_j: a device goes late when its on-time energy exceeds its late energy by more.
        expected_energy_j: mean round energy over the sampled rounds (the policy's objective).
        expected_miss_fraction: its mean miss fraction (the limit when the constraint binds).
        dual_value: the Lagrange dual value at ``threshold_j`` (a lower bound; equal up to round-off).
        status: "optimal", or "infeasible" when unreachable devices alone exceed the limit.
        samples: sampled (round, device) pairs.
        solve_time_s: fitting time.
    """

    threshold_j: float
    expected_energy_j: float
    expected_miss_fraction: float
    dual_value: float
    status: OracleStatus
    samples: int
    solve_time_s: float

    def shares(self, problem: RoundProblem) -> tuple[np.ndarray, np.ndarray]:
        """The policy's upload shares in the rounds of ``problem``, and which devices it sends late."""
        on_share, on_energy, late_share, late_energy = device_choices(problem)
        late = (on_energy - late_energy > self.threshold_j) | ~np.isfinite(on_energy)
        return np.where(late, late_share, on_share), late


def fit_cmdp_policy(problem: RoundProblem, miss_limit: float) -> FedCMDPPolicy:
    """Fit the threshold on the sampled rounds of ``problem`` (shape (..., K))."""
    start = time.perf_counter()
    _, on_energy, _, late_energy = device_choices(problem)
    k = problem.gain.shape[-1]
    delta = (on_energy - late_energy).ravel()
    late_e = late_energy.ravel()
    on_e = np.where(np.isfinite(delta), on_energy.ravel(), late_e)  # unreachable devices: late anyway
    n = delta.size
    rounds = n // k
    budget = miss_limit * n  # late (round, device) pairs allowed over the samples
    forced = ~np.isfinite(delta)

    def result(
        threshold: float, late_count: float, energy: float, dual: float, status: OracleStatus
    ) -> FedCMDPPolicy:
        return FedCMDPPolicy(
            threshold,
            energy / rounds,
            late_count / n,
            min(dual, energy) / rounds,
            status,
            n,
            time.perf_counter() - start,
        )

    if forced.sum() > budget:  # even with every reachable device on time the limit is broken
        energy = float(np.where(forced, late_e, on_e).sum())
        return result(np.inf, float(forced.sum()), energy, energy, "infeasible")
    gains = np.where(forced, np.inf, delta)
    if np.count_nonzero(gains > 0) <= budget:  # the limit does not bind: late wherever it saves energy
        energy = float(np.where(gains > 0, late_e, on_e).sum())
        return result(0.0, float(np.count_nonzero(gains > 0)), energy, energy, "optimal")
    # Binding: the fractional knapsack. The 'whole' largest savings go late, the next one for the
    # fraction of the budget left (time-sharing); theta is that next saving.
    order = np.argsort(-gains, kind="stable")
    whole = int(np.floor(budget))
    frac = budget - whole
    threshold = float(gains[order[whole]])
    late_pairs = order[:whole]
    energy = float(on_e.sum() - np.sum(np.where(forced, 0.0, delta)[late_pairs]) - frac * threshold)
    # the Lagrangian at theta: every pair pays min(on time, late + theta); an unreachable one is late
    dual = float(np.where(forced, late_e + threshold, np.minimum(on_e, late_e + threshold)).sum())
    dual -= threshold * budget
    return result(threshold, budget, energy, dual, "optimal")
