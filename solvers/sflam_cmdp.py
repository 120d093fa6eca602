"""SFLAM-v0's CMDP oracle: the best stationary policy under the env's average round-latency limit.

The env's constraint is an average: the mean round latency per step within ``T_max``. A multiplier
``mu >= 0`` on it turns the constrained problem into one unconstrained problem per round,

    minimise  (w_T + mu) T + w_E E + w_Q Q      (T <= T_cap = 4 T_max, a search bound),

whose solution is the per-round dual solver (``solvers.sflam_dual``) run with the latency weight
``w_T + mu``. ``mu`` is fitted on sampled rounds (episodes drawn by the env's own model from a fixed
seed) so that the expected round latency meets ``T_max``: each sampled round's cost curve over T
(``round_curve``) is computed once, the latency of the per-round optimum falls with ``mu``, and
bisection finds the ``mu`` where it crosses ``T_max``. The two policies on either side of the crossing
are time-shared (weight ``q`` on the slower one) so that the expected latency equals ``T_max``: the
best stationary policy over the sampled rounds, up to the T grid.

Certificate: for every ``mu``, ``mean_r min_T [(w_T + mu) T + F_r(T)] - mu T_max`` is a lower bound on
the CMDP's optimum over the sampled rounds (weak duality); the per-round minimum is bounded below
cell by cell with the dual bounds of ``round_curve``, so the bound holds for every T, not only the
grid's.
"""

from __future__ import annotations

import dataclasses
import time
import zlib
from dataclasses import dataclass

import numpy as np

from edgegen.envs.oracle_result import OracleStatus
from edgegen.envs.sflam.config import SFLAMConfig
from edgegen.solvers.sflam_dual import SFLAMDualSolution, round_curve, solve_sflam_dual

__all__ = ["SFLAMCMDPPolicy", "fit_cmdp_policy", "latency_grid", "mix_draw"]

CAP_FACTOR = 4.0
"""The per-round searches stop at ``T_cap = CAP_FACTOR x T_max`` (the bound covers T beyond it)."""


def latency_grid(config: SFLAMConfig, t0: float) -> np.ndarray:
    """The T grid of a round whose fixed latencies end at ``t0``: fine up to 2 T_max, coarse to T_cap."""
    limit = config.round_latency_s_limit
    cap = CAP_FACTOR * limit
    near = np.linspace(t0, max(2.0 * limit, t0 + 1e-3), 97)[1:]
    far = np.linspace(near[-1], max(cap, near[-1] + 1e-3), 17)[1:]
    return np.concatenate([near, far])


def mix_draw(block_gain: np.ndarray) -> float:
    """The round's time-sharing draw: a uniform number in [0, 1) fixed by its gains.

    The crc32 of the gains' bytes: the same every time the round is seen, without touching the env's
    generator.
    """
    return zlib.crc32(np.ascontiguousarray(block_gain, dtype=np.float64).tobytes()) / 2.0**32


@dataclass(frozen=True)
class SFLAMCMDPPolicy:
    """The fitted stationary policy.

    Attributes:
        multipliers: ``(mu_slow, mu_fast)``: the latency multipliers of the two time-shared policies.
        weight_slow: probability of the ``mu_slow`` policy in a round.
        expected_objective: the policy's mean objective per round over the sampled rounds.
        expected_latency_s: its mean round latency (``T_max`` when the constraint binds).
        dual_value: the certified lower bound (best multiplier's dual value).
        status: "optimal" (gap <= 1e-3), "feasible", or "infeasible" when even the least-latency
            rounds average above ``T_max``.
        rounds: sampled rounds.
        solve_time_s: fitting time.
    """

    multipliers: tuple[float, float]
    weight_slow: float
    expected_objective: float
    expected_latency_s: float
    dual_value: float
    status: OracleStatus
    rounds: int
    solve_time_s: float

    def solve_round(
        self, config: SFLAMConfig, block_gain: np.ndarray, fixed_s: np.ndarray, assignment: np.ndarray
    ) -> SFLAMDualSolution:
        """The policy's decisions in one round: the per-round optimum at the round's multiplier."""
        mu = self.multipliers[0] if mix_draw(block_gain) < self.weight_slow else self.multipliers[1]
        relaxed = dataclasses.replace(
            config,
            latency_weight=config.latency_weight + mu,
            round_latency_s_limit=CAP_FACTOR * config.round_latency_s_limit,
        )
        return solve_sflam_dual(relaxed, block_gain, fixed_s, assignment=assignment)


