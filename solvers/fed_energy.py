"""Exact per-round energy minimisation of FedDiffusion-v0 (KKT + Newton root search), and a cvxpy reference.

Problem, per device k (devices decouple: each has its own bandwidth and the same deadline T)::

    minimise    kappa cycles f^2  +  p t
    subject to  cycles / f + t <= T,   f <= f_max,   p <= p_max,
                t B log2(1 + p h / (N0 B)) = S.

With the computation time ``tau = cycles / f`` and the upload time ``t`` as variables the energy is
``kappa cycles^3 / tau^2 + a t (exp(c / t) - 1)`` (``a = N0 B / h``, ``c = S ln 2 / B``): a sum of
convex decreasing functions, so the deadline binds. With multiplier ``lambda`` on it, the KKT
conditions give

- ``f* = (lambda / (2 kappa))^(1/3)``  (so ``tau* = cycles / f*``),
- ``t* = c / (1 + W0((lambda / a - 1) / e))``  (``W0``: the Lambert W function),

each clipped to its bound (``tau >= cycles / f_max``, ``t >= t_min`` at ``p_max``), and ``lambda``
is the root of the deadline ``tau*(lambda) + t*(lambda) = T``.

Algorithm, per device (vectorised over devices and rounds):

1. Feasibility: the device can finish iff ``cycles / f_max + t_min <= T``; one that cannot runs flat
   out (``f_max``, ``p_max``) and is reported in ``feasible``.
2. The bracket of the multiplier is ``[lambda at t = T - tau_min, lambda at t = t_min]``. Comparing the
   two marginal energies (``-dE/dt`` of each part) at its ends tells in closed form whether ``p_max``
   binds (``t* = t_min``), ``f_max`` binds (``tau* = tau_min``), or the root is interior.
3. Interior roots: with ``y = W0((lambda / a - 1) / e)`` (so ``lambda = a (1 + y e^(y + 1))`` and
   ``t = c / (1 + y)``, the Lambert-W closed form read backwards), the deadline residual
   ``psi(y) = ln tau*(y) - ln(T - t*(y))`` is convex and decreasing on the bracket (``ln lambda(y)`` is
   concave because ``1 + s <= e^s``; ``T - c / (1 + y)`` is concave). A Newton step on a convex
   decreasing function lands left of the root from any start, so after the first step (clamped to
   the bracket's left end) the iterates rise monotonically and converge quadratically: at most 4
   steps from the bracket's geometric mean on 180 sampled episodes of every preset. No Lambert W is
   evaluated in the loop.

Stopping rule: ``|psi| <= PSI_TOL``, i.e. ``|tau* / (T - t*) - 1| <= PSI_TOL``; the returned allocation
sets ``tau = T - t`` exactly, so it always meets the deadline and its energy error is second order.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import lambertw

from edgegen.envs.fed_diffusion.energy import RoundOutcome, RoundProblem, round_outcome

__all__ = [
    "FedEnergyResult",
    "frequency_at_multiplier",
    "solve_round_cvxpy",
    "solve_round_energy",
    "upload_time_at_multiplier",
    "with_payload",
]

PSI_TOL = 1e-9
"""Stopping rule of the root search: ``|ln(tau* / (T - t*))| <= PSI_TOL``. The allocation sets
``tau = T - t`` exactly, so this tolerance on the split costs only a second-order energy error."""
MAX_ITER = 50
"""Newton iterations before the result is reported as not converged."""


@dataclass(frozen=True)
class FedEnergyResult:
    """The optimal allocation of one round (arrays shaped like the problem).

    Args:
        upload_share: the env action's physical meaning, ``t* / T``.
        outcome: frequencies, powers, times and energies of the allocation (``round_outcome``).
        multiplier: KKT multiplier ``lambda`` of the deadline (J/s); NaN for infeasible devices.
        feasible: devices that can meet the deadline; the others run at ``f_max`` and ``p_max``.
        converged: every feasible device met the stopping rule.
        iterations: Newton iterations of the root search (0 for the cvxpy reference).
        status: ``"optimal"``, ``"partially infeasible"`` or ``"not converged"`` (cvxpy: its status).
        max_violation: largest ``(tau + t - T) / T`` over feasible devices.
        solve_time_s: wall time of the solve.
    """

    upload_share: np.ndarray
    outcome: RoundOutcome
    multiplier: np.ndarray
    feasible: np.ndarray
    converged: bool
    iterations: int
    status: str
    max_violation: float
    solve_time_s: float

    @property
    def energy_j(self) -> np.ndarray:
        """Energy per device (J)."""
        return self.outcome.energy_j

    @property
    def total_energy_j(self) -> np.ndarray:
        """Round energy summed over devices (last axis)."""
        return self.outcome.energy_j.sum(axis=-1)

    @property
    def action(self) -> np.ndarray:
        """The env action (Box(-1, 1)) that applies this allocation."""
        return (2.0 * self.upload_share - 1.0).astype(np.float32)


def with_payload(problem: RoundProblem, payload_bits: np.ndarray) -> RoundProblem:
    """The same round with other upload sizes (e.g. another quantization scheme)."""
    return replace(problem, payload_bits=np.broadcast_to(payload_bits, problem.gain.shape))


def frequency_at_multiplier(problem: RoundProblem, multiplier: np.ndarray) -> np.ndarray:
    """KKT frequency ``min((lambda / (2 kappa))^(1/3), f_max)``."""
    return np.minimum(np.cbrt(multiplier / (2.0 * problem.kappa)), problem.max_frequency_hz)


def upload_time_at_multiplier(problem: RoundProblem, multiplier: np.ndarray) -> np.ndarray:
    """KKT upload time ``max(c / (1 + W0((lambda / a - 1) / e)), t_min)`` in closed form."""
    z = (multiplier / problem.noise_over_gain_w - 1.0) / math.e
    w = lambertw(z, 0).real
    return np.maximum(problem.upload_scale_s / (1.0 + w), problem.min_upload_time_s)


def solve_round_energy(problem: RoundProblem) -> FedEnergyResult:
    """Minimum-energy allocation of one round (or a batch of rounds) by KKT + a bracketed Newton search.

    Exact: the problem is convex and separable per device, and the KKT conditions (stationarity in
    the compute and upload times, the binding deadline, the caps) are necessary and sufficient; the
    root search stops at ``|ln(tau* / (T - t*))| <= PSI_TOL`` and the allocation meets the deadline
    exactly, so the energy is optimal up to a second-order error in that tolerance.

    Args:
        problem: the round data; arrays broadcasting to the shape of ``problem.gain``, ``(..., K)``.

    Returns:
        A :class:`FedEnergyResult`; its ``upload_share`` applied through ``round_outcome`` gives the
        optimal energies, and its ``action`` is the env action.
    """
    start = time.perf_counter()
    budget = problem.round_time_s
    # Per-device constants may be (K,) against (R, K) gains; arithmetic broadcasts them.
    a, c, cycles = problem.noise_over_gain_w, problem.upload_scale_s, problem.cycles
    tau_min, t_min, feasible = problem.min_compute_time_s, problem.min_upload_time_s, problem.feasible
    two_kappa = 2.0 * problem.kappa

    # Marginal energies -dE/dt at the bracket ends: upload -g'(t) = a (1 + (x - 1) e^x), x = c / t,
    # where e^(c / t_min) = 1 + p_max / a; computation -h'(tau) = 2 kappa (cycles / tau)^3.
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # infeasible devices
        x_min = c / t_min
        upload_marginal_fast = a + (x_min - 1.0) * (a + problem.max_power_w)
        x_max = c / (budget - tau_min)
        upload_marginal_slow = a * (1.0 + (x_max - 1.0) * np.exp(x_max))
        compute_marginal_slow = two_kappa * (cycles / (budget - t_min)) ** 3
    compute_marginal_fast = two_kappa * problem.max_frequency_hz**3
    power_capped = feasible & (compute_marginal_slow >= upload_marginal_fast)
    frequency_capped = (upload_marginal_slow >= compute_marginal_fast) & feasible
    frequency_capped &= ~power_capped
    interior = feasible & ~(power_capped | frequency_capped)

    upload_time = np.where(power_capped, t_min, budget - tau_min)
    multiplier = np.where(power_capped, compute_marginal_slow, upload_marginal_slow)
    iterations, converged = 0, True
    if interior.any():
        # Newton runs on every device at once (masking is cheaper than compacting); the others get
        # psi = 0, so they do not move and do not hold up the stopping test.
        # With lam = a q, q = 1 + y e^(y + 1): ln tau*(y) = ln(cycles (2 kappa / a)^(1/3)) - ln(q) / 3.
        log_scale = np.log(cycles) + (math.log(two_kappa) - np.log(a)) / 3.0
        # Start inside the bracket [y_lo, y_hi] = [x_max - 1, x_min - 1] (geometric mean of 1 + y); by
        # convexity the first Newton step lands left of the root, and is clamped to y_lo.
        y_lo = x_max - 1.0
        converged = False
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            y = np.sqrt(x_max * x_min) - 1.0
            while iterations < MAX_ITER:
                exp_y = np.exp(y + 1.0)
                one_y = 1.0 + y
                q = 1.0 + y * exp_y
                t_up = c / one_y
                remaining = budget - t_up
                psi = np.where(
                    interior, log_scale - np.log(q * (remaining * remaining * remaining)) / 3.0, 0.0
                )
                # Quadratic convergence from this start takes 3 to 4 steps: test only from the third.
                if iterations >= 3 and _max_reduce(np.abs(psi), axis=None) <= PSI_TOL:
                    converged = True
                    break
                iterations += 1
                slope = one_y * exp_y / (3.0 * q) + t_up / (one_y * remaining)  # -psi'
                y = y + psi / slope
                if iterations == 1:
                    y = np.maximum(y, y_lo)
        lam = a * q
        upload_time = np.where(interior, t_up, upload_time)
        multiplier = np.where(interior, lam, multiplier)

    share = np.where(feasible, upload_time / budget, t_min / (tau_min + t_min))
    outcome = round_outcome(problem, share)
    return FedEnergyResult(
        upload_share=share,
        outcome=outcome,
        multiplier=np.where(feasible, multiplier, np.nan),
        feasible=feasible,
        converged=converged,
        iterations=iterations,
        status=_status(converged, feasible),
        max_violation=_max_violation(outcome, feasible, budget),
        solve_time_s=time.perf_counter() - start,
    )


_max_reduce = np.maximum.reduce


def _status(converged: bool, feasible: np.ndarray) -> str:
    if not converged:
        return "not converged"
    return "optimal" if feasible.all() else "partially infeasible"


def _max_violation(outcome: RoundOutcome, feasible: np.ndarray, budget: float) -> float:
    """Largest ``(tau + t - T) / T`` over feasible devices (-inf if there are none)."""
    excess = (outcome.compute_time_s + outcome.upload_time_s)[feasible]
    return float((excess.max() - budget) / budget) if excess.size else -math.inf


def solve_round_cvxpy(problem: RoundProblem, solver: str = "CLARABEL") -> FedEnergyResult:
    """Reference solution of one round (arrays of shape ``(K,)``) with cvxpy.

    Variables are the computation time ``tau`` and upload time ``t`` (times normalised by T); the
    upload energy ``a t (exp(c / t) - 1)`` is the perspective of exp, written with an exponential
    cone ``t exp(c / t) <= z``. Infeasible devices are left out and run flat out, as in
    :func:`solve_round_energy`.
    """
    import cvxpy as cp

    start = time.perf_counter()
    if problem.gain.ndim != 1:
        raise ValueError(f"solve_round_cvxpy takes one round (shape (K,)), got {problem.gain.shape}")
    budget = problem.round_time_s
    feasible = problem.feasible
    idx = np.flatnonzero(feasible)
    share = problem.min_upload_time_s / (problem.min_compute_time_s + problem.min_upload_time_s)
    status = "partially infeasible" if idx.size < feasible.size else "optimal"
    if idx.size:
        cycles = problem.cycles[idx]
        a = problem.noise_over_gain_w[idx]
        c = problem.upload_scale_s[idx] / budget
        compute_coef = problem.kappa * cycles**3 / budget**2  # times normalised by T
        upload_coef = a * budget
        # Devices decouple, so weighting each one's energy leaves the minimiser unchanged; weights of
        # 1 / (its energy at the middle of its feasible split) keep the conic solver well scaled.
        t_mid = 0.5 * (problem.min_upload_time_s[idx] + budget - problem.min_compute_time_s[idx]) / budget
        mid_energy = compute_coef / (1.0 - t_mid) ** 2 + upload_coef * t_mid * np.expm1(c / t_mid)
        compute_coef, upload_coef = compute_coef / mid_energy, upload_coef / mid_energy
        tau = cp.Variable(idx.size)
        t = cp.Variable(idx.size)
        z = cp.Variable(idx.size)
        energy = cp.sum(cp.multiply(compute_coef, cp.power(tau, -2))) + cp.sum(
            cp.multiply(upload_coef, z - t)
        )
        constraints = [
            tau + t <= 1.0,
            tau >= problem.min_compute_time_s[idx] / budget,
            t >= problem.min_upload_time_s[idx] / budget,
            cp.constraints.ExpCone(c, t, z),
        ]
        prob = cp.Problem(cp.Minimize(energy), constraints)
        prob.solve(solver=solver, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, max_iter=500)
        if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
            raise RuntimeError(f"cvxpy reference failed with status {prob.status!r}")
        if prob.status == cp.OPTIMAL_INACCURATE:
            status = "optimal_inaccurate"
        share = share.copy()
        share[idx] = np.clip(np.asarray(t.value), 0.0, 1.0)
    outcome = round_outcome(problem, share)
    return FedEnergyResult(
        upload_share=share,
        outcome=outcome,
        multiplier=np.full(feasible.shape, np.nan),
        feasible=feasible,
        converged=True,
        iterations=0,
        status=status,
        max_violation=_max_violation(outcome, feasible, budget),
        solve_time_s=time.perf_counter() - start,
    )
