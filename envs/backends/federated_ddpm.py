"""Federated training of a small DDPM with quantized uploads: the real model behind FedDiffusion-v0.

K devices hold non-IID slices (Dirichlet over the 10 classes) of 16x16 procedural shape images
(``envs.backends.data``). Every round each device copies the global ``UNet2DModel``, trains ``I``
local steps on the epsilon-prediction loss of a ``DDPMScheduler``, and uploads its model update
(local minus global) stochastically quantized at its bit-width (``envs.quantization.quantize_torch``,
per tensor min-max; 32 bits means unquantized). Sending the update rather than the weights is what
FedAvg implementations with compression do; the server already holds the global model, so the two
carry the same information, and the update's range is far narrower. The server adds the
data-size-weighted mean of the dequantized updates.

Quality: the held-out denoising loss (fixed noise and timesteps) and the Frechet distance of 200
DDIM samples (fixed seed) to held-out real images, on the features of ``envs.backends.frechet``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from edgegen.envs.backends.data import dirichlet_split, shape_images
from edgegen.envs.backends.frechet import (
    ShapeClassifier,
    frechet_distance,
    gaussian_statistics,
    load_classifier,
)
from edgegen.envs.quantization import RANGE_HEADER_BITS, check_bits, quantize_torch, variance_bound

__all__ = ["FederatedDDPM", "FederatedDDPMConfig", "RoundReport", "build_unet"]

IMAGE_SIZE = 16


def build_unet() -> UNet2DModel:
    """A small DDPM U-Net on 3 x 16 x 16 images (0.17 M parameters)."""
    return UNet2DModel(
        sample_size=IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


@dataclass(frozen=True)
class FederatedDDPMConfig:
    """Size of the federated run (defaults: one round in a few seconds on 2 CPU cores)."""

    num_devices: int = 10
    local_steps: int = 5
    batch_size: int = 32
    learning_rate: float = 2e-3
    dirichlet_alpha: float = 0.5
    train_images: int = 3000
    heldout_images: int = 500
    train_timesteps: int = 200
    sample_steps: int = 10
    fd_samples: int = 200

    def __post_init__(self) -> None:
        """Validate: every count >= 1, positive rates."""
        for name in ("num_devices", "local_steps", "batch_size", "train_timesteps", "sample_steps"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(
                    f"FederatedDDPMConfig.{name} must be an integer >= 1, got {getattr(self, name)!r}"
                )
        if self.train_images < self.num_devices:
            raise ValueError(f"FederatedDDPMConfig.train_images must be >= num_devices ({self.num_devices})")
        if self.heldout_images < 2 or self.fd_samples < 2:
            raise ValueError("FederatedDDPMConfig.heldout_images and fd_samples must be >= 2")
        if not (self.learning_rate > 0 and self.dirichlet_alpha > 0):
            raise ValueError("FederatedDDPMConfig.learning_rate and dirichlet_alpha must be > 0")


@dataclass
class RoundReport:
    """What one round did: per-device train loss, upload size and quantization error."""

    train_loss: np.ndarray
    upload_bits: np.ndarray
    quantization_error_sq: np.ndarray
    quantization_error_bound: np.ndarray


class FederatedDDPM:
    """FedAvg of a diffusers ``UNet2DModel`` with quantized uploads; seeded end to end.

    Args:
        config: sizes and rates.
        seed: seeds the data, the split, the initial model, local batches, noise and quantization.
    """

    def __init__(self, config: FederatedDDPMConfig | None = None, seed: int = 0) -> None:
        self.config = cfg = config or FederatedDDPMConfig()
        self.seed = seed
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 10, cfg.train_images)
        self.images = torch.from_numpy(shape_images(labels, seed=seed, size=IMAGE_SIZE))
        self.parts = [
            torch.from_numpy(p) for p in dirichlet_split(labels, cfg.num_devices, cfg.dirichlet_alpha, seed)
        ]
        self.weights = np.array([p.numel() for p in self.parts], dtype=np.float64) / cfg.train_images
        heldout_labels = np.arange(cfg.heldout_images) % 10
        self.heldout = torch.from_numpy(shape_images(heldout_labels, seed=seed + 1_000_003, size=IMAGE_SIZE))
        torch.manual_seed(seed)
        self.model = build_unet()
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.scheduler = DDPMScheduler(num_train_timesteps=cfg.train_timesteps)
        self.generator = torch.Generator().manual_seed(seed)
        self.rounds = 0
        self._classifier: ShapeClassifier | None = None
        self._reference_stats: tuple[np.ndarray, np.ndarray] | None = None

    def _loss(self, model: UNet2DModel, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, self.config.train_timesteps, (x0.shape[0],), generator=generator)
        noisy = self.scheduler.add_noise(x0, noise, t)
        return torch.nn.functional.mse_loss(model(noisy, t).sample, noise)

    def run_round(self, bits: Sequence[int]) -> RoundReport:
        """One FedAvg round; device k uploads its update at ``bits[k]`` bits (32: unquantized)."""
        cfg = self.config
        bits_arr = check_bits(bits, "bits")
        if bits_arr.shape != (cfg.num_devices,):
            raise ValueError(f"bits must have one entry per device ({cfg.num_devices}), got {bits_arr.shape}")
        global_params = [p.detach().clone() for p in self.model.parameters()]
        aggregate = [torch.zeros_like(p) for p in global_params]
        losses, errors, bounds = [], [], []
        for k, part in enumerate(self.parts):
            local = copy.deepcopy(self.model).train()
            opt = torch.optim.AdamW(local.parameters(), lr=cfg.learning_rate, weight_decay=0.0)
            total = 0.0
            for _ in range(cfg.local_steps):
                idx = part[torch.randint(0, part.numel(), (cfg.batch_size,), generator=self.generator)]
                loss = self._loss(local, self.images[idx], self.generator)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item()
            losses.append(total / cfg.local_steps)
            err_sq, bound = 0.0, 0.0
            for acc, p_local, p_global in zip(aggregate, local.parameters(), global_params, strict=True):
                update = p_local.detach() - p_global
                sent = (
                    update if bits_arr[k] >= 32 else quantize_torch(update, int(bits_arr[k]), self.generator)
                )
                acc += self.weights[k] * sent
                err_sq += float(((sent - update).double() ** 2).sum())
                if bits_arr[k] < 32:
                    value_range = float(update.max() - update.min())
                    bound += float(variance_bound(update.numel(), value_range, int(bits_arr[k])))
            errors.append(err_sq)
            bounds.append(bound)
        with torch.no_grad():
            for p, g, acc in zip(self.model.parameters(), global_params, aggregate, strict=True):
                p.copy_(g + acc)
        self.rounds += 1
        upload = self.num_params * bits_arr.astype(np.float64) + np.where(
            bits_arr < 32, float(RANGE_HEADER_BITS) * self._num_tensors, 0.0
        )
        return RoundReport(np.array(losses), upload, np.array(errors), np.array(bounds))

    @property
    def _num_tensors(self) -> int:
        return sum(1 for _ in self.model.parameters())

    @torch.no_grad()
    def heldout_loss(self, seed: int = 12_345) -> float:
        """Denoising loss on the held-out images with fixed noise and timesteps."""
        self.model.eval()
        return float(self._loss(self.model, self.heldout, torch.Generator().manual_seed(seed)))

    @torch.no_grad()
    def sample(self, n: int, seed: int = 777) -> torch.Tensor:
        """``n`` DDIM samples (``sample_steps`` steps) from a fixed seed, images in [-1, 1]."""
        self.model.eval()
        ddim = DDIMScheduler.from_config(self.scheduler.config)
        ddim.set_timesteps(self.config.sample_steps)
        x = torch.randn((n, 3, IMAGE_SIZE, IMAGE_SIZE), generator=torch.Generator().manual_seed(seed))
        for t in ddim.timesteps:
            x = ddim.step(self.model(x, t).sample, t, x).prev_sample
        return x.clamp(-1, 1)

    @torch.no_grad()
    def frechet_distance(self, seed: int = 777) -> float:
        """Frechet distance of ``fd_samples`` seeded samples to the held-out images (classifier features)."""
        if self._classifier is None or self._reference_stats is None:
            self._classifier = load_classifier()
            self._reference_stats = gaussian_statistics(
                self._classifier.features(self.heldout).double().numpy()
            )
        samples = self.sample(self.config.fd_samples, seed)
        mu, cov = gaussian_statistics(self._classifier.features(samples).double().numpy())
        ref_mu, ref_cov = self._reference_stats
        return frechet_distance(mu, cov, ref_mu, ref_cov)
