"""SFLAM-v0 oracle: block coordinate descent over bit-widths, power and bandwidth, and block matching.

Per round, minimise ``w_T T + w_E E + w_Q Q`` subject to ``T <= T_max`` (round latency), bandwidth
shares summing to at most 1 and powers in [0, p_max]. The blocks, in turn, until the objective's
relative change is below ``tol``:

1. **bits**: per device, every bit-width with the other devices' bits fixed (exact enumeration), each
   candidate scored at its own best shares and powers (``optimal_allocation``, below);
2. **power and bandwidth**: with the upload time ``t_n`` and the bandwidth-time product
   ``u_n = beta_n t_n``, the minimum upload energy is ``k_n (u_n e^(a_n/u_n) - u_n)`` (an exponential
   cone), with ``a_n = S_n ln2 / B`` and ``k_n = B N0 / g_n``. Two terms are not convex: the coupling
   ``u <= beta t`` and the power cap ``e^(a/u) <= 1 + p_max / (k beta)``. Successive convex
   approximation replaces each by a convex inner approximation that is tight at the current point
   (``beta t = ((beta + t)^2 - (beta - t)^2) / 4`` with the first square linearised; ``1 / beta``
   linearised), so every cvxpy solve (CLARABEL) starts feasible and cannot raise the objective;
3. **matching**: devices to resource blocks by scipy's ``linear_sum_assignment`` on each pair's
   energy at the current shares and upload times, then every two-device swap with re-optimised
   resources; a new matching is kept only if the true objective falls.

``optimal_allocation`` solves block 2 for fixed bits another way: for a round latency T every device
uploads for all of ``T - f_n``, the energy is convex in the shares, their KKT conditions have a
Lambert-W root per device and a bisection on the multiplier; T is searched on a refined grid. It agrees
with the cvxpy SCA (tested) and is fast enough to score the bits step's candidates.

BCD starts from the best of: each uniform bit-width at its ``optimal_allocation``, and the
least-latency point (fewest bits, full power, shares that equalise the devices' finishing times),
which is feasible whenever the round is. Latency over ``T_max`` is priced by an exact penalty
(``PENALTY`` per second over), which keeps every block solvable when the round is not feasible.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import cvxpy as cp
import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import lambertw

from edgegen.envs.sflam.config import SFLAMConfig
from edgegen.envs.sflam.scheduler import rate_matching
from edgegen.envs.sflam.system import (
    device_compute_energy_j,
    quantization_term,
    round_outcome,
    upload_bits,
)

__all__ = [
    "PENALTY",
    "SFLAMSolution",
    "least_latency_start",
    "optimal_allocation",
    "penalised_objective",
    "solve_sflam_bcd",
]

PENALTY = 1e3
_MIN_SHARE, _MIN_TIME = 1e-4, 1e-6


@dataclass(frozen=True)
class SFLAMSolution:
    """Decisions and value of the BCD oracle for one round.

    Attributes:
        bits, share, power_w: per device (in the round's device order).
        assignment: block of each device.
        objective: ``w_T T + w_E E + w_Q Q`` (without the penalty) at the decisions.
        round_latency_s: T.
        history: the penalised objective after every block update (non-increasing).
        status: ``"feasible"`` when the round latency meets ``T_max``, else ``"infeasible"`` (the round
            cannot be made, or BCD found no decision that makes it). BCD has no optimality certificate.
    """

    bits: np.ndarray
    share: np.ndarray
    power_w: np.ndarray
    assignment: np.ndarray
    objective: float
    round_latency_s: float
    history: list[float] = field(default_factory=list)
    status: str = "feasible"


def penalised_objective(config, block_gain, fixed_s, bits, share, power_w, assignment) -> np.ndarray:
    """Objective plus ``PENALTY`` x (T - T_max)+, broadcast over leading axes of the decisions."""
    gain = np.take_along_axis(block_gain, np.asarray(assignment)[:, None], axis=1)[:, 0]
    out = round_outcome(config, gain, fixed_s, bits, share, power_w)
    return out.objective + PENALTY * np.maximum(out.round_latency_s - config.round_latency_s_limit, 0.0)


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
    uniform = np.full(gain.size, bits)
    power = np.full(gain.size, config.max_power_w)
    lo, hi = float(np.max(fixed_s)), float(np.max(fixed_s)) + 1.0
    while np.sum(_shares_for_deadline(config, gain, fixed_s, uniform, power, hi)) > 1.0:
        lo, hi = hi, hi + 2.0 * (hi - float(np.max(fixed_s)))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        fits = np.sum(_shares_for_deadline(config, gain, fixed_s, uniform, power, mid)) <= 1.0
        lo, hi = (lo, mid) if fits else (mid, hi)
    need = _shares_for_deadline(config, gain, fixed_s, uniform, power, hi)
    return uniform, need / need.sum(), power, hi


def _upload_exponent(config: SFLAMConfig, bits: np.ndarray) -> np.ndarray:
    """``a = S ln 2 / B``: the upload time on the whole band at 1 nat/s/Hz, per device."""
    return upload_bits(config, bits) * np.log(2.0) / config.uplink_bandwidth_hz


def _upload_power_w(k: np.ndarray, a: np.ndarray, share: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Power that uploads in time ``t`` on share ``beta``: ``k beta (e^(a / (beta t)) - 1)`` (inf if huge)."""
    with np.errstate(over="ignore"):
        return k * share * np.expm1(a / (share * t))


def _min_shares(a: np.ndarray, headroom: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Least share that uploads in ``t`` at full power: ``(e^x - 1) / x = h t / a``, ``beta = a / (x t)``.

    With ``r = h t / a > 1`` the root is ``x = -W_{-1}(-e^(-1/r) / r) - 1 / r``; ``r <= 1`` cannot finish.
    """
    r = headroom * t / a
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = -lambertw(-np.exp(-1.0 / r) / r, -1).real - 1.0 / r
        return np.where(r > 1.0, a / (x * t), np.inf)


def optimal_allocation(
    config: SFLAMConfig,
    gain: np.ndarray,
    fixed_s: np.ndarray,
    bits: np.ndarray,
    grid: int = 24,
    levels: int = 4,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Best (share, power W, penalised objective) for fixed bits and blocks, with ``T <= T_max``.

    For a round latency T every device uploads for all of ``t_n = T - f_n`` (energy falls with time), and
    the energy ``k beta t (e^(a / (beta t)) - 1)`` is convex in the shares; their KKT condition
    ``e^x (x - 1) = lambda / (k t) - 1`` with ``x = a / (beta t)`` has the root ``x = 1 + W0(...)``,
    floored by the full-power share; bisection on ``log lambda`` makes the shares sum to 1. T itself is
    searched on a grid refined ``levels`` times around its best point. Objective ``inf`` when no T meets
    T_max. Vectorised over the grid; a few ms for 10 devices.
    """
    gain, fixed_s = np.asarray(gain, dtype=np.float64), np.asarray(fixed_s, dtype=np.float64)
    bits = np.asarray(bits)
    a = _upload_exponent(config, bits)
    k = config.uplink_noise_w / gain
    headroom = config.max_power_w / k
    compute_energy = device_compute_energy_j(config) * gain.size
    quant = float(quantization_term(config, bits))
    lo, hi = float(fixed_s.max()), config.round_latency_s_limit
    if hi <= lo:
        return np.full(gain.size, 1.0 / gain.size), np.full(gain.size, config.max_power_w), np.inf
    best = (None, None, np.inf)
    for _ in range(levels):
        big_t = np.linspace(lo, hi, grid + 1)[1:]
        t = big_t[:, None] - fixed_s[None, :]  # (G, M)
        floor = _min_shares(a, headroom, t)
        feasible = floor.sum(axis=1) <= 1.0
        if not feasible.any():
            lo = big_t[0]  # the least feasible T lies above the first grid point
            continue
        t, floor, big_t = t[feasible], floor[feasible], big_t[feasible]
        kt = k * t
        s_lo, s_hi = np.full(big_t.size, -60.0), np.full(big_t.size, 60.0)  # ln lambda
        for _ in range(60):
            s_mid = 0.5 * (s_lo + s_hi)
            x = 1.0 + lambertw((np.exp(s_mid)[:, None] / kt - 1.0) / np.e).real
            share = np.maximum(a / (x * t), floor)
            over = share.sum(axis=1) > 1.0  # shares fall as lambda rises
            s_lo, s_hi = np.where(over, s_mid, s_lo), np.where(over, s_hi, s_mid)
        x = 1.0 + lambertw((np.exp(s_hi)[:, None] / kt - 1.0) / np.e).real
        share = np.maximum(a / (x * t), floor)
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)
        power = np.minimum(_upload_power_w(k, a, share, t), config.max_power_w)
        value = (
            config.latency_weight * big_t
            + config.energy_weight * (compute_energy + np.sum(power * t, axis=1))
            + config.quantization_weight * quant
        )
        i = int(np.argmin(value))
        if value[i] < best[2]:
            best = (share[i], power[i], float(value[i]))
        step = (hi - lo) / grid
        lo, hi = (
            max(big_t[i] - step, float(fixed_s.max())),
            min(big_t[i] + step, config.round_latency_s_limit),
        )
    if best[0] is None:
        return np.full(gain.size, 1.0 / gain.size), np.full(gain.size, config.max_power_w), np.inf
    share, power, _ = best
    # the penalised objective at these decisions (the grid value assumed every device finishes at T)
    value = penalised_objective(config, gain[:, None], fixed_s, bits, share, power, np.zeros(gain.size, int))
    return share, power, float(value)


def _bits_step(config, block_gain, fixed_s, bits, share, power, assignment):
    """Per device, every bit-width with the others fixed, each scored at its best shares and powers.

    Scoring a candidate at the current shares would make raising one device's bits look late (the
    device needs more bandwidth), so a step could never leave the fewest bits; ``optimal_allocation``
    scores it at its own best resources. The current point is kept unless a candidate beats it.
    """
    m = bits.size
    gain = block_gain[np.arange(m), assignment]
    best = float(penalised_objective(config, block_gain, fixed_s, bits, share, power, assignment))
    bits, choices = bits.copy(), np.asarray(config.bits_choices)
    for n in range(m):
        for b in choices:
            if b == bits[n]:
                continue
            trial = bits.copy()
            trial[n] = b
            trial_share, trial_power, value = optimal_allocation(config, gain, fixed_s, trial)
            if value < best * (1.0 - 1e-12):
                bits, share, power, best = trial, trial_share, trial_power, value
    return bits, share, power


def _power_bandwidth_step(config, gain, fixed_s, bits, share, power, max_iter: int = 30, tol: float = 1e-7):
    """SCA on (beta, t) from the current point; returns the improved (share, power)."""
    m = gain.size
    a = _upload_exponent(config, bits)
    k = config.uplink_noise_w / gain  # B N0 / g
    p_max = config.max_power_w
    compute_energy = device_compute_energy_j(config) * m
    out = round_outcome(config, gain, fixed_s, bits, share, power)
    beta0, t0 = share.copy(), out.upload_time_s.copy()
    previous = float(out.objective + PENALTY * max(out.round_latency_s - config.round_latency_s_limit, 0.0))
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
            big_t <= config.round_latency_s_limit + slack,
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
        new_t = np.maximum(np.asarray(t.value), _MIN_TIME)
        # The power that sends S_n in t_n on share beta_n (never above p_max up to solver tolerance).
        new_power = np.minimum(_upload_power_w(k, a, new_beta, new_t), p_max)
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
    """Devices to blocks, two ways; returns the current point unless the objective falls.

    1. ``linear_sum_assignment`` at the current shares and upload times: the energy of device n on block
       j is the power it needs there times its time, so for those it is the exact best matching;
    2. every swap of two devices' blocks, each scored with its resources re-optimised (a matching
       that only pays off with new shares is invisible to 1).
    """
    m = bits.size
    rows = np.arange(m)
    t = round_outcome(config, block_gain[rows, assignment], fixed_s, bits, share, power).upload_time_s
    a = _upload_exponent(config, bits)
    k = config.uplink_noise_w / block_gain  # (device, block)
    need = _upload_power_w(k, a[:, None], share[:, None], t[:, None])  # on every block, same share and time
    cost = np.where(need <= config.max_power_w * (1 + 1e-9), need * t[:, None], 1e30)
    _, cols = linear_sum_assignment(cost)
    value = float(penalised_objective(config, block_gain, fixed_s, bits, share, power, assignment))
    best = (share, power, assignment, value)
    if not np.array_equal(cols, assignment):
        moved = np.minimum(need[rows, cols], config.max_power_w)
        for new_share, new_power, new_value in (
            (share, moved, float(penalised_objective(config, block_gain, fixed_s, bits, share, moved, cols))),
            optimal_allocation(config, block_gain[rows, cols], fixed_s, bits),
        ):
            if new_value < best[3] * (1.0 - 1e-12):
                best = (new_share, new_power, cols, new_value)
    base = best[2]
    for i in range(m):
        for j in range(i + 1, m):
            swapped = base.copy()
            swapped[[i, j]] = base[[j, i]]
            new_share, new_power, new_value = optimal_allocation(
                config, block_gain[rows, swapped], fixed_s, bits
            )
            if new_value < best[3] * (1.0 - 1e-12):
                best = (new_share, new_power, swapped, new_value)
    return best[:3]


def _descend(config, block_gain, fixed_s, bits, share, power, match, optimise_matching, tol, max_iter):
    """BCD sweeps from one start until the relative change of the penalised objective is below ``tol``."""
    m = bits.size

    def value() -> float:
        return float(penalised_objective(config, block_gain, fixed_s, bits, share, power, match))

    history = [value()]
    for _ in range(max_iter):
        start = history[-1]
        bits, share, power = _bits_step(config, block_gain, fixed_s, bits, share, power, match)
        history.append(value())
        gain = block_gain[np.arange(m), match]
        share, power = _power_bandwidth_step(config, gain, fixed_s, bits, share, power)
        history.append(value())
        if optimise_matching:
            share, power, match = _matching_step(config, block_gain, fixed_s, bits, share, power, match)
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
    # Starts: every uniform bit-width at its best shares and powers, and the least-latency point of the
    # fewest bits (feasible whenever any decision is). The descent runs from the best of them.
    first_gain = block_gain[np.arange(m), first_match]
    bits, share, power, _ = least_latency_start(config, first_gain, fixed_s, config.bits_choices[0])
    value = float(penalised_objective(config, block_gain, fixed_s, bits, share, power, first_match))
    for b in config.bits_choices:
        uniform = np.full(m, b)
        trial_share, trial_power, trial_value = optimal_allocation(config, first_gain, fixed_s, uniform)
        if trial_value < value:
            bits, share, power, value = uniform, trial_share, trial_power, trial_value
    best = _descend(
        config, block_gain, fixed_s, bits, share, power, first_match, optimise_matching, tol, max_iter
    )
    bits, share, power, match, history = best
    gain = block_gain[np.arange(m), match]
    out = round_outcome(config, gain, fixed_s, bits, share, power)
    latency = float(out.round_latency_s)
    status = "feasible" if latency <= config.round_latency_s_limit * (1.0 + 1e-9) else "infeasible"
    return SFLAMSolution(bits, share, power, match, float(out.objective), latency, history, status)
