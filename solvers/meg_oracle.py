"""MEG-v0 oracle: the best stationary policy by dual decomposition over the (N, rho) grid.

With the quality profile known, the problem is: maximise ``E[r]`` subject to ``E[L] <= L_max`` and
``E[E] <= E_max`` over policies that map the frame's channel to an action. Its Lagrangian separates
per frame: for multipliers ``lambda = (lambda_L, lambda_E) >= 0`` each frame takes

    argmax_a  r(a) - lambda_L L(a, R) / L_max - lambda_E E(a, R) / E_max

over the grid of ``N`` in [N_min, N_max] and the profile's merge ratios. (Between two profile merge
ratios the reward is linear and the bits are affine in ``rho``, so a grid point is always optimal.)
``lambda`` minimises the convex dual on sampled frames: for each energy multiplier a bisection on the
latency subgradient finds the best latency multiplier (the average latency falls as its multiplier
rises), and a golden-section search on the dual's value finds the energy multiplier (bisection on the
energy subgradient is not enough where many frames tie). Where the sampled frames leave a gap at a
binding constraint, the policy time-shares: the pure argmax policies around the optimal multipliers
(the two ends of the latency bracket and 48 probes on a small circle around the optimum) are mixed
with probabilities from a small LP that meets both limits with the most reward.

Certificate: the dual function at the returned multipliers (``MEGOracle.dual_value``) bounds the
expected reward of every stationary policy that meets the limits on the sampled frames (weak
duality); with time-sharing, the primal value reaches it up to round-off (LP duality over the grid).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linprog

from edgegen.envs.meg.channel import feature_noise_std, iid_frame_snr, rate_bps
from edgegen.envs.meg.config import MEGConfig
from edgegen.envs.meg.cost_model import (
    latent_bits,
    merged_token_count,
    payload_costs,
    task_energy_j,
    task_latency_s,
)
from edgegen.envs.meg.quality import QualityProfile

__all__ = [
    "ActionGrid",
    "MEGOracle",
    "action_grid",
    "best_fixed_action",
    "frame_rewards",
    "pareto_actions",
    "solve_meg_oracle",
]

_BISECTION_STEPS = 40


@dataclass(frozen=True)
class ActionGrid:
    """Every (N, rho) the oracle considers, with the action-only parts of the cost model.

    ``payload_bits`` are the bits of all images of one task; ``compute_latency_s`` and
    ``compute_energy_j`` hold everything but the transmission.
    """

    steps: np.ndarray
    rho: np.ndarray
    payload_bits: np.ndarray
    compute_latency_s: np.ndarray
    compute_energy_j: np.ndarray

    def costs(self, rate: np.ndarray, tx_power_w: float) -> tuple[np.ndarray, np.ndarray]:
        """(latency, energy) of every action at every rate: shape rate.shape + (A,)."""
        rate = np.asarray(rate, dtype=np.float64)[..., None]
        _, latency, energy = payload_costs(
            self.compute_latency_s, self.compute_energy_j, self.payload_bits, rate, tx_power_w
        )
        return latency, energy


def action_grid(config: MEGConfig, profile: QualityProfile) -> ActionGrid:
    """The (N, rho) grid: N in [N_min, N_max] (within the profile) times the profile's merge ratios."""
    steps = np.arange(config.min_steps, config.max_steps + 1)
    profile.step_index(steps)  # ValueError if the profile does not cover them
    rho = profile.rho[profile.rho <= config.max_merge_ratio + 1e-12]
    steps_a, rho_a = (x.ravel() for x in np.meshgrid(steps, rho, indexing="ij"))
    model, n_img = config.compute_model, config.images_per_task
    size = config.latent_size
    bits = n_img * latent_bits(
        merged_token_count(rho_a, config.n_tokens), config.latent_channels, size, size, config.bits_per_value
    )
    return ActionGrid(
        steps=steps_a,
        rho=rho_a,
        payload_bits=bits,
        compute_latency_s=task_latency_s(model, steps_a, 0.0, n_img),
        compute_energy_j=task_energy_j(model, steps_a, 0.0, config.tx_power_w, n_img),
    )


def frame_rewards(profile: QualityProfile, grid: ActionGrid, sigma: ArrayLike) -> np.ndarray:
    """Expected reward ``-E[ln MSE]`` of every action at each frame's link noise: sigma.shape + (A,)."""
    mean, _ = profile.ln_mse(grid.steps, grid.rho, np.asarray(sigma, dtype=np.float64)[..., None])
    return -mean


