"""SFLAM-v0's certified oracle: a bandwidth price, per-device enumeration and a branch-and-bound on T.

One round's problem (``envs.sflam.system``): minimise ``w_T T + w_E E + w_Q Q`` over each selected
device's bit-width b_n, bandwidth share beta_n and power p_n (and, with ``assignment=None``, the
device-to-block matching), subject to ``max_n (f_n + t_n) = T <= T_max``, ``sum beta_n <= 1`` and
``p_n <= p_max``.

**Fixed T.** Energy falls with the upload time, so every device uploads for all of ``t_n = T - f_n``;
its upload energy at share beta is ``k_n beta t_n (e^(a_b / (beta t_n)) - 1)`` (``a_b = S_b ln2 / B``,
``k_n = B N0 / g_n``), convex and falling in beta, and the power cap is a floor ``beta >= beta_min(b, t)``
(a Lambert-W root). The devices are coupled only by the bandwidth budget; a price ``lambda >= 0`` on it
separates the problem:

    D_T(lambda) = sum_n min_b min_{beta_min <= beta <= 1} [w_E E_n(b, beta) + (w_Q / M) q_b + lambda beta]
                  - lambda

(with a free matching, the sum over devices is a linear assignment over (device, block) pairs, solved
exactly by ``scipy.optimize.linear_sum_assignment``). The inner problems are exact: a convex 1-D
minimum (stationary point ``x = 1 + W0((lambda / (w_E k t) - 1) / e)``, ``beta = a / (x t)``, clipped to
the interval) per (device, block, bit-width), then enumeration. By weak duality every ``D_T(lambda)``
is a lower bound on ``F(T)``, the least energy-and-quantization cost when every device finishes by
``T``; ``D_T`` is concave and its supergradient is ``sum beta_n(lambda) - 1``, so bisection on
``log lambda`` finds its maximum.

**Over T.** ``F`` does not increase with T, so on a cell ``[T_i, T_{i+1}]`` the objective is at least
``w_T T_i + D(T_{i+1}) + w_E M E_compute``: the minimum of these cell bounds is a certified lower bound
on the round's optimum. Cells whose bound is below the best objective found (by more than ``tol``)
are split until none is, or ``max_levels`` is reached.

**Primal.** At each T the bit-widths (and matching) chosen at the price's two bisection ends give
decisions; for fixed bits the shares are the exact continuous optimum (the same price with the bits
held, no duality gap). The best point is polished by one-device bit changes and (free matching) block
swaps, each re-solved exactly on a local T grid. The returned objective is evaluated by the env's
model (``envs.sflam.system.round_outcome``), and ``lower_bound <= objective`` always.

A round that no decision can make within ``T_max`` returns ``status="infeasible"`` with the
least-latency decisions (fewest bits, full power, shares that equalise the finishing times).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.special import lambertw

from edgegen.envs.oracle_result import OracleStatus
from edgegen.envs.sflam.config import SFLAMConfig
from edgegen.envs.sflam.system import (
    device_compute_energy_j,
    per_value_quantization_error,
    round_outcome,
    upload_bits,
)

__all__ = ["SFLAMDualSolution", "solve_sflam_dual"]

_LOG_PRICE = (-60.0, 60.0)  # bracket of ln(lambda / w_E), lambda in the objective's units per share
_BISECTIONS = 48


@dataclass(frozen=True)
class SFLAMDualSolution:
    """Decisions, value and certificate of one round.

    Attributes:
        bits, share, power_w, assignment: per device (in the round's device order).
        objective: ``w_T T + w_E E + w_Q Q`` at the decisions (the env's model).
        lower_bound: certified lower bound on the round's optimum (``inf`` when the round is infeasible).
        round_latency_s: T at the decisions.
        status: ``"optimal"`` when the relative gap is within ``tol``, ``"feasible"`` when the decisions
            meet ``T_max`` with a larger gap, ``"infeasible"`` when no decision meets it (the decisions
            are then the least-latency ones).
        iterations: T points at which the dual was evaluated.
        solve_time_s: wall time.
    """

    bits: np.ndarray
    share: np.ndarray
    power_w: np.ndarray
    assignment: np.ndarray
    objective: float
    lower_bound: float
    round_latency_s: float
    status: OracleStatus
    iterations: int
    solve_time_s: float

    @property
    def gap(self) -> float:
        """``(objective - lower_bound) / |objective|``."""
        if not np.isfinite(self.lower_bound):
            return float("inf")
        return max(self.objective - self.lower_bound, 0.0) / abs(self.objective)


class _Round:
    """The constants of one round, and the exact per-device inner minimisations."""

    def __init__(self, config: SFLAMConfig, gain: np.ndarray, fixed_s: np.ndarray) -> None:
        # gain: (M, J): device n on block j (J = 1 with the matching fixed)
        self.config = config
        self.m = gain.shape[0]
        self.fixed_s = fixed_s
        choices = np.asarray(config.bits_choices)
        self.bits_choices = choices
        self.a = upload_bits(config, choices) * np.log(2.0) / config.uplink_bandwidth_hz  # (nb,)
        self.k = config.uplink_noise_w / gain  # (M, J)
        self.headroom = config.max_power_w / self.k  # (M, J)
        self.w_e = config.energy_weight
        self.quant_cost = config.quantization_weight * per_value_quantization_error(config, choices) / self.m
        self.constant = config.energy_weight * device_compute_energy_j(config) * self.m

    def min_shares(self, t: np.ndarray) -> np.ndarray:
        """Least share that uploads in ``t`` at full power, (..., M, J, nb); inf where none can (or > 1)."""
        a = self.a
        r = self.headroom[..., None] * t[..., None, None] / a  # (..., M, J, nb)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            x = -lambertw(-np.exp(-1.0 / r) / r, -1).real - 1.0 / r
            share = np.where(r > 1.0, a / (x * t[..., None, None]), np.inf)
        return np.where(share <= 1.0, share, np.inf)

    def inner(self, log_price: np.ndarray, t: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (device, block, bit-width): the minimum of ``cost + lambda beta`` and its beta.

        ``log_price``: (...,) = ln(lambda / w_E); ``t``: (..., M) upload time; ``floor``: min_shares(t).
        """
        tt = t[..., None, None]  # (..., M, 1, 1)
        k = self.k[..., None]  # (M, J, 1)
        price = np.exp(log_price)[..., None, None, None]
        feasible = np.isfinite(floor)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self.w_e > 0:
                share = np.clip(self.a / (_priced_rate(price, k * tt) * tt), floor, 1.0)
            else:  # energy is free: the least share
                share = np.where(feasible, floor, 1.0)
            energy = k * share * tt * np.expm1(self.a / (share * tt))
            lam = self.w_e * price if self.w_e > 0 else np.exp(log_price)[..., None, None, None]
            value = self.w_e * energy + self.quant_cost + lam * share
        return np.where(feasible, value, np.inf), share

    def price(self, log_price: np.ndarray) -> np.ndarray:
        return (self.w_e if self.w_e > 0 else 1.0) * np.exp(log_price)


def _priced_rate(price: np.ndarray, kt: np.ndarray) -> np.ndarray:
    """``x = a / (beta t)`` that minimises ``k beta t (e^x - 1) + price beta``: ``1 + W((price/kt - 1)/e)``.

    At a price far below ``k t`` the argument rounds below W's branch point -1/e, where W is NaN; it is
    clipped there (x = 0: the device wants the whole band, and the caller's clip to 1 applies).
    """
    arg = (price / kt - 1.0) / np.e
    at_branch = arg <= -1.0 / np.e  # float -1/e itself gives NaN too
    return np.where(at_branch, 0.0, 1.0 + lambertw(np.where(at_branch, 0.0, arg)).real)


def _choose(values: np.ndarray, shares: np.ndarray, match: np.ndarray | None):
    """Per device the best (block, bits) at one price: sum of values, sum of shares, bits idx, blocks.

    ``values``/``shares``: (G, M, J, nb). With J = 1 (or ``match`` given) the block is fixed; otherwise
    a linear assignment per G on the per-pair minimum over bits.
    """
    g, m, j, _ = values.shape
    best_b = np.argmin(values, axis=-1)  # (G, M, J)
    pair_value = np.take_along_axis(values, best_b[..., None], axis=-1)[..., 0]
    pair_share = np.take_along_axis(shares, best_b[..., None], axis=-1)[..., 0]
    if j == 1:
        blocks = np.zeros((g, m), dtype=np.intp)
    elif match is not None:
        blocks = np.broadcast_to(match, (g, m))
    else:
        blocks = np.empty((g, m), dtype=np.intp)
        for i in range(g):
            cost = pair_value[i]
            if not np.all(np.isfinite(cost.min(axis=1))):
                blocks[i] = np.argmin(cost, axis=1)
                continue
            big = np.where(np.isfinite(cost), cost, 1e300)
            blocks[i] = linear_sum_assignment(big)[1]
    rows = np.arange(m)
    value = np.take_along_axis(pair_value, blocks[..., None], axis=-1)[..., 0]  # (G, M)
    share = np.take_along_axis(pair_share, blocks[..., None], axis=-1)[..., 0]
    bits = np.take_along_axis(best_b, blocks[..., None], axis=-1)[..., 0]
    del rows
    return value.sum(axis=-1), share.sum(axis=-1), bits, blocks


def _dual(rnd: _Round, big_t: np.ndarray, allowed: np.ndarray | None = None):
    """Maximise D_T(lambda) for each T in ``big_t``.

    Returns the bound (without the T and compute terms), the primal candidates (bits index, blocks)
    at both ends of the bisection, and which T are infeasible.

    ``allowed``: optional (G, M, nb) mask of the bit-widths each device may take (a branch of the
    bits branch-and-bound); the bound is then one on that branch's optimum.
    """
    t = big_t[:, None] - rnd.fixed_s[None, :]
    with np.errstate(invalid="ignore"):
        floor = rnd.min_shares(np.where(t > 0, t, np.nan))
    floor = np.where(np.isnan(floor), np.inf, floor)
    if allowed is not None:
        floor = np.where(allowed[:, :, None, :], floor, np.inf)  # a barred bit-width is infeasible
    # A T at which even the least shares overflow the band (or a device cannot finish) is infeasible.
    least = np.min(floor, axis=-1)  # (G, M, J)
    if least.shape[-1] == 1:
        need = least[..., 0].sum(axis=-1)
    else:
        need = np.array([_least_assignment(c) for c in least])
    infeasible = ~(need <= 1.0)
    lo = np.full(big_t.size, _LOG_PRICE[0])
    hi = np.full(big_t.size, _LOG_PRICE[1])
    bound = np.full(big_t.size, -np.inf)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        values, shares = rnd.inner(mid, t, floor)
        total, used, _, _ = _choose(values, shares, None)
        bound = np.maximum(bound, total - rnd.price(mid))
        over = used > 1.0  # shares fall as the price rises
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    candidates = []
    for end in (lo, hi):
        values, shares = rnd.inner(end, t, floor)
        total, used, bits, blocks = _choose(values, shares, None)
        bound = np.maximum(bound, total - rnd.price(end))
        candidates.append((bits, blocks))
    bound = np.where(infeasible, np.inf, bound)
    return bound, candidates, infeasible


def _branch_on_bits(rnd: _Round, big_t: float, max_nodes: int, prune_above: float):
    """Branch and bound on the bit-widths at one T: a tighter dual bound, and primal candidates.

    The Lagrangian bound's gap comes from devices whose best bit-width flips at the price's optimum
    (the shares jump). A node bars some bit-widths; its dual bound is valid for its subset. A node is
    a leaf when its bound is at least ``prune_above`` (it cannot hold a better point) or its two price
    ends choose the same bits (the bound is then attained); otherwise the first device that flips is
    branched on, one child per allowed bit-width. Returns (bound over all leaves and open nodes,
    candidate (bits, blocks) list).
    """
    nb = rnd.bits_choices.size
    nodes = [np.ones((rnd.m, nb), dtype=bool)]
    leaves: list[float] = []
    candidates = []
    evaluated = 0
    while nodes and evaluated + len(nodes) <= max_nodes:
        masks = np.array(nodes)
        bound, ends, _ = _dual(rnd, np.full(len(nodes), big_t), masks)
        evaluated += len(nodes)
        candidates.extend(ends)
        children = []
        for i, mask in enumerate(nodes):
            flips = np.flatnonzero(ends[0][0][i] != ends[1][0][i])
            if bound[i] >= prune_above or flips.size == 0:
                leaves.append(float(bound[i]))
                continue
            n = flips[0]
            for b in np.flatnonzero(mask[n]):
                child = mask.copy()
                child[n] = False
                child[n, b] = True
                children.append(child)
        nodes_bound = bound
        nodes = children
        if not nodes:
            break
    open_bound = float(np.min(nodes_bound)) if nodes else np.inf
    return min(min(leaves, default=np.inf), open_bound), candidates


def _least_assignment(cost: np.ndarray) -> float:
    big = np.where(np.isfinite(cost), cost, 1e300)
    rows, cols = linear_sum_assignment(big)
    return float(cost[rows, cols].sum())


def _allocate(rnd: _Round, big_t: np.ndarray, bits: np.ndarray, blocks: np.ndarray):
    """Exact shares for fixed bits and blocks at each T: (objective w/o constants, shares, ok).

    ``big_t``: (C,), ``bits``/``blocks``: (C, M) indices. The price is bisected with the bits held, so
    the shares sum to at most 1 (no duality gap for the continuous part).
    """
    c, m = bits.shape
    t = big_t[:, None] - rnd.fixed_s[None, :]
    rows = np.arange(m)
    a = rnd.a[bits]  # (C, M)
    k = rnd.k[rows[None, :], blocks]  # (C, M)
    headroom = rnd.headroom[rows[None, :], blocks]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = headroom * t / a
        x = -lambertw(-np.exp(-1.0 / r) / r, -1).real - 1.0 / r
        floor = np.where((r > 1.0) & (t > 0), a / (x * t), np.inf)
    ok = np.all(floor <= 1.0, axis=-1) & (floor.sum(axis=-1) <= 1.0)
    lo = np.full(c, _LOG_PRICE[0])
    hi = np.full(c, _LOG_PRICE[1])

    def shares_at(log_price: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if rnd.w_e > 0:
                xx = _priced_rate(np.exp(log_price)[:, None], k * t)
                return np.clip(a / (xx * t), floor, 1.0)
            return floor.copy()

    if rnd.w_e > 0:
        for _ in range(_BISECTIONS):
            mid = 0.5 * (lo + hi)
            over = shares_at(mid).sum(axis=-1) > 1.0
            lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    share = shares_at(hi)
    share = np.where(ok[:, None], share, 1.0 / m)
    with np.errstate(over="ignore", invalid="ignore"):
        energy = (k * share * t * np.expm1(a / (share * t))).sum(axis=-1)
    quant = rnd.quant_cost[bits].sum(axis=-1)
    value = rnd.config.latency_weight * big_t + rnd.w_e * energy + quant + rnd.constant
    return np.where(ok, value, np.inf), share, ok


def _least_latency(rnd: _Round, match: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Fewest bits, full power, and the least T whose least shares fit the band: (bits idx, shares, T)."""
    m = rnd.m
    bits = np.zeros(m, dtype=np.intp)
    rows = np.arange(m)

    def need(big_t: float) -> np.ndarray:
        t = np.array([[big_t]]) - rnd.fixed_s[None, :]
        with np.errstate(invalid="ignore"):
            floor = rnd.min_shares(np.where(t > 0, t, np.nan))[0]
        floor = np.where(np.isnan(floor), np.inf, floor)
        return floor[rows, match, 0]

    lo = float(rnd.fixed_s.max())
    if not lo < 1e9:  # past this, T - fixed latency is lost to round-off
        raise ValueError(
            f"SFLAM round: any round latency limit cannot be met: the devices' fixed latency is {lo:.3g} s"
        )
    hi = lo + 1.0
    # min_shares caps at 1 (inf above): grow T until every device fits, then until the sum fits
    while not np.sum(need(hi)) <= 1.0:
        lo, hi = hi, hi + 2.0 * (hi - float(rnd.fixed_s.max()))
        if hi > 1e9:
            raise ValueError(
                "SFLAM round: any round latency limit cannot be met: no round latency below 1e9 s "
                "uploads every device"
            )
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if np.sum(need(mid)) <= 1.0 else (mid, hi)
    share = need(hi)
    return bits, share / share.sum(), hi


class _LatencySearch:
    """Branch and bound on the round latency T (cells between evaluated points).

    The bits branch-and-bound runs at the T points where only the duality gap is left.

    ``bound_at`` maps each evaluated T to its dual bound (without the T and compute terms); ``best``
    is the best primal (value, (T, bits, blocks)) found.
    """

    def __init__(self, rnd: _Round, t0: float, tol: float, max_bits_nodes: int) -> None:
        self.rnd, self.t0, self.tol, self.max_bits_nodes = rnd, t0, tol, max_bits_nodes
        self.w_t = rnd.config.latency_weight
        self.bound_at: dict[float, float] = {}
        self.best: tuple[float, Any] = (np.inf, None)
        self.evaluated = 0
        self.tightened: set[float] = set()

    def consider(self, t_values: np.ndarray, candidates) -> None:
        """Exact shares for each candidate (bits, blocks) at its T; keep the best."""
        for bits_idx, blocks in candidates:
            values, _, _ = _allocate(self.rnd, t_values, bits_idx, blocks)
            i = int(np.argmin(values))
            if values[i] < self.best[0]:
                self.best = (float(values[i]), (float(t_values[i]), bits_idx[i].copy(), blocks[i].copy()))

    def evaluate(self, new: np.ndarray) -> None:
        bound, candidates, _ = _dual(self.rnd, new)
        self.evaluated += new.size
        for t_value, b in zip(new.tolist(), bound.tolist(), strict=True):
            self.bound_at[t_value] = b
        self.consider(new, candidates)

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right ends, left ends, bound) of every cell."""
        ts = np.array(sorted(self.bound_at))
        lefts = np.concatenate([[self.t0], ts[:-1]])
        # F(T) >= F(T') >= D(T') for every T' >= T: a cell's bound is the largest dual bound to its right
        right_bound = np.maximum.accumulate(np.array([self.bound_at[t] for t in ts.tolist()])[::-1])[::-1]
        return ts, lefts, self.w_t * lefts + right_bound + self.rnd.constant

    def open_cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """(right ends, left ends, open, wide, target) of the cells.

        A cell is open while its bound is below the best value by more than tol; it is split while its
        width still matters (w_T x width > tol / 4).
        """
        ts, lefts, cell_bound = self.cells()
        scale = abs(self.best[0])
        target = self.best[0] - self.tol * scale
        wide = self.w_t * (ts - lefts) > 0.25 * self.tol * scale
        return ts, lefts, cell_bound < target, wide, target

    def tighten(self, max_tightenings: int) -> None:
        """Run the bits branch-and-bound at the right ends of open narrow cells.

        Rightmost first: its bound also lifts every cell to its left.
        """
        for _ in range(max_tightenings):
            ts, lefts, open_, wide, target = self.open_cells()
            narrow = [
                i
                for i in np.flatnonzero(open_ & ~wide).tolist()
                if float(ts[i]) not in self.tightened and np.isfinite(self.bound_at[float(ts[i])])
            ]
            if not narrow:
                return
            i = narrow[-1]
            t_right = float(ts[i])
            self.tightened.add(t_right)
            prune = target - self.w_t * float(lefts[i]) - self.rnd.constant
            b, candidates = _branch_on_bits(self.rnd, t_right, self.max_bits_nodes, prune)
            self.evaluated += 1
            self.bound_at[t_right] = max(self.bound_at[t_right], b)
            for c_bits, c_blocks in candidates:  # every node's choices, at this T
                self.consider(np.full(c_bits.shape[0], t_right), [(c_bits, c_blocks)])

    def run(self, points: np.ndarray, max_levels: int, max_tightenings: int) -> None:
        new = points
        for _level in range(max_levels + 1):
            if new.size:
                self.evaluate(new)
            self.tighten(max_tightenings)
            ts, lefts, open_, wide, _ = self.open_cells()
            split = open_ & wide
            if not split.any():
                return
            # split every open wide cell in four
            new = np.unique(
                np.concatenate([lefts[split] + (ts[split] - lefts[split]) * q for q in (0.25, 0.5, 0.75)])
            )

    def lower_bound(self) -> float:
        _, _, cell_bound = self.cells()
        return float(np.min(cell_bound))


def solve_sflam_dual(
    config: SFLAMConfig,
    block_gain: np.ndarray,
    downlink_fixed_s: np.ndarray,
    assignment: np.ndarray | None = None,
    tol: float = 1e-4,
    grid: int = 24,
    max_levels: int = 10,
    max_bits_nodes: int = 256,
    max_tightenings: int = 8,
) -> SFLAMDualSolution:
    """Solve one round with a certified lower bound.

    Args:
        config: the env's configuration.
        block_gain: (M, M) gain of device n on resource block j.
        downlink_fixed_s: (M,) latency the decisions do not change (``envs.sflam.system.fixed_latency_s``).
        assignment: keep this device-to-block matching (the env's scheduler); ``None`` optimises it.
        tol: stop refining T cells when every cell's bound is within ``tol`` (relative) of the best
            objective; also the gap below which the status is ``"optimal"``.
        grid: T cells of the first level.
        max_levels: most refinements of the T cells.
        max_bits_nodes: most nodes of the bits branch-and-bound at one T.
        max_tightenings: most T points per refinement level that get the bits branch-and-bound.
    """
    start = time.perf_counter()
    block_gain = np.asarray(block_gain, dtype=np.float64)
    m = block_gain.shape[0]
    if block_gain.ndim != 2 or block_gain.shape != (m, m):
        raise ValueError(f"block_gain must be (M, M), got {block_gain.shape}")
    fixed_s = np.asarray(downlink_fixed_s, dtype=np.float64)
    if fixed_s.shape != (m,):
        raise ValueError(f"downlink_fixed_s must be ({m},), got {fixed_s.shape}")
    if assignment is not None:
        match = np.asarray(assignment, dtype=np.intp)
        gain = block_gain[np.arange(m), match][:, None]
    else:
        gain = block_gain
    rnd = _Round(config, gain, fixed_s)
    limit = config.round_latency_s_limit
    t0 = float(fixed_s.max())

    def finish(bits_idx, blocks, share, big_t, lower, status, evaluated) -> SFLAMDualSolution:
        match_out = np.asarray(blocks if assignment is None else match)
        g = block_gain[np.arange(m), match_out]
        return _finish(
            config,
            g,
            fixed_s,
            rnd.bits_choices[bits_idx],
            share,
            big_t,
            match_out,
            lower,
            status,
            evaluated,
            start,
            tol,
        )

    if t0 >= limit:
        blocks0 = match if assignment is not None else _greedy_match(rnd)
        bits, share, _ = _least_latency(rnd, np.zeros(m, np.intp) if assignment is not None else blocks0)
        return finish(bits, blocks0, share, None, np.inf, "infeasible", 0)

    search = _LatencySearch(rnd, t0, tol, max_bits_nodes)
    search.run(np.linspace(t0, limit, grid + 1)[1:], max_levels, max_tightenings)
    best, evaluated = search.best, search.evaluated
    lower = search.lower_bound()

    if best[1] is None:  # no T below the limit is feasible
        blocks0 = match if assignment is not None else _greedy_match(rnd)
        bits, share, _ = _least_latency(rnd, np.zeros(m, np.intp) if assignment is not None else blocks0)
        return finish(bits, blocks0, share, None, np.inf, "infeasible", evaluated)

    _, (big_t, bits_idx, blocks) = best
    ts = np.array(sorted(search.bound_at))
    _, big_t, bits_idx, blocks, share = _polish(rnd, big_t, bits_idx, blocks, ts, assignment is None)
    return finish(bits_idx, blocks, share, big_t, lower, "search", evaluated)


def _local_t_grid(big_t: float, ts: np.ndarray, t0: float, limit: float, points: int = 17) -> np.ndarray:
    """T values around ``big_t``: from its left to its right neighbour in ``ts``."""
    i = int(np.searchsorted(ts, big_t))
    left = ts[i - 1] if i >= 1 else t0
    right = ts[i + 1] if i + 1 < ts.size else limit
    grid = np.linspace(left, right, points)
    grid = grid[grid > t0]
    return np.unique(np.concatenate([grid, [big_t]]))


def _polish(rnd: _Round, big_t, bits_idx, blocks, ts, free_matching: bool):
    """One-device bit changes (and block swaps) from the best point, each on a local T grid."""
    t0, limit = float(rnd.fixed_s.max()), rnd.config.round_latency_s_limit
    nb = rnd.bits_choices.size
    m = rnd.m
    values, share, _ = _allocate(rnd, np.array([big_t]), bits_idx[None], blocks[None])
    value = float(values[0])
    share = share[0]
    for _ in range(20):
        cands_bits, cands_blocks = [bits_idx], [blocks]
        for n in range(m):
            for b in range(nb):
                if b != bits_idx[n]:
                    trial = bits_idx.copy()
                    trial[n] = b
                    cands_bits.append(trial)
                    cands_blocks.append(blocks)
        if free_matching:
            for i in range(m):
                for j in range(i + 1, m):
                    swapped = blocks.copy()
                    swapped[[i, j]] = blocks[[j, i]]
                    cands_bits.append(bits_idx)
                    cands_blocks.append(swapped)
        grid = _local_t_grid(big_t, ts, t0, limit)
        cb = np.repeat(np.array(cands_bits), grid.size, axis=0)
        cm = np.repeat(np.array(cands_blocks), grid.size, axis=0)
        ct = np.tile(grid, len(cands_bits))
        values, shares, _ = _allocate(rnd, ct, cb, cm)
        i = int(np.argmin(values))
        if not values[i] < value * (1.0 - 1e-12):
            break
        value, big_t, bits_idx, blocks, share = float(values[i]), float(ct[i]), cb[i], cm[i], shares[i]
    return value, big_t, bits_idx, blocks, share


def _greedy_match(rnd: _Round) -> np.ndarray:
    """The matching that maximises the sum of full-power log-gains (for the least-latency fallback)."""
    cost = -np.log1p(rnd.headroom)
    return linear_sum_assignment(cost)[1]


def _finish(config, gain, fixed_s, bits, share, big_t, match, lower, status, evaluated, start, tol):
    """The solution record of the decisions.

    At round latency ``big_t`` each device's power is the least that uploads in ``big_t - f_n`` on its
    share (full power for the infeasible fallback).
    """
    m = gain.size
    share = np.asarray(share, dtype=np.float64)
    if big_t is None:
        power = np.full(m, config.max_power_w)
    else:
        a = upload_bits(config, bits) * np.log(2.0) / config.uplink_bandwidth_hz
        k = config.uplink_noise_w / gain
        t = big_t - fixed_s
        power = np.minimum(k * share * np.expm1(a / (share * t)), config.max_power_w)
    out = round_outcome(config, gain, fixed_s, bits, share, power)
    latency = float(out.round_latency_s)
    objective = float(out.objective)
    if status != "infeasible":
        if latency > config.round_latency_s_limit * (1 + 1e-9):
            status = "infeasible"
        elif np.isfinite(lower) and (objective - lower) <= tol * abs(objective):
            status = "optimal"
        else:
            status = "feasible"
    return SFLAMDualSolution(
        bits,
        share,
        power,
        np.asarray(match),
        objective,
        float(lower),
        latency,
        status,
        evaluated,
        time.perf_counter() - start,
    )


def round_curve(
    config: SFLAMConfig,
    block_gain: np.ndarray,
    downlink_fixed_s: np.ndarray,
    assignment: np.ndarray,
    t_grid: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One round's cost as a function of its latency T, without the latency term, on ``t_grid``.

    Returns ``(value, bound, tail_bound)``: ``value[i]`` the energy-and-quantization cost (with the
    devices' compute energy, weighted) of decisions that finish every device by ``t_grid[i]`` (inf
    where none do; the dual's primal candidates with exact shares, no polish); ``bound[i]`` the dual's
    certified lower bound on the least such cost at ``t_grid[i]`` (the cost does not increase with T,
    so it also bounds every T <= ``t_grid[i]``); ``tail_bound`` a lower bound for every
    T (uploads of unlimited time: each device at its cheapest bit-width's energy ``k a_b``).
    """
    fixed_s = np.asarray(downlink_fixed_s, dtype=np.float64)
    m = fixed_s.size
    gain = np.asarray(block_gain, dtype=np.float64)[np.arange(m), np.asarray(assignment)][:, None]
    rnd = _Round(config, gain, fixed_s)
    t_grid = np.asarray(t_grid, dtype=np.float64)
    bound, candidates, _ = _dual(rnd, t_grid)
    value = np.full(t_grid.size, np.inf)
    for bits_idx, blocks in candidates:
        v, _, _ = _allocate(rnd, t_grid, bits_idx, blocks)
        value = np.minimum(value, v - config.latency_weight * t_grid)
    bound = bound + rnd.constant
    # T -> infinity: the upload energy k beta t (e^(a / (beta t)) - 1) falls to k a
    tail = rnd.w_e * rnd.k[:, 0][:, None] * rnd.a[None, :] + rnd.quant_cost[None, :]
    tail_bound = float(tail.min(axis=1).sum() + rnd.constant)
    return value, np.minimum(bound, value), tail_bound
