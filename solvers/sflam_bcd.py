"""SFLAM-v0 oracle: block coordinate descent over bit-widths, power and bandwidth, and block matching.

Per round, minimise ``w_T T + w_E E + w_Q Q`` subject to ``T <= T_max`` (round latency), bandwidth
shares summing to at most 1 and powers in [0, p_max]. The blocks, in turn, until the objective's
relative change is below ``tol``:

1. **bits**: per device, every bit-width tried with everything else fixed (exact enumeration);
2. **power and bandwidth**: with the upload time ``t_n`` and the bandwidth-time product
   ``u_n = beta_n t_n``, the minimum upload energy is ``k_n (u_n e^(a_n/u_n) - u_n)`` (an exponential
   cone), with ``a_n = S_n ln2 / B`` and ``k_n = B N0 / g_n``. Two terms are not convex: the coupling
   ``u <= beta t`` and the power cap ``e^(a/u) <= 1 + p_max / (k beta)``. Successive convex
   approximation replaces each by a convex inner approximation that is tight at the current point
   (``beta t = ((beta + t)^2 - (beta - t)^2) / 4`` with the first square linearised; ``1 / beta``
   linearised), so every cvxpy solve (CLARABEL) starts feasible and cannot raise the objective;
3. **matching**: devices to resource blocks by scipy's ``linear_sum_assignment`` on each pair's
   energy and latency with the current decisions, kept only if the true objective falls.

BCD starts from the least-latency point (fewest bits, full power, shares that equalise the devices'
finishing times), so it starts feasible whenever the round is; latency over ``T_max`` is priced by an
exact penalty (``PENALTY`` per second over), which keeps every block solvable when it is not.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy.optimize import linear_sum_assignment

from envs.sflam.config import SFLAMConfig
from envs.sflam.system import round_outcome, upload_bits

__all__ = [
    "PENALTY",
    "SFLAMSolution",
    "least_latency_start",
    "penalised_objective",
    "rate_matching",
    "solve_sflam_bcd",
]

PENALTY = 1e3
_MIN_SHARE, _MIN_TIME = 1e-4, 1e-6


@dataclass
class SFLAMSolution:
    """Decisions and value of the BCD oracle for one round.

    Attributes:
        bits, share, power_w: per device (in the round's device order).
        assignment: block of each device.
        objective: ``w_T T + w_E E + w_Q Q`` (without the penalty) at the decisions.
        round_latency_s: T.
        history: the penalised objective after every block update (non-increasing).
    """

    bits: np.ndarray
    share: np.ndarray
    power_w: np.ndarray
    assignment: np.ndarray
    objective: float
    round_latency_s: float
    history: list[float] = field(default_factory=list)


def rate_matching(config: SFLAMConfig, block_gain: np.ndarray) -> np.ndarray:
    """Scheduler rule of the env: blocks maximising the sum of full-power, equal-share rates.

    ``block_gain`` is (..., M, M) (device, block); returns the block of every device, (..., M).
    """
    block_gain = np.asarray(block_gain, dtype=np.float64)
    m = block_gain.shape[-1]
    # The equal-share rate is (B / M) log2(1 + snr): a positive factor away from log1p(snr).
    snr = block_gain * (config.max_power_w * m / config.uplink_noise_w)
    neg_rates = -np.log1p(snr).reshape(-1, m, m)
    cols = np.array([linear_sum_assignment(cost)[1] for cost in neg_rates])
    return cols.reshape(block_gain.shape[:-1])


def penalised_objective(config, block_gain, fixed_s, bits, share, power_w, assignment) -> np.ndarray:
    """Objective plus ``PENALTY`` x (T - T_max)+, broadcast over leading axes of the decisions."""
    gain = np.take_along_axis(block_gain, np.asarray(assignment)[:, None], axis=1)[:, 0]
    out = round_outcome(config, gain, fixed_s, bits, share, power_w)
    return out.objective + PENALTY * np.maximum(out.round_latency_s - config.max_round_latency_s, 0.0)


def _shares_for_deadline(config, gain, fixed_s, bits, power, deadline_s: float) -> np.ndarray:
    """Smallest bandwidth share per device that uploads within ``deadline_s`` (inf where none can)."""
    lo, hi = np.zeros(gain.size), np.ones(gain.size)
    for _ in range(50):  # the rate rises with the share, so bisection per device (vectorised)
        mid = 0.5 * (lo + hi)
        late = round_outcome(config, gain, fixed_s, bits, mid, power).latency_s > deadline_s
        lo, hi = np.where(late, mid, lo), np.where(late, hi, mid)
    done = round_outcome(config, gain, fixed_s, bits, hi, power).latency_s <= deadline_s * (1 + 1e-9)
    return np.where(done, hi, np.inf)


def least_latency_start(
    config: SFLAMConfig, gain: np.ndarray, fixed_s: np.ndarray, bits: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``bits`` everywhere, full power, and the shares that give the least round latency T (returned last)."""
    bits = np.full(gain.size, bits)
    power = np.full(gain.size, config.max_power_w)
    lo, hi = float(np.max(fixed_s)), float(np.max(fixed_s)) + 1.0
    while np.sum(_shares_for_deadline(config, gain, fixed_s, bits, power, hi)) > 1.0:
        lo, hi = hi, hi + 2.0 * (hi - float(np.max(fixed_s)))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        fits = np.sum(_shares_for_deadline(config, gain, fixed_s, bits, power, mid)) <= 1.0
        lo, hi = (lo, mid) if fits else (mid, hi)
    need = _shares_for_deadline(config, gain, fixed_s, bits, power, hi)
    return bits, need / need.sum(), power, hi


def _bits_step(config, block_gain, fixed_s, bits, share, power, assignment) -> np.ndarray:
    bits = bits.copy()
    choices = np.asarray(config.bits_choices)
    for n in range(bits.size):
        trial = np.repeat(bits[None], choices.size, axis=0)
        trial[:, n] = choices
        values = penalised_objective(config, block_gain, fixed_s, trial, share, power, assignment)
        bits[n] = choices[int(np.argmin(values))]
    return bits


def _power_bandwidth_step(config, gain, fixed_s, bits, share, power, max_iter: int = 30, tol: float = 1e-7):
    """SCA on (beta, t) from the current point; returns the improved (share, power)."""
    m = gain.size
    a = upload_bits(config, bits) * np.log(2.0) / config.uplink_bandwidth_hz
    k = config.uplink_noise_w / gain  # B N0 / g
    p_max = config.max_power_w
    compute_energy = config.kappa * config.device_cycles * config.device_frequency_hz**2 * m
    out = round_outcome(config, gain, fixed_s, bits, share, power)
    beta0, t0 = share.copy(), out.upload_time_s.copy()
    previous = float(out.objective + PENALTY * max(out.round_latency_s - config.max_round_latency_s, 0.0))
    best = (share.copy(), power.copy(), previous)
    for _ in range(max_iter):
        beta, t, u, s = cp.Variable(m), cp.Variable(m), cp.Variable(m), cp.Variable(m)
        big_t, slack = cp.Variable(), cp.Variable(nonneg=True)
        h0 = p_max / (k * beta0)
        constraints = [
            cp.constraints.ExpCone(a * np.ones(m), u, s),  # u exp(a / u) <= s
            u + cp.square(beta - t) / 4
            <= (beta0 + t0) ** 2 / 4 + cp.multiply((beta0 + t0) / 2, beta + t - beta0 - t0),
            cp.exp(cp.multiply(a, cp.inv_pos(u))) <= 1 + h0 - cp.multiply(h0 / beta0, beta - beta0),
            t + fixed_s <= big_t,
            big_t <= config.max_round_latency_s + slack,
            cp.sum(beta) <= 1,
            beta >= _MIN_SHARE,
            t >= _MIN_TIME,
        ]
        energy = compute_energy + cp.sum(cp.multiply(k, s - u))
        objective = config.latency_weight * big_t + config.energy_weight * energy + PENALTY * slack
        problem = cp.Problem(cp.Minimize(objective), constraints)
        try:
            with warnings.catch_warnings():  # "inaccurate" answers are checked on the true objective below
                warnings.simplefilter("ignore")
                problem.solve(solver=cp.CLARABEL)
        except cp.SolverError:
            break
        if problem.status not in ("optimal", "optimal_inaccurate") or beta.value is None:
            break
        new_beta = np.clip(beta.value, _MIN_SHARE, 1.0)
        new_beta = new_beta / max(new_beta.sum(), 1.0)
        new_t = np.maximum(t.value, _MIN_TIME)
        # The power that sends S_n in t_n on share beta_n (never above p_max up to solver tolerance).
        with np.errstate(over="ignore"):
            new_power = np.minimum(k * new_beta * np.expm1(a / (new_beta * new_t)), p_max)
        value = float(
            penalised_objective(
                config, gain[:, None], fixed_s, bits, new_beta, new_power, np.zeros(m, dtype=np.int64)
            )
        )
        if value < best[2]:
            best = (new_beta, new_power, value)
        beta0, t0 = new_beta, round_outcome(config, gain, fixed_s, bits, new_beta, new_power).upload_time_s
        if abs(previous - value) <= tol * max(abs(previous), 1.0):
            break
        previous = value
    return best[0], best[1]


def _matching_step(config, block_gain, fixed_s, bits, share, power, assignment):
    m = bits.size
    # cost of device n on block j with its current decisions: its energy plus its latency share
    out = round_outcome(config, block_gain, fixed_s[:, None], bits[:, None], share[:, None], power[:, None])
    over = np.maximum(out.latency_s - config.max_round_latency_s, 0.0)
    cost = (
        config.energy_weight * out.upload_energy_j
        + config.latency_weight * out.latency_s / m
        + PENALTY * over
    )
    _, cols = linear_sum_assignment(cost)
    current = float(penalised_objective(config, block_gain, fixed_s, bits, share, power, assignment))
    candidate = float(penalised_objective(config, block_gain, fixed_s, bits, share, power, cols))
    return cols if candidate < current else assignment


def _descend(config, block_gain, fixed_s, bits, share, power, match, optimise_matching, tol, max_iter):
    """BCD sweeps from one start until the relative change of the penalised objective is below ``tol``."""
    m = bits.size

    def value() -> float:
        return float(penalised_objective(config, block_gain, fixed_s, bits, share, power, match))

    history = [value()]
    for _ in range(max_iter):
        start = history[-1]
        bits = _bits_step(config, block_gain, fixed_s, bits, share, power, match)
        history.append(value())
        gain = block_gain[np.arange(m), match]
        share, power = _power_bandwidth_step(config, gain, fixed_s, bits, share, power)
        history.append(value())
        if optimise_matching:
            match = _matching_step(config, block_gain, fixed_s, bits, share, power, match)
            history.append(value())
        if abs(start - history[-1]) <= tol * max(abs(start), 1.0):
            break
    return bits, share, power, match, history


def solve_sflam_bcd(
    config: SFLAMConfig,
    block_gain: np.ndarray,
    downlink_fixed_s: np.ndarray,
    assignment: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 50,
) -> SFLAMSolution:
    """Run BCD for one round.

    Args:
        config: the env's configuration.
        block_gain: (M, M) gain of device n on resource block j.
        downlink_fixed_s: (M,) latency the decisions do not change (``envs.sflam.system.fixed_latency_s``).
        assignment: keep this device-to-block matching (the env's scheduler) instead of optimising it.
        tol: stop when the objective's relative change over a sweep is below it.
        max_iter: most sweeps.
    """
    block_gain = np.asarray(block_gain, dtype=np.float64)
    m = block_gain.shape[0]
    if block_gain.shape != (m, m):
        raise ValueError(f"block_gain must be (M, M), got {block_gain.shape}")
    fixed_s = np.asarray(downlink_fixed_s, dtype=np.float64)
    optimise_matching = assignment is None
    first_match = rate_matching(config, block_gain) if optimise_matching else np.asarray(assignment)
    first_gain = block_gain[np.arange(m), first_match]
    # One start per uniform bit-width that can meet T_max (least-latency shares, full power); one
    # block-coordinate step cannot leave a bad start (raising one device's bits alone makes it late),
    # so the best of the runs is returned. Without any feasible start, the fewest bits.
    starts = [least_latency_start(config, first_gain, fixed_s, b) for b in config.bits_choices]
    feasible = [s[:3] for s in starts if s[3] <= config.max_round_latency_s] or [starts[0][:3]]
    best = None
    for bits, share, power in feasible:
        run = _descend(
            config, block_gain, fixed_s, bits, share, power, first_match, optimise_matching, tol, max_iter
        )
        if best is None or run[-1][-1] < best[-1][-1]:
            best = run
    bits, share, power, match, history = best
    gain = block_gain[np.arange(m), match]
    out = round_outcome(config, gain, fixed_s, bits, share, power)
    return SFLAMSolution(bits, share, power, match, float(out.objective), float(out.round_latency_s), history)
