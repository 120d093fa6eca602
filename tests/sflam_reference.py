"""A reference optimum of small SFLAM rounds by exhaustive grids, independent of the oracles' maths.

For M devices: every matching of devices to blocks, every bit-width per device, the round latency T on
a grid and the bandwidth shares on a grid of the simplex. At fixed (matching, T, shares) the devices
are independent, so each one's best bit-width is an exact minimum over its choices; the power of a
device is the least that uploads in ``T - f_n`` (more power only costs energy), and a point whose power
would exceed p_max is discarded. The grids are then zoomed in around each matching's best point and
refined until the best value moves by less than ``rel_change`` (relative) from one level to the next.

Uses only ``envs.sflam.system.round_outcome``'s model written out again (rate, energy, quantization).
"""

from __future__ import annotations

import itertools

import numpy as np


def _device_costs(cfg, gain_n, fixed_n, t_round, shares):
    """(T, shares) -> the least energy + quantization cost of one device over its bit-widths (inf if none)."""
    n0b = cfg.uplink_noise_w
    tau = t_round[:, None] - fixed_n  # (T, 1)
    best = np.full((t_round.size, shares.size), np.inf)
    for b in cfg.bits_choices:
        payload = cfg.activation_values * b + (64 if b < 32 else 0)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            power = (
                (n0b / gain_n)
                * shares[None, :]
                * np.expm1(payload * np.log(2) / (shares[None, :] * cfg.uplink_bandwidth_hz * tau))
            )
        quant = 0.0 if b >= 32 else cfg.activation_range**2 / (4 * (2.0**b - 1) ** 2)
        cost = cfg.energy_weight * power * tau + cfg.quantization_weight * quant / 3.0
        cost = np.where((tau > 0) & (power <= cfg.max_power_w), cost, np.inf)
        best = np.minimum(best, cost)
    return best


def _grid_best(cfg, gain, fixed, t_round, s1, s2):
    """Best value over T x (s1, s2, 1 - s1 - s2) for one matching (3 devices): (value, T, s1, s2)."""
    m = 3
    compute = m * cfg.kappa * cfg.device_cycles * cfg.device_frequency_hz**2
    s3 = 1.0 - s1[:, None] - s2[None, :]  # (S1, S2)
    c1 = _device_costs(cfg, gain[0], fixed[0], t_round, s1)  # (T, S1)
    c2 = _device_costs(cfg, gain[1], fixed[1], t_round, s2)  # (T, S2)
    valid = s3 > 0
    s3_flat = np.where(valid, s3, 1.0).ravel()
    c3 = _device_costs(cfg, gain[2], fixed[2], t_round, s3_flat).reshape(t_round.size, *s3.shape)
    total = c1[:, :, None] + c2[:, None, :] + np.where(valid[None], c3, np.inf)
    total = total + (cfg.latency_weight * t_round + cfg.energy_weight * compute)[:, None, None]
    i = np.unravel_index(np.argmin(total), total.shape)
    return float(total[i]), float(t_round[i[0]]), float(s1[i[1]]), float(s2[i[2]])


def reference_optimum(cfg, block_gain, fixed, assignment=None, rel_change=1e-4, points=120):
    """Best objective of a 3-device round over every matching (or the given one) by zoomed grids."""
    m = block_gain.shape[0]
    if m != 3:
        raise ValueError("the reference grid search is written for 3 devices")
    perms = [tuple(assignment)] if assignment is not None else list(itertools.permutations(range(m)))
    t_lo, t_hi = float(fixed.max()), cfg.round_latency_s_limit
    overall = np.inf
    for perm in perms:
        gain = block_gain[np.arange(m), list(perm)]
        t_round = np.linspace(t_lo, t_hi, points + 1)[1:]
        shares = np.linspace(0, 1, points + 1)[1:-1]
        value, t_best, s1, s2 = _grid_best(cfg, gain, fixed, t_round, shares, shares)
        if not np.isfinite(value):
            continue
        dt, ds = t_round[1] - t_round[0], shares[1] - shares[0]
        for _ in range(30):
            # zoom: a window of +-3 steps around the best point, on a grid 10x finer than the last one
            t_round = np.linspace(max(t_best - 3 * dt, t_lo + 1e-12), min(t_best + 3 * dt, t_hi), 61)
            s1g = np.linspace(max(s1 - 3 * ds, 1e-9), min(s1 + 3 * ds, 1 - 1e-9), 61)
            s2g = np.linspace(max(s2 - 3 * ds, 1e-9), min(s2 + 3 * ds, 1 - 1e-9), 61)
            new, t_new, s1n, s2n = _grid_best(cfg, gain, fixed, t_round, s1g, s2g)
            dt, ds = dt / 10, ds / 10
            moved = (value - new) / abs(value) if new < value else 0.0
            if new < value:
                value, t_best, s1, s2 = new, t_new, s1n, s2n
            if moved < rel_change and dt < 1e-6:
                break
        overall = min(overall, value)
    return overall