class _Curve:
    """One sampled round's cost curve over T (``round_curve``), refinable cell by cell."""

    def __init__(self, config, block_gain, fixed_s, assignment) -> None:
        self.args = (config, block_gain, fixed_s, assignment)
        self.t0 = float(fixed_s.max())
        self.t = latency_grid(config, self.t0)
        self.value, self.raw_bound, self.tail = round_curve(*self.args, self.t)
        # a round that cannot finish by T_cap: its only choice is the least-latency action, beyond T_cap
        self.least: tuple[float, float] | None = None
        self._least_round: tuple[float, float] | None = None
        if not np.isfinite(self.value).any():
            latency, objective = self.least_latency()
            self.least = (latency, objective - config.latency_weight * latency)
        self._update()

    def least_latency(self) -> tuple[float, float]:
        """(latency, objective) of the round's least-latency action, solved once.

        The per-round solver at a limit no action meets returns that action.
        """
        if self._least_round is None:
            config, block_gain, fixed_s, assignment = self.args
            unreachable = dataclasses.replace(config, round_latency_s_limit=0.5 * self.t0)
            sol = solve_sflam_dual(unreachable, block_gain, fixed_s, assignment=assignment)
            self._least_round = (sol.round_latency_s, sol.objective)
        return self._least_round

    def _update(self) -> None:
        # the least cost does not increase with T: for T <= t_i it is >= every dual bound at or right of t_i
        self.bound = np.maximum.accumulate(self.raw_bound[::-1])[::-1]
        self.t_left = np.concatenate([[self.t0], self.t[:-1]])

    def best(self, weight: float) -> tuple[float, float]:
        """(T, cost) of the best grid point for latency weight ``weight`` (least w T + cost)."""
        if self.least is not None:
            return self.least
        with np.errstate(over="ignore"):  # a huge weight: inf ties resolve to the least T
            score = weight * self.t + self.value
        finite = np.isfinite(score)
        i = int(np.argmin(score)) if finite.any() else int(np.argmax(np.isfinite(self.value)))
        return float(self.t[i]), float(self.value[i])

    def lower(self, weight: float) -> float:
        """Certified lower bound on min_T (weight T + cost): cell by cell, and beyond the grid."""
        if self.least is not None:  # T >= the least latency, and the tail bounds the cost at every T
            return weight * self.least[0] + self.tail
        cells = float(np.min(weight * self.t_left + self.bound))
        return min(cells, weight * float(self.t[-1]) + self.tail)

    def split_open_cells(self, weight: float, tol: float) -> int:
        """Split (in four) every cell whose bound is below the best point by more than ``tol``."""
        if self.least is not None:
            return 0
        t, cost = self.best(weight)
        best = weight * t + cost
        cells = weight * self.t_left + self.bound
        wide = weight * (self.t - self.t_left) > 0.25 * tol * abs(best)
        open_cells = (cells < best - tol * abs(best)) & wide
        if not open_cells.any():
            return 0
        left, right = self.t_left[open_cells], self.t[open_cells]
        new = np.concatenate([left + (right - left) * q for q in (0.25, 0.5, 0.75)])
        value, bound, _ = round_curve(*self.args, new)
        order = np.argsort(np.concatenate([self.t, new]), kind="stable")
        self.t = np.concatenate([self.t, new])[order]
        self.value = np.concatenate([self.value, value])[order]
        self.raw_bound = np.concatenate([self.raw_bound, bound])[order]
        self._update()
        return int(open_cells.sum())