@dataclass(frozen=True)
class MEGOracle:
    """The dual-decomposition policy: up to four multiplier pairs, time-shared with ``weights``.

    Attributes:
        grid: the actions.
        multipliers: (lambda_L, lambda_E) pairs bracketing the optimal multipliers.
        weights: probability of following each pair (sums to 1).
        dual: the optimal multipliers (the feasible end of the bisection brackets).
        expected_reward: average ``-E[ln MSE]`` per frame on the sampled frames.
        expected_costs: average (latency_s, energy_j) per frame on the sampled frames.
        dual_value: the Lagrange dual function at ``dual``: by weak duality an upper bound on the
            expected reward of every stationary policy that meets the limits on the sampled frames.
        limits: (L_max, E_max).
        tx_power_w: the ES transmit power (the energy of a transmission).
    """

    grid: ActionGrid
    multipliers: tuple[tuple[float, float], ...]
    weights: tuple[float, ...]
    dual: tuple[float, float]
    expected_reward: float
    expected_costs: tuple[float, float]
    dual_value: float
    limits: tuple[float, float]
    tx_power_w: float

    def choose(self, rate: np.ndarray, rewards: np.ndarray, draw: np.ndarray | float) -> np.ndarray:
        """Action index per frame from its rate, the (F, A) or (A,) rewards and a uniform draw in [0, 1)."""
        rate = np.atleast_1d(np.asarray(rate, dtype=np.float64))
        latency, energy = self.grid.costs(rate, self.tx_power_w)
        which = np.searchsorted(np.cumsum(self.weights)[:-1], np.broadcast_to(draw, rate.shape), side="right")
        out = np.empty(rate.shape, dtype=np.int64)
        for k in np.unique(which):
            rows = which == k
            frame_rewards = rewards[rows] if np.ndim(rewards) == 2 else rewards
            out[rows] = _argmax_lagrangian(
                frame_rewards, latency[rows], energy[rows], self.multipliers[k], self.limits
            )
        return out

    @property
    def binding(self) -> tuple[bool, bool]:
        """Whether each constraint's optimal multiplier is > 0."""
        return (self.dual[0] > 0, self.dual[1] > 0)


def pareto_actions(
    rewards: np.ndarray, latency: np.ndarray, energy: np.ndarray, chunk: int = 256
) -> np.ndarray:
    """Per frame, the actions no other action dominates (reward >=, latency <=, energy <=).

    A dominated action's Lagrangian score is never above its dominator's for any multipliers >= 0, so
    the argmax over the kept actions has the same value as over all of them (exact ties keep the
    lowest index). Returns an index array (F, K): K the largest count over frames, shorter rows padded
    with their first kept action.
    """
    f, a = rewards.shape
    order = np.arange(a)
    lower_index = order[:, None] < order[None, :]
    kept = np.empty((f, a), dtype=bool)
    for start in range(0, f, chunk):
        r, lat, en = (x[start : start + chunk] for x in (rewards, latency, energy))
        # no_worse[i, j, k]: in frame i, action j is at least as good as k in all three; j dominates k
        # when k is not also at least as good as j (strictly better somewhere), or when they tie and
        # j has the lower index
        no_worse = r[:, :, None] >= r[:, None, :]
        no_worse &= lat[:, :, None] <= lat[:, None, :]
        no_worse &= en[:, :, None] <= en[:, None, :]
        mutual = no_worse & no_worse.transpose(0, 2, 1)
        dominated = no_worse & ~mutual
        dominated |= mutual & lower_index
        kept[start : start + chunk] = ~np.any(dominated, axis=1)
    width = int(kept.sum(axis=1).max())
    first = np.argsort(~kept, axis=1, kind="stable")[:, :width]  # the kept actions, in index order
    count = kept.sum(axis=1, keepdims=True)
    return np.where(np.arange(width)[None, :] < count, first, first[:, :1])


def _argmax_lagrangian(rewards, latency, energy, lam, limits) -> np.ndarray:
    score = rewards - (lam[0] / limits[0]) * latency - (lam[1] / limits[1]) * energy
    return np.argmax(score, axis=-1)


