"""The transmitted latent's spectrum: per-frequency gains between the U-Net's latent and the link.

SDXL's decoder renders fine detail from latent components much weaker than the link noise of the MEG
paper (sigma = 0.1 on the unit-variance scaled latent), and amplifies whatever arrives there: that is
why its plain decoder breaks under link noise (Table II: MSE 0.2842) and a decoder fine-tuned on
noisy latents, which learns to stop amplifying them, does not (0.0106). The small shipped autoencoder
spreads its latent's power differently: at 4 x 16 x 16 the signal power falls below sigma^2 only in
the highest band (`benchmarks/meg_noise_sensitivity.py --spectrum`), so no decoder of that latent
could show the effect. The shipped backbone therefore sends the latent with its high spatial
frequencies carried at a small fixed fraction of their scale (``detail_scale``): the transmitted
latent is ``y = c * F^-1[a(f) F z]``, where ``z`` is the U-Net's (unit-variance) latent, ``a(f)`` is 1
below ``low`` cycles per latent pixel, ``detail_scale`` above ``high`` and a raised cosine between,
and ``c`` restores unit variance, so that sigma keeps the paper's calibration. The plain decoder
undoes the gain exactly (``1 / (c a(f))``); the fine-tuned decoder learns its own per-frequency,
per-channel receive gain with its weights (``train.finetune_decoder``). The U-Net denoises ``z``: a
fixed linear preconditioning of the diffusion model that leaves its N-step images unchanged.

Pure torch functions on ``(B, C, H, W)`` tensors; the gains are real and even in frequency, so
``ifft2(fft2(x) * gain)`` is real up to round-off.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DETAIL_BANDS",
    "apply_gain",
    "detail_gain",
    "fold_gain",
    "folded_shape",
    "radial_frequency",
]

DETAIL_BANDS = (0.3, 0.4)
"""(low, high) cycles per latent pixel of the shipped backbone's raised-cosine transition."""


def radial_frequency(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per latent pixel on the (height, width) FFT grid."""
    fy, fx = torch.meshgrid(torch.fft.fftfreq(height), torch.fft.fftfreq(width), indexing="ij")
    return (fx**2 + fy**2).sqrt()


def detail_gain(
    height: int, width: int, detail_scale: float, low: float = DETAIL_BANDS[0], high: float = DETAIL_BANDS[1]
) -> torch.Tensor:
    """``a(f)``: 1 below ``low``, ``detail_scale`` above ``high``, a raised cosine between; (H, W)."""
    if not 0.0 < detail_scale <= 1.0:
        raise ValueError(f"detail_scale must lie in (0, 1], got {detail_scale!r}")
    if not 0.0 <= low < high:
        raise ValueError(f"need 0 <= low < high (cycles per latent pixel), got low={low!r}, high={high!r}")
    radius = radial_frequency(height, width)
    t = ((radius - low) / (high - low)).clamp(0.0, 1.0)
    weight = 0.5 * (1.0 + torch.cos(math.pi * t))  # 1 at low, 0 at high
    return weight + (1.0 - weight) * detail_scale


def apply_gain(latent: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """``F^-1[gain * F latent]`` over the last two axes; ``gain`` (H, W) or (C, H, W), even in f."""
    spectrum = torch.fft.fft2(latent.to(torch.float32))  # fp32 FFT also for fp16 pipelines
    return torch.fft.ifft2(spectrum * gain.to(spectrum.device, torch.float32)).real.to(latent.dtype)


def folded_shape(height: int, width: int) -> tuple[int, int]:
    """Shape of the free parameters of a gain that is even in both frequency axes."""
    return height // 2 + 1, width // 2 + 1


def fold_gain(folded: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., H//2+1, W//2+1) free values -> (..., H, W) gain, symmetric under f -> -f on each axis."""
    ky = torch.arange(height)
    kx = torch.arange(width)
    iy = torch.minimum(ky, height - ky)
    ix = torch.minimum(kx, width - kx)
    return folded[..., iy[:, None], ix[None, :]]
