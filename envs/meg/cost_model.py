"""MEG-v0 cost model: transmitted bits, latency and energy of one generation task.

Pure, vectorised numpy functions (broadcast over any leading shape), shared by the env, the oracle
and the tests. SI units throughout: FLOP, FLOP/s, J/FLOP, bit/s, s, J.

- Bits: a ``C x H x W`` latent is sent as ``T = HW / 4`` tokens of ``4C`` values; merging
  ``r = min(floor(rho T), 3T/4)`` tokens costs one index value per merged token, so
  ``D = b [4C (T - r) + r]`` bits per image.
- Latency ``L = F_ES / Theta_ES + L0 + n D / R + F_UE / Theta_UE`` with ``F_ES = n N F_step``
  (doubled with classifier-free guidance) and ``F_UE = n F_dec``.
- Energy ``E = e_ES F_ES + e_UE F_UE + P n D / R``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ComputeModel",
    "image_bits",
    "latent_bits",
    "merged_token_count",
    "payload_costs",
    "task_energy_j",
    "task_latency_s",
    "transmission_latency_s",
    "unchecked_latent_bits",
    "unchecked_merged_tokens",
]

_ROUNDING_SLACK = 1e-9  # keeps products such as 0.3 * 10 = 2.9999... from flooring one token short


def unchecked_merged_tokens(rho: Any, n_tokens: int) -> Any:
    """``min(floor(rho T), 3T/4)`` by plain arithmetic, on Python floats (the env's step) or arrays.

    :func:`merged_token_count` is the checked, integer-typed front end.
    """
    r = (rho * n_tokens + _ROUNDING_SLACK) // 1
    cap = 3 * n_tokens // 4
    return r - (r > cap) * (r - cap)


def unchecked_latent_bits(
    n_merged: Any, channels: int, n_tokens: int, bits_per_value: int, index_bits: Any = None
) -> Any:
    """``b [4C (T - r) + r]`` by plain arithmetic (floats or arrays); :func:`latent_bits` checks.

    ``index_bits`` (per merged token) replaces the default of one b-bit index value: 0 is pruning,
    where the dropped tokens need no index (``b 4C (T - r)``).
    """
    if index_bits is None:
        return bits_per_value * (4 * channels * (n_tokens - n_merged) + n_merged)
    return bits_per_value * 4 * channels * (n_tokens - n_merged) + index_bits * n_merged


def payload_costs(
    compute_latency_s: Any, compute_energy_j: Any, payload_bits: Any, rate_bps: Any, tx_power_w: float
) -> tuple[Any, Any, Any]:
    """(transmission latency, task latency, task energy): ``D / R``, ``L_c + D / R``, ``E_c + P D / R``.

    ``L_c`` and ``E_c`` are the compute parts of :func:`task_latency_s` / :func:`task_energy_j`. Plain
    arithmetic: the env's step calls it on floats, the oracle on arrays.
    """
    tx = payload_bits / rate_bps
    return tx, compute_latency_s + tx, compute_energy_j + tx_power_w * tx


def merged_token_count(rho: ArrayLike, n_tokens: int) -> np.ndarray | int:
    """Merged tokens ``r = min(floor(rho T), 3T/4)`` (one destination per 2x2 window caps it at 3/4).

    >>> merged_token_count(0.5, 4096), merged_token_count(0.9, 4096), merged_token_count(0.3, 64)
    (2048, 3072, 19)
    """
    rho_arr = np.asarray(rho, dtype=np.float64)
    if np.any(~np.isfinite(rho_arr)) or np.any(rho_arr < 0) or np.any(rho_arr > 1):
        raise ValueError(f"rho must lie in [0, 1], got {rho!r}")
    if n_tokens < 4 or n_tokens % 4:
        raise ValueError(f"n_tokens must be a positive multiple of 4, got {n_tokens}")
    r = np.asarray(unchecked_merged_tokens(rho_arr, n_tokens)).astype(np.int64)
    return int(r) if r.ndim == 0 else r


def latent_bits(
    n_merged: ArrayLike,
    channels: int = 4,
    height: int = 128,
    width: int = 128,
    bits_per_value: int = 16,
    index_bits: int | None = None,
) -> np.ndarray:
    """Bits of one merged latent, ``D = b [4C (T - r) + r]`` with ``T = HW / 4``.

    Each merged token costs one b-bit index value; ``index_bits`` sets that cost per merged token
    instead (``index_bits=0``: pruning, the MEG paper's "no index overhead" case).

    >>> float(latent_bits(0)), float(latent_bits(2048))  # SDXL 4 x 128 x 128 latent, fp16
    (1048576.0, 557056.0)
    >>> float(latent_bits(2048, index_bits=0))  # 2048 tokens pruned
    524288.0
    """
    if index_bits is not None and (isinstance(index_bits, bool) or not 0 <= index_bits <= 64):
        raise ValueError(f"index_bits must be an integer in [0, 64] or None, got {index_bits!r}")
    n_tokens = height * width // 4
    r = np.asarray(n_merged, dtype=np.float64)
    if np.any(r < 0) or np.any(r > 3 * n_tokens // 4):
        raise ValueError(f"n_merged must lie in [0, {3 * n_tokens // 4}], got {n_merged!r}")
    return unchecked_latent_bits(r, channels, n_tokens, bits_per_value, index_bits)


def image_bits(height: int = 1024, width: int = 1024, channels: int = 3, bits_per_value: int = 16) -> float:
    """Bits of an uncompressed image (centralised generation sends the image, not the latent).

    >>> image_bits()
    50331648.0
    """
    return float(height * width * channels * bits_per_value)


def transmission_latency_s(bits: ArrayLike, rate_bps: ArrayLike, n_images: int = 1) -> np.ndarray:
    """Seconds to send ``n_images`` payloads of ``bits`` each at ``rate_bps``."""
    rate = np.asarray(rate_bps, dtype=np.float64)
    if np.any(~(rate > 0)):
        raise ValueError(f"rate_bps must be > 0, got {rate_bps!r}")
    return n_images * np.asarray(bits, dtype=np.float64) / rate


@dataclass(frozen=True)
class ComputeModel:
    """Computation side of the MEG cost model (defaults: SDXL at 1024^2, the design's assumptions).

    Args:
        unet_flops_per_step: FLOPs of one U-Net evaluation for one image (SDXL: 6.761e12, counted).
        decoder_flops: FLOPs of one VAE decode (SDXL: 1.047e13, counted).
        guidance_factor: U-Net evaluations per step (2 with classifier-free guidance).
        es_flops_per_s: edge server throughput Theta_ES (assumption: 40 TFLOP/s).
        ue_flops_per_s: UE throughput Theta_UE (assumption: 0.5 Theta_ES).
        es_energy_j_per_flop: e_ES (assumption: 7.5 J/TFLOP).
        ue_energy_j_per_flop: e_UE (assumption: e_ES / 0.8).
        access_latency_s: fixed overhead L0 (assumption: 0.05 s).
    """

    unet_flops_per_step: float
    decoder_flops: float
    guidance_factor: float = 2.0
    es_flops_per_s: float = 40e12
    ue_flops_per_s: float = 20e12
    es_energy_j_per_flop: float = 7.5e-12
    ue_energy_j_per_flop: float = 7.5e-12 / 0.8
    access_latency_s: float = 0.05

    def es_flops(self, steps: ArrayLike, n_images: int = 1) -> np.ndarray:
        """FLOPs on the edge server for ``steps`` denoising steps."""
        return (
            n_images * np.asarray(steps, dtype=np.float64) * self.guidance_factor * self.unet_flops_per_step
        )

    def ue_flops(self, n_images: int = 1) -> float:
        """FLOPs on the UE (one decode per image)."""
        return n_images * self.decoder_flops


def task_latency_s(
    model: ComputeModel, steps: ArrayLike, tx_latency_s: ArrayLike, n_images: int = 1
) -> np.ndarray:
    """End-to-end latency: ES compute + access latency + transmission + UE decode."""
    es = model.es_flops(steps, n_images) / model.es_flops_per_s + model.access_latency_s
    return es + np.asarray(tx_latency_s, dtype=np.float64) + model.ue_flops(n_images) / model.ue_flops_per_s


def task_energy_j(
    model: ComputeModel, steps: ArrayLike, tx_latency_s: ArrayLike, tx_power_w: float, n_images: int = 1
) -> np.ndarray:
    """Energy: ES compute + UE decode + radio (``P L_tx``)."""
    compute = model.es_energy_j_per_flop * model.es_flops(steps, n_images)
    compute = compute + model.ue_energy_j_per_flop * model.ue_flops(n_images)
    return compute + tx_power_w * np.asarray(tx_latency_s, dtype=np.float64)
