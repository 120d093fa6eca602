"""Wireless channel models shared by every env, oracle and test.

Pure, vectorised numpy functions in SI units. Decibels appear only at the edges: a function that
takes or returns dB says so in its name (``*_db``, ``*_dbm``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "channel_gain",
    "db_to_linear",
    "dbm_to_w",
    "gauss_markov_fading",
    "gauss_markov_innovations",
    "gauss_markov_recursion",
    "gauss_markov_sequence",
    "gauss_markov_step",
    "linear_to_db",
    "noise_power_w",
    "path_loss_db_macro",
    "path_loss_db_micro",
    "rayleigh_fading",
    "rayleigh_power_gain",
    "shadowing_db",
    "shannon_rate_bps",
    "w_to_dbm",
]


_NEG_DB_TO_LN = -np.log(10.0) / 10.0  # 10^(-x/10) = exp(x * _NEG_DB_TO_LN)


def _positive(name: str, value: ArrayLike) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not (arr > 0).all():  # the method: a third of np.all's call overhead on env reset paths
        raise ValueError(f"{name} must be > 0 everywhere, got min {np.min(arr)!r}")
    return arr


def dbm_to_w(power_dbm: ArrayLike) -> np.ndarray:
    """Convert power from dBm to watts: ``10 ** ((p_dbm - 30) / 10)``."""
    return np.power(10.0, (np.asarray(power_dbm, dtype=np.float64) - 30.0) / 10.0)


def w_to_dbm(power_w: ArrayLike) -> np.ndarray:
    """Convert power from watts (> 0) to dBm."""
    return 10.0 * np.log10(_positive("power_w", power_w)) + 30.0


def db_to_linear(value_db: ArrayLike) -> np.ndarray:
    """Convert a power ratio from dB to linear scale."""
    return np.power(10.0, np.asarray(value_db, dtype=np.float64) / 10.0)


def linear_to_db(value: ArrayLike) -> np.ndarray:
    """Convert a power ratio (> 0) from linear scale to dB."""
    return 10.0 * np.log10(_positive("value", value))


def path_loss_db_micro(distance_m: ArrayLike) -> np.ndarray:
    """Path loss ``35.3 + 37.6 log10(d [m])`` in dB (the MEG paper's small-cell model)."""
    return 35.3 + 37.6 * np.log10(_positive("distance_m", distance_m))


def path_loss_db_macro(distance_m: ArrayLike) -> np.ndarray:
    """Path loss ``128.1 + 37.6 log10(d [km])`` in dB (3GPP macro cell, used by the FL envs)."""
    return 128.1 + 37.6 * np.log10(_positive("distance_m", distance_m) / 1000.0)


def shadowing_db(rng: np.random.Generator, std_db: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Log-normal shadowing: zero-mean Gaussian samples in dB with standard deviation ``std_db``."""
    if std_db < 0:
        raise ValueError(f"std_db must be >= 0, got {std_db}")
    return rng.normal(0.0, std_db, size=size)


def rayleigh_fading(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Complex Rayleigh block-fading coefficients ``h ~ CN(0, 1)``, so ``E|h|^2 = 1``."""
    return (rng.standard_normal(size) + 1j * rng.standard_normal(size)) / np.sqrt(2.0)


def rayleigh_power_gain(rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
    """Power gains ``|h|^2`` of Rayleigh block fading: exponential with mean 1 (one draw per block)."""
    return rng.exponential(1.0, size=size)


def gauss_markov_step(previous: ArrayLike, innovation: ArrayLike, correlation: float) -> np.ndarray:
    """The Gauss-Markov recursion ``h_t = a h_{t-1} + sqrt(1 - a^2) w_t`` for a given innovation ``w_t``.

    With ``h_{t-1}, w_t ~ CN(0, 1)`` independent, ``h_t`` stays ``CN(0, 1)`` and consecutive values have
    correlation ``a`` (``a = J0(2 pi f_D T)`` in Jakes' model).
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    return correlation * np.asarray(previous) + np.sqrt(1.0 - correlation**2) * np.asarray(innovation)


def gauss_markov_fading(rng: np.random.Generator, previous: ArrayLike, correlation: float) -> np.ndarray:
    """One step of Gauss-Markov (first-order autoregressive) Rayleigh fading from ``previous``."""
    previous = np.asarray(previous, dtype=np.complex128)
    return gauss_markov_step(previous, rayleigh_fading(rng, previous.shape), correlation)


def gauss_markov_sequence(
    rng: np.random.Generator, n_frames: int, n_branches: int, correlation: float
) -> np.ndarray:
    """``n_frames`` consecutive CN(0, 1) fading coefficients per branch, shape (n_frames, n_branches).

    The first frame is a fresh draw; each later one is :func:`gauss_markov_step` of the one before.
    All innovations are drawn in one block (real parts, then imaginary parts).
    """
    return gauss_markov_recursion(gauss_markov_innovations(rng, n_frames, n_branches), correlation)


def gauss_markov_innovations(rng: np.random.Generator, n_frames: int, n_branches: int) -> np.ndarray:
    """The CN(0, 1) innovations of :func:`gauss_markov_sequence`, shape (n_frames, n_branches)."""
    real = rng.standard_normal((n_frames, n_branches))
    return (real + 1j * rng.standard_normal((n_frames, n_branches))) * np.sqrt(0.5)


def gauss_markov_recursion(innovations: np.ndarray, correlation: float) -> np.ndarray:
    """Fading over frames (axis -2) from its innovations, leading batch axes in parallel.

    The first frame is its innovation; each later one is :func:`gauss_markov_step` of the one before.
    """
    w = np.asarray(innovations)
    h = np.empty(w.shape, dtype=np.complex128)
    h[..., 0, :] = w[..., 0, :]
    for t in range(1, w.shape[-2]):
        h[..., t, :] = gauss_markov_step(h[..., t - 1, :], w[..., t, :], correlation)
    return h


def channel_gain(
    path_loss_db: ArrayLike, shadowing_db: ArrayLike = 0.0, fading: ArrayLike = 1.0
) -> np.ndarray:
    """Linear power gain ``10^(-(PL + X)/10) |h|^2`` from path loss, shadowing (dB) and fading.

    ``fading`` may be complex coefficients (their squared magnitude is used) or real power gains.
    """
    fading = np.asarray(fading)
    power = np.abs(fading) ** 2 if np.iscomplexobj(fading) else fading
    loss_db = np.add(path_loss_db, shadowing_db, dtype=np.float64)
    return np.exp(loss_db * _NEG_DB_TO_LN) * power


def noise_power_w(noise_psd_dbm_per_hz: float, bandwidth_hz: ArrayLike) -> np.ndarray:
    """Thermal noise power ``N0 B`` in watts from a PSD in dBm/Hz and a bandwidth in Hz."""
    return dbm_to_w(noise_psd_dbm_per_hz) * _positive("bandwidth_hz", bandwidth_hz)


def shannon_rate_bps(
    bandwidth_hz: ArrayLike, power_w: ArrayLike, gain: ArrayLike, noise_power_w: ArrayLike
) -> np.ndarray:
    """Shannon rate ``B log2(1 + p g / N)`` in bit/s."""
    snr = np.asarray(power_w, dtype=np.float64) * np.asarray(gain) / np.asarray(noise_power_w)
    return np.asarray(bandwidth_hz, dtype=np.float64) * np.log2(1.0 + snr)