def _upper_envelope(intercept: np.ndarray, slope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper envelope of the lines ``intercept - slope x`` over x: the winning lines and where each starts.

    Returns ``(lines, starts)`` with ``starts[0] = -inf``; line ``lines[k]`` is the maximum on
    ``[starts[k], starts[k + 1])``. Ties go to the line with the smaller slope (fewer bits).
    """
    order = np.lexsort((-intercept, -slope))  # steepest first; equal slopes: highest first
    lines: list[int] = []
    starts: list[float] = []
    for i in order.tolist():
        if lines and slope[lines[-1]] == slope[i]:
            continue  # same slope, lower intercept: never above
        while lines:
            j = lines[-1]
            cross = (intercept[j] - intercept[i]) / (slope[j] - slope[i])  # i wins for x >= cross
            if cross <= starts[-1]:
                lines.pop()
                starts.pop()
            else:
                break
        starts.append(-np.inf if not lines else cross)
        lines.append(i)
    return np.asarray(lines), np.asarray(starts)


def _multiplier_bound(rewards, latency, energy, limits) -> float:
    """Slater bound on each optimal multiplier: (best - worst reward) / slack of the cheapest action."""
    slack = 1.0 - np.array([latency.mean(axis=0).min() / limits[0], energy.mean(axis=0).min() / limits[1]])
    if np.any(slack <= 0):
        raise ValueError("MEG oracle: a limit cannot be met by any action on the sampled frames")
    spread = float(np.max(rewards) - np.min(rewards))
    return max(spread / float(slack.min()), 1e-6)


def _bracket(violated, steps: int = _BISECTION_STEPS, guess: float | None = None) -> tuple[float, float]:
    """Bracket ``(lo, hi)`` of the smallest multiplier at which ``violated`` turns False (``(0, 0)`` if at 0).

    ``violated(lam)`` says whether the average cost is over its limit; it is monotone (True, then
    False) because an average cost falls as its own multiplier rises. ``guess``: a nearby multiplier
    (the last search's); the bracket then starts 0.1 % around it and widens until it holds the root.
    """
    if not violated(0.0):
        return 0.0, 0.0
    low, high = 0.0, 1.0
    if guess is not None and guess > 0.0:
        low, high = guess * 0.999, guess * 1.001
        while not violated(low):
            high, low = low, low * 0.5
            if low < 1e-12:
                low = 0.0
                break
    while violated(high):
        low, high = high, 4.0 * high if guess is None else 2.0 * high
        if high > 1e9:
            raise ValueError("MEG oracle: a limit cannot be met by any action on the sampled frames")
    for _ in range(steps):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if violated(mid) else (low, mid)
        if high - low <= 1e-10 * high:
            break
    return low, high


def _golden_min(f, low: float, high: float, steps: int = 48) -> float:
    """Minimiser of a convex function on [low, high] by golden-section search (uses values only)."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = low, high
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
        if b - a <= 1e-10 * max(b, 1.0):
            break
    return min([(f(low), low), (fc, c), (fd, d)])[1]


def solve_meg_oracle(
    config: MEGConfig,
    profile: QualityProfile,
    n_frames: int = 10_000,
    seed: int = 0,
    rate: np.ndarray | None = None,
) -> MEGOracle:
    """Multipliers and time-sharing of the best stationary policy, on ``n_frames`` sampled frames.

    Args:
        config: the env's configuration (cost model, channel, limits).
        profile: the quality profile (expected reward ``-E[ln MSE]``).
        n_frames: frames drawn from the stationary channel distribution.
        seed: seeds the frame draw.
        rate: use these frame rates (bit/s) instead of drawing frames.
    """
    if rate is None:
        snr = iid_frame_snr(config, np.random.default_rng(seed), n_frames)
    else:
        rate = np.asarray(rate, dtype=np.float64)
        snr = 2.0 ** (rate / config.bandwidth_hz) - 1.0
    grid = action_grid(config, profile)
    frame_rate = rate_bps(config, snr)
    latency, energy = grid.costs(frame_rate, config.tx_power_w)
    if config.feature_noise == "fixed":
        rewards = frame_rewards(profile, grid, np.float64(config.feature_noise_std))
    else:
        rewards = frame_rewards(profile, grid, feature_noise_std(config, snr))
    limits = config.limits
    inv_rate = 1.0 / frame_rate
    rows = np.arange(frame_rate.size)
    # With rewards that do not depend on the frame, the Lagrangian of action a in a frame is a line in
    # x = 1 / rate; its upper envelope (a few pieces) and prefix sums of the sorted x give every
    # average in O(A + F_pieces) instead of O(F A).
    x_sorted = np.sort(inv_rate)
    x_prefix = np.concatenate([[0.0], np.cumsum(x_sorted)])
    reduced: dict[str, np.ndarray] = {}
    if rewards.ndim == 2:
        keep = pareto_actions(rewards, latency, energy)
        reduced = {
            "reward": np.take_along_axis(rewards, keep, axis=1),
            "latency": np.take_along_axis(latency, keep, axis=1),
            "energy": np.take_along_axis(energy, keep, axis=1),
        }
    shape = reduced["reward"].shape if reduced else (0, 0)
    buffers = (np.empty(shape), np.empty(shape))
    row_offset = rows * (reduced["reward"].shape[1] if reduced else 0)

    def pure(lam: tuple[float, float]) -> tuple[float, float, float, float]:
        """Dual value, and average reward, latency and energy of the Lagrangian argmax at ``lam``."""
        a_l, a_e = lam[0] / limits[0], lam[1] / limits[1]
        if rewards.ndim == 1:
            base = rewards - a_l * grid.compute_latency_s - a_e * grid.compute_energy_j
            slope = grid.payload_bits * (a_l + a_e * config.tx_power_w)  # score = base - slope / rate
            lines, starts = _upper_envelope(base, slope)
            cut = np.searchsorted(x_sorted, starts[1:], side="left")
            bounds = np.concatenate([[0], cut, [x_sorted.size]])
            n = np.diff(bounds).astype(np.float64)
            sx = np.diff(x_prefix[bounds])
            f = float(x_sorted.size)
            bits = grid.payload_bits[lines]
            dual = (n @ base[lines] - sx @ slope[lines]) / f + lam[0] + lam[1]
            latency_avg = (n @ grid.compute_latency_s[lines] + sx @ bits) / f
            energy_avg = (n @ grid.compute_energy_j[lines] + config.tx_power_w * (sx @ bits)) / f
            return float(dual), float(n @ rewards[lines] / f), float(latency_avg), float(energy_avg)
        # Frame-dependent rewards: only each frame's Pareto-optimal actions can be an argmax. The score
        # is built in two preallocated buffers (this runs ~1,000 times per solve).
        score, tmp = buffers  # reward - a_e energy - a_l latency, in latency_over_limit's order
        np.multiply(reduced["energy"], a_e, out=tmp)
        np.subtract(reduced["reward"], tmp, out=tmp)
        np.multiply(reduced["latency"], a_l, out=score)
        np.subtract(tmp, score, out=score)
        flat = np.argmax(score, axis=-1)
        flat += row_offset
        dual = score.ravel()[flat].mean() + lam[0] + lam[1]
        return (
            float(dual),
            float(reduced["reward"].ravel()[flat].mean()),
            float(reduced["latency"].ravel()[flat].mean()),
            float(reduced["energy"].ravel()[flat].mean()),
        )

    last: dict[str, float | None] = {"lam_l": None}

    def latency_over_limit(lam_e: float) -> Callable[[float], bool]:
        """``lam_l -> `` whether the argmax policy at ``(lam_l, lam_e)`` is over the latency limit.

        The same argmax as :func:`pure`; with frame-dependent rewards the energy part of the score is
        computed once per ``lam_e`` and each call does one pass and reads only the latency (the
        bisection calls it ~30 times per ``lam_e``).
        """
        if rewards.ndim == 1:
            return lambda lam_l: pure((lam_l, lam_e))[2] > limits[0]
        base = reduced["reward"] - (lam_e / limits[1]) * reduced["energy"]
        score = buffers[0]

        def over(lam_l: float) -> bool:
            np.multiply(reduced["latency"], lam_l / limits[0], out=score)
            np.subtract(base, score, out=score)
            flat = np.argmax(score, axis=-1)
            flat += row_offset
            return bool(reduced["latency"].ravel()[flat].mean() > limits[0])

        return over

    def best_latency_multiplier(lam_e: float) -> tuple[float, float]:
        """Bracket of the minimiser over lambda_L of the dual: where the average latency crosses L_max."""
        # warm start: the golden-section steps move lambda_E a little, and lambda_L with it
        bracket = _bracket(latency_over_limit(lam_e), guess=last["lam_l"])
        last["lam_l"] = bracket[1] if bracket[1] > 0 else None
        return bracket

    def dual_over_energy_multiplier(lam_e: float) -> float:
        return pure((best_latency_multiplier(lam_e)[1], lam_e))[0]

    # The dual is convex in (lambda_L, lambda_E); minimising it over lambda_L (a 1-D bracket on its
    # subgradient) leaves a convex function of lambda_E, minimised by golden-section search on values.
    # (Bisection on the energy subgradient is not enough: where many frames tie, the average energy
    # jumps across E_max and the latency multiplier of the inner problem is not unique.)
    lam_e = _golden_min(dual_over_energy_multiplier, 0.0, _multiplier_bound(rewards, latency, energy, limits))
    lam_l_lo, lam_l_hi = best_latency_multiplier(lam_e)
    # Primal recovery: the argmax policies around the optimal multipliers, time-shared so that both
    # limits hold with the most reward (a tiny LP; two constraints need at most three pure policies).
    # Each frame that ties at the optimum switches action on a line through it in multiplier space, so
    # probing directions all around it finds every pure policy of the optimal face.
    step = 1e-6 * max(lam_e, lam_l_hi, 1.0)
    angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    candidates = {(lam_l_lo, lam_e), (lam_l_hi, lam_e)}
    candidates |= {
        (max(lam_l_hi + step * np.cos(a), 0.0), max(lam_e + step * np.sin(a), 0.0)) for a in angles
    }
    pairs = sorted(candidates)
    values = np.array([pure(pair)[1:] for pair in pairs])  # (P, 3): reward, latency, energy
    mix = linprog(
        -values[:, 0],
        A_ub=values[:, 1:].T,
        b_ub=limits,
        A_eq=np.ones((1, len(pairs))),
        b_eq=[1.0],
        bounds=(0, 1),
        method="highs",
    )
    if mix.status != 0:
        raise RuntimeError(f"MEG oracle: time-sharing LP failed ({mix.message})")
    weights = np.clip(mix.x, 0.0, 1.0)
    keep = weights > 1e-9
    weights = weights[keep] / weights[keep].sum()
    values = values[keep]
    return MEGOracle(
        grid=grid,
        multipliers=tuple((float(a), float(b)) for (a, b), k in zip(pairs, keep, strict=True) if k),
        weights=tuple(float(w) for w in weights),
        dual=(float(lam_l_hi), float(lam_e)),
        expected_reward=float(weights @ values[:, 0]),
        expected_costs=(float(weights @ values[:, 1]), float(weights @ values[:, 2])),
        dual_value=min(pure(pair)[0] for pair in {(lam_l_lo, lam_e), (lam_l_hi, lam_e)}),
        limits=limits,
        tx_power_w=config.tx_power_w,
    )


def best_fixed_action(
    config: MEGConfig, profile: QualityProfile, n_frames: int = 10_000, seed: int = 0
) -> tuple[int, float, float, tuple[float, float]]:
    """The fixed (N, rho) of the grid with the highest expected reward whose average costs meet the limits.

    Returns ``(steps, rho, expected_reward, (latency_s, energy_j))``.
    """
    snr = iid_frame_snr(config, np.random.default_rng(seed), n_frames)
    grid = action_grid(config, profile)
    latency, energy = grid.costs(rate_bps(config, snr), config.tx_power_w)
    sigma = (
        np.float64(config.feature_noise_std)
        if config.feature_noise == "fixed"
        else feature_noise_std(config, snr)
    )
    rewards = frame_rewards(profile, grid, sigma)
    mean_reward = rewards if rewards.ndim == 1 else rewards.mean(axis=0)
    mean_l, mean_e = latency.mean(axis=0), energy.mean(axis=0)
    feasible = (mean_l <= config.latency_s_limit) & (mean_e <= config.energy_j_limit)
    if not feasible.any():
        raise ValueError("no fixed (N, rho) action meets both MEG-v0 limits on average")
    best = int(np.flatnonzero(feasible)[np.argmax(mean_reward[feasible])])
    return (
        int(grid.steps[best]),
        float(grid.rho[best]),
        float(mean_reward[best]),
        (float(mean_l[best]), float(mean_e[best])),
    )
