"""Unbiased stochastic uniform b-bit quantizer (numpy and torch), its error bound and payload size.

A tensor ``w`` with range ``[w_min, w_max]`` is mapped onto ``2^b - 1`` equal steps of width
``delta = (w_max - w_min) / (2^b - 1)``; each entry rounds up with probability equal to its
fractional position inside its step, so ``E[Q(w)] = w``. The per-entry variance is
``delta^2 p (1 - p) <= delta^2 / 4``, which over ``d`` entries gives the bound
``d (w_max - w_min)^2 / (4 (2^b - 1)^2)``. The payload is ``d b`` bits plus two float32 for the range.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import torch

__all__ = [
    "RANGE_HEADER_BITS",
    "check_bits",
    "payload_bits",
    "quantize_numpy",
    "quantize_torch",
    "variance_bound",
]

RANGE_HEADER_BITS = 64
"""Bits that carry ``w_min`` and ``w_max`` (two float32) with every quantized tensor."""

MIN_BITS, MAX_BITS = 1, 32


def check_bits(bits: ArrayLike, name: str = "bits") -> np.ndarray:
    """Return ``bits`` as an int array, raising ValueError unless every entry is an integer in 1..32."""
    arr = np.asarray(bits, dtype=np.float64)
    ok = np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))
    if not ok or np.any(arr < MIN_BITS) or np.any(arr > MAX_BITS):
        raise ValueError(f"{name} must be integers in [{MIN_BITS}, {MAX_BITS}], got {arr.tolist()!r}")
    as_int = arr.astype(np.int64)
    return as_int


def variance_bound(num_params: ArrayLike, value_range: ArrayLike, bits: ArrayLike) -> np.ndarray:
    """Upper bound ``d (w_max - w_min)^2 / (4 (2^b - 1)^2)`` on ``E||Q(w) - w||^2``."""
    levels = np.exp2(check_bits(bits).astype(np.float64)) - 1.0
    value_range = np.asarray(value_range, dtype=np.float64)
    return np.asarray(num_params, dtype=np.float64) * value_range**2 / (4.0 * levels**2)


def payload_bits(num_params: ArrayLike, bits: ArrayLike) -> np.ndarray:
    """Bits sent for ``num_params`` values quantized at ``bits`` each: ``d b + 64``."""
    return np.asarray(num_params, dtype=np.float64) * check_bits(bits) + RANGE_HEADER_BITS


def quantize_numpy(values: ArrayLike, bits: int, rng: np.random.Generator) -> np.ndarray:
    """Stochastically quantize ``values`` to ``bits`` bits and return the dequantized array.

    The computation runs in float64 so that even 32-bit levels are represented exactly; the result
    has the input's floating dtype (float64 for integer input).
    """
    check_bits(bits)
    x = np.asarray(values)
    out_dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    x64 = x.astype(np.float64)
    if x64.size == 0:
        return x64.astype(out_dtype)
    lo, hi = float(x64.min()), float(x64.max())
    if hi == lo:
        return x64.astype(out_dtype)
    levels = float(2**bits - 1)
    scaled = (x64 - lo) / (hi - lo) * levels
    floor = np.floor(scaled)
    rounded = floor + (rng.random(x64.shape) < (scaled - floor))
    return (lo + rounded * ((hi - lo) / levels)).astype(out_dtype)


def quantize_torch(values: torch.Tensor, bits: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Torch twin of :func:`quantize_numpy` (per-tensor min-max, float64 inside, input dtype out)."""
    import torch

    check_bits(bits)
    if values.numel() == 0:
        return values.clone()
    x64 = values.detach().to(torch.float64)
    lo, hi = x64.min(), x64.max()
    if bool(hi == lo):
        return values.detach().clone()
    levels = float(2**bits - 1)
    scaled = (x64 - lo) / (hi - lo) * levels
    floor = torch.floor(scaled)
    uniform = torch.rand(x64.shape, generator=generator, dtype=torch.float64, device=x64.device)
    rounded = floor + (uniform < (scaled - floor)).to(torch.float64)
    return (lo + rounded * ((hi - lo) / levels)).to(values.dtype)
