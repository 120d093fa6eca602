"""MEG-v0 downlink: per-frame SNR (path loss, optional correlated multi-branch fading), rate, link noise."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgegen.envs.meg.config import MEGConfig
from edgegen.envs.wireless import (
    channel_gain,
    gauss_markov_innovations,
    gauss_markov_recursion,
    path_loss_db_micro,
)

__all__ = [
    "channel_snr",
    "draw_channel",
    "episode_snr",
    "feature_noise_std",
    "iid_frame_snr",
    "rate_bps",
]


def _path_snr(config: MEGConfig, distance_m: np.ndarray) -> np.ndarray:
    gain = channel_gain(path_loss_db_micro(distance_m))
    return config.tx_power_w * gain / config.noise_power_w


def episode_snr(config: MEGConfig, rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Linear SNR of ``n_frames`` consecutive frames: fresh distance per frame, fading correlated in time."""
    draws = draw_channel(config, rng, n_frames)
    return channel_snr(config, draws["distance_m"], draws["innovations"])


def draw_channel(config: MEGConfig, rng: np.random.Generator, n_frames: int) -> dict[str, Any]:
    """The random draws of :func:`episode_snr`, in its order: distances, then fading innovations."""
    distance_m = rng.uniform(config.min_distance_m, config.max_distance_m, n_frames)
    innovations = None
    if config.rayleigh_fading:
        innovations = gauss_markov_innovations(rng, n_frames, config.fading_branches)
    return {"distance_m": distance_m, "innovations": innovations}


def channel_snr(config: MEGConfig, distance_m: np.ndarray, innovations: np.ndarray | None) -> np.ndarray:
    """SNR from :func:`draw_channel`'s draws: path loss, then the mean branch power of the fading.

    Frames lie on the last axis of ``distance_m``; leading batch axes run in parallel.
    """
    snr = _path_snr(config, distance_m)
    if innovations is not None:
        h = gauss_markov_recursion(innovations, config.fading_correlation)
        snr = snr * (h.real**2 + h.imag**2).mean(axis=-1)
    return snr


def iid_frame_snr(config: MEGConfig, rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """Independent draws from the stationary per-frame SNR distribution (what a stationary policy sees)."""
    snr = _path_snr(config, rng.uniform(config.min_distance_m, config.max_distance_m, n_frames))
    if config.rayleigh_fading:  # mean of m Exp(1) branch gains: Gamma(m, 1/m)
        snr = snr * rng.gamma(config.fading_branches, 1.0 / config.fading_branches, n_frames)
    return snr


def rate_bps(config: MEGConfig, snr: ArrayLike) -> np.ndarray:
    """Shannon rate ``B log2(1 + SNR)``."""
    return config.bandwidth_hz * np.log2(1.0 + np.asarray(snr, dtype=np.float64))


def feature_noise_std(config: MEGConfig, snr: ArrayLike) -> np.ndarray:
    """Link noise std on the latent: fixed, or ``sigma_ref 10^((SNR_ref - SNR_dB) / 20)``."""
    snr = np.asarray(snr, dtype=np.float64)
    if config.feature_noise == "fixed":
        return np.full(snr.shape, config.feature_noise_std)
    snr_db = 10.0 * np.log10(np.maximum(snr, 1e-30))
    return config.feature_noise_std * 10.0 ** ((config.noise_reference_snr_db - snr_db) / 20.0)