def fit_cmdp_policy(
    config: SFLAMConfig,
    block_gain: np.ndarray,
    fixed_s: np.ndarray,
    assignment: np.ndarray,
    tol: float = 1e-3,
    max_passes: int = 6,
    bisections: int = 50,
) -> SFLAMCMDPPolicy:
    """Fit the multiplier on sampled rounds.

    ``block_gain`` is (R, M, M), ``fixed_s`` (R, M), ``assignment`` (R, M).

    Passes of: fit on the curves as they are, then split every round's T cells whose bound at the
    fitted multipliers is below that round's best point by more than ``tol`` (relative), until none is
    or ``max_passes``.
    """
    start = time.perf_counter()
    rounds = block_gain.shape[0]
    curves = [_Curve(config, block_gain[r], fixed_s[r], assignment[r]) for r in range(rounds)]
    fit = _fit(config, curves, bisections)
    for _ in range(max_passes):
        split = 0
        for curve in curves:
            for mu in set(fit["mus"]):
                split += curve.split_open_cells(config.latency_weight + mu, tol)
        if split == 0:
            break
        fit = _fit(config, curves, bisections)
    gap = (fit["objective"] - fit["dual"]) / abs(fit["objective"])
    status: OracleStatus = fit["status"] or ("optimal" if gap <= tol else "feasible")
    return SFLAMCMDPPolicy(
        fit["mus"],
        fit["weight"],
        fit["objective"],
        fit["latency"],
        min(fit["dual"], fit["objective"]),
        status,
        rounds,
        time.perf_counter() - start,
    )


def _fit(config: SFLAMConfig, curves: list[_Curve], bisections: int) -> dict:
    """Bisection on the multiplier over the curves as they are; the two policies and their mix."""
    limit, w_t = config.round_latency_s_limit, config.latency_weight

    def policy(mu: float) -> tuple[float, float]:
        """Mean over rounds of the chosen T and of the objective (w_T T + cost) at multiplier ``mu``."""
        picks = np.array([c.best(w_t + mu) for c in curves])
        latency = picks[:, 0]
        return float(latency.mean()), float((w_t * latency + picks[:, 1]).mean())

    def dual(mu: float) -> float:
        return float(np.mean([c.lower(w_t + mu) for c in curves]) - mu * limit)

    status = None
    weight = 1.0
    lo = hi = 0.0
    if policy(0.0)[0] > limit:
        lo, hi = 0.0, 1.0
        while policy(hi)[0] > limit and hi < 1e12:
            lo, hi = hi, hi * 4.0
        if policy(hi)[0] > limit:
            status, lo = "infeasible", hi
        else:
            for _ in range(bisections):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if policy(mid)[0] > limit else (lo, mid)
    if status == "infeasible":
        # no multiplier brings the mean latency to the limit: the least-violating policy takes each
        # round's least-latency action; there is no feasible policy to bound
        latency, objective = _least_latency(curves)
        return {
            "mus": (lo, hi),
            "weight": 1.0,
            "latency": latency,
            "objective": objective,
            "dual": objective,
            "status": status,
        }
    lat_slow, obj_slow = policy(lo)
    lat_fast, obj_fast = policy(hi)
    if status is None and lo != hi:
        spread = lat_slow - lat_fast
        weight = float(np.clip((limit - lat_fast) / spread, 0.0, 1.0)) if spread > 0 else 0.0
    return {
        "mus": (lo, hi),
        "weight": weight,
        "latency": weight * lat_slow + (1 - weight) * lat_fast,
        "objective": weight * obj_slow + (1 - weight) * obj_fast,
        "dual": max(dual(lo), dual(hi)),
        "status": status,
    }


def _least_latency(curves: list[_Curve]) -> tuple[float, float]:
    """Mean latency and objective of the policy that takes every round's least-latency action."""
    latency, objective = np.mean([c.least_latency() for c in curves], axis=0)
    return float(latency), float(objective)
