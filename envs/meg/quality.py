"""MEG-v0 quality model: ``ln MSE(N, rho, sigma)`` read from a measured quality profile (npz).

The profile (built by ``python -m edgegen.envs.backends.diffusion.profile`` from the real split-diffusion
backbone) holds, per grid cell, the mean and the spread over prompts and seeds of ``ln MSE`` against
the reference image. Lookups are exact in ``N`` (an integer grid) and linear in ``rho`` and
``sigma``; values outside the measured ``sigma`` range are clamped to its ends. No torch here.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgegen.envs.integrity import verify_asset

__all__ = ["DEFAULT_PROFILE", "PROFILE_VERSION", "REBUILD_COMMAND", "QualityProfile", "load_profile"]

DEFAULT_PROFILE = Path(__file__).resolve().parents[1] / "assets" / "meg_quality_profile.npz"
REBUILD_COMMAND = "python -m edgegen.envs.backends.diffusion.profile"
PROFILE_VERSION = 1
_REQUIRED = ("steps", "rho", "sigma", "ln_mse_mean_finetuned", "ln_mse_std_finetuned", "metadata")


def _interp_weights(grid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left index and weight of the right neighbour for linear interpolation, clamped to the grid."""
    x = np.clip(x, grid[0], grid[-1])
    left = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, grid.size - 2)
    weight = (x - grid[left]) / (grid[left + 1] - grid[left])
    return left, weight


@dataclass(frozen=True)
class QualityProfile:
    """Mean and spread of ``ln MSE`` on a (steps, rho, sigma) grid, for one decoder.

    Args:
        steps: integer denoising steps, increasing (N_min..N_max).
        rho: merge ratios, increasing.
        sigma: link noise std (latent units), increasing.
        ln_mse_mean: (len(steps), len(rho), len(sigma)).
        ln_mse_std: same shape, per-sample spread.
        metadata: what built it (backend, resolution, seeds, version).
    """

    steps: np.ndarray
    rho: np.ndarray
    sigma: np.ndarray
    ln_mse_mean: np.ndarray
    ln_mse_std: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = (self.steps.size, self.rho.size, self.sigma.size)
        for name in ("ln_mse_mean", "ln_mse_std"):
            value = getattr(self, name)
            if value.shape != shape:
                raise ValueError(f"QualityProfile.{name} must have shape {shape}, got {value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"QualityProfile.{name} has non-finite entries")
        for name in ("steps", "rho", "sigma"):
            grid = getattr(self, name)
            if grid.size < 2 or np.any(np.diff(grid) <= 0):
                raise ValueError(f"QualityProfile.{name} must be increasing with >= 2 points, got {grid}")
        if np.any(np.diff(self.steps) != 1):
            raise ValueError(f"QualityProfile.steps must be consecutive integers, got {self.steps}")

    def step_index(self, steps: ArrayLike) -> np.ndarray:
        """Row of each ``N`` in the grid (ValueError outside it)."""
        n = np.asarray(steps)
        if np.any(n < self.steps[0]) or np.any(n > self.steps[-1]):
            raise ValueError(f"steps must lie in [{self.steps[0]}, {self.steps[-1]}], got {steps!r}")
        return (n - self.steps[0]).astype(np.int64)

    def table_at_sigma(self, sigma: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of ``ln MSE`` over (steps, rho) at each ``sigma``: shape sigma.shape + (S, R)."""
        left, w = _interp_weights(self.sigma, np.asarray(sigma, dtype=np.float64))
        w = w[..., None, None]
        by_sigma_mean = self.ln_mse_mean.transpose(2, 0, 1)  # (sigma, steps, rho)
        by_sigma_std = self.ln_mse_std.transpose(2, 0, 1)
        mean = (1 - w) * by_sigma_mean[left] + w * by_sigma_mean[left + 1]
        std = (1 - w) * by_sigma_std[left] + w * by_sigma_std[left + 1]
        return mean, std

    def ln_mse(self, steps: ArrayLike, rho: ArrayLike, sigma: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of ``ln MSE`` at (N, rho, sigma), broadcast together."""
        n_idx = self.step_index(steps)
        rho = np.asarray(rho, dtype=np.float64)
        if np.any(rho < 0) or np.any(rho > 1):
            raise ValueError(f"rho must lie in [0, 1], got {rho}")
        n_idx, rho, sigma = np.broadcast_arrays(n_idx, rho, np.asarray(sigma, dtype=np.float64))
        r_left, r_w = _interp_weights(self.rho, rho)
        s_left, s_w = _interp_weights(self.sigma, sigma)
        out = []
        for table in (self.ln_mse_mean, self.ln_mse_std):
            value = 0.0
            for dr, wr in ((0, 1 - r_w), (1, r_w)):
                for ds, ws in ((0, 1 - s_w), (1, s_w)):
                    value = value + wr * ws * table[n_idx, r_left + dr, s_left + ds]
            out.append(np.asarray(value))
        return out[0], out[1]


def load_profile(path: str | Path | None = None, decoder: str = "finetuned") -> QualityProfile:
    """Read a profile npz; a missing or corrupt file raises an error naming it and the rebuild command.

    Args:
        path: npz file; ``None`` is the shipped ``envs/assets/meg_quality_profile.npz``.
        decoder: ``"finetuned"`` (decoder trained on merged noisy latents) or ``"plain"``.
    """
    if decoder not in ("finetuned", "plain"):
        raise ValueError(f"decoder must be 'finetuned' or 'plain', got {decoder!r}")
    path = DEFAULT_PROFILE if path is None else Path(path)
    hint = f"rebuild it with `{REBUILD_COMMAND} --out {path}`"
    if not path.is_file():
        raise FileNotFoundError(f"MEG quality profile {path} is missing; {hint}")
    verify_asset(path)  # the shipped profile against its manifest digest (a user's own file passes)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in (*_REQUIRED, f"ln_mse_mean_{decoder}") if k not in data.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            arrays = {k: data[k] for k in data.files}
        metadata = json.loads(str(arrays["metadata"]))
        if metadata.get("version") != PROFILE_VERSION:
            raise ValueError(f"version {metadata.get('version')} != {PROFILE_VERSION}")
        return QualityProfile(
            steps=arrays["steps"].astype(np.int64),
            rho=arrays["rho"].astype(np.float64),
            sigma=arrays["sigma"].astype(np.float64),
            ln_mse_mean=arrays[f"ln_mse_mean_{decoder}"].astype(np.float64),
            ln_mse_std=arrays[f"ln_mse_std_{decoder}"].astype(np.float64),
            metadata=metadata,
        )
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as err:
        raise ValueError(f"MEG quality profile {path} is corrupt ({err}); {hint}") from err
