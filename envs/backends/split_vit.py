"""Split federated fine-tuning of a transformers ViT with quantized activations: SFLAM's real backend.

The ViT is cut after the patch embedding. A device keeps the patch projection and the [CLS] token
(``DevicePart``); the server keeps the position embeddings, the blocks, the final norm and the head
(``ServerPart``). Per local step, the device embeds its batch and sends the activations stochastically
quantized at its bit-width (``envs.quantization.quantize_torch``, per tensor min-max); the server runs
forward and backward and returns the gradient of the (dequantized) activations, which the device
back-propagates (straight through the quantizer); both sides step their optimisers. After a round the
device parts and the server parts are averaged separately (FedAvg, weighted by data size); every
participant trains its own deep copy.

Data: scikit-learn's 8x8 digits (``load_digits``), split over devices by Dirichlet(alpha) per class.
``SplitViT.from_pretrained`` loads any ``ViTForImageClassification`` (a hub id for users who have
one; tested here on a small model saved locally).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import ViTConfig, ViTForImageClassification

from edgegen.envs.backends.data import dirichlet_split
from edgegen.envs.quantization import check_bits, quantize_torch

__all__ = ["DevicePart", "ServerPart", "SplitFederatedViT", "SplitViT", "digits_dataset", "tiny_vit_config"]


def tiny_vit_config() -> ViTConfig:
    """8x8 grey digits, 2x2 patches (16 + [CLS] tokens), width 64, 4 blocks: trains on a CPU in minutes."""
    return ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
    )


def digits_dataset(seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): scikit-learn's digits in [-1, 1], (n, 1, 8, 8), seeded split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    y = torch.from_numpy(digits.target.astype(np.int64))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class DevicePart(nn.Module):
    """Patch projection and [CLS] token: images -> (batch, 1 + patches, width) activations."""

    def __init__(self, model: ViTForImageClassification) -> None:
        super().__init__()
        embeddings = model.vit.embeddings
        self.patch_embeddings = copy.deepcopy(embeddings.patch_embeddings)
        self.cls_token = nn.Parameter(embeddings.cls_token.detach().clone())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Activations that cross the cut."""
        patches = self.patch_embeddings(images)
        return torch.cat([self.cls_token.expand(images.shape[0], -1, -1), patches], dim=1)


class ServerPart(nn.Module):
    """Position embeddings, transformer blocks, final norm and classification head."""

    def __init__(self, model: ViTForImageClassification) -> None:
        super().__init__()
        self.position_embeddings = nn.Parameter(model.vit.embeddings.position_embeddings.detach().clone())
        self.layers = copy.deepcopy(model.vit.layers)
        self.layernorm = copy.deepcopy(model.vit.layernorm)
        self.classifier = copy.deepcopy(model.classifier)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        """Class logits from the device's activations."""
        hidden = activations + self.position_embeddings
        for layer in self.layers:
            hidden = layer(hidden)
        return self.classifier(self.layernorm(hidden)[:, 0])


class SplitViT(nn.Module):
    """A ViT as (device part, server part); ``forward`` runs both (full precision)."""

    def __init__(self, model: ViTForImageClassification) -> None:
        super().__init__()
        self.device_part, self.server_part = DevicePart(model), ServerPart(model)

    @classmethod
    def from_config(cls, config: ViTConfig | None = None, seed: int = 0) -> SplitViT:
        """A freshly initialised ViT (default :func:`tiny_vit_config`), split."""
        torch.manual_seed(seed)
        return cls(ViTForImageClassification(config or tiny_vit_config()))

    @classmethod
    def from_pretrained(cls, path_or_id: str, **kwargs) -> SplitViT:
        """Split a ``ViTForImageClassification`` loaded from a folder or hub id."""
        return cls(ViTForImageClassification.from_pretrained(path_or_id, **kwargs))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits."""
        return self.server_part(self.device_part(images))


@dataclass
class SplitRoundReport:
    """Per participating device: train loss, uploaded activation values and bits."""

    train_loss: np.ndarray
    activation_values: np.ndarray
    bits: np.ndarray


def _average_into(target: nn.Module, copies: Sequence[nn.Module], weights: np.ndarray) -> None:
    with torch.no_grad():
        for name, param in target.named_parameters():
            stacked = torch.stack([dict(c.named_parameters())[name].detach() for c in copies])
            param.copy_(torch.tensordot(torch.as_tensor(weights, dtype=param.dtype), stacked, dims=1))


class SplitFederatedViT:
    """Split federated learning of a ViT on the digits, one ``run_round`` per communication round.

    Args:
        num_devices: devices the training data is split over.
        alpha: Dirichlet concentration of the per-class split (small: non-IID).
        local_steps: optimiser steps per participating device and round.
        batch_size: samples per step.
        learning_rate: Adam step of both sides.
        seed: seeds the split, the initial model, batches and quantization.
        model: start from this split model instead of a fresh tiny ViT.
    """

    def __init__(
        self,
        num_devices: int = 10,
        alpha: float = 0.5,
        local_steps: int = 5,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        seed: int = 0,
        model: SplitViT | None = None,
    ) -> None:
        self.x, self.y, self.x_test, self.y_test = digits_dataset(seed)
        self.parts = [torch.from_numpy(p) for p in dirichlet_split(self.y.numpy(), num_devices, alpha, seed)]
        self.sizes = np.array([p.numel() for p in self.parts], dtype=np.float64)
        self.model = model if model is not None else SplitViT.from_config(seed=seed)
        self.local_steps, self.batch_size, self.learning_rate = local_steps, batch_size, learning_rate
        self.generator = torch.Generator().manual_seed(seed)
        self.rounds = 0

    def run_round(self, devices: Sequence[int], bits: Sequence[int]) -> SplitRoundReport:
        """Train the listed devices for one round with activations at ``bits`` (32: unquantized)."""
        bits_arr = check_bits(bits, "bits")
        if len(devices) != bits_arr.size:
            raise ValueError(
                f"need one bit-width per device, got {len(devices)} devices and {bits_arr.size} bits"
            )
        device_copies, server_copies, losses, values = [], [], [], []
        for k, b in zip(devices, bits_arr.tolist(), strict=True):
            device = copy.deepcopy(self.model.device_part).train()
            server = copy.deepcopy(self.model.server_part).train()
            opt_device = torch.optim.Adam(device.parameters(), lr=self.learning_rate)
            opt_server = torch.optim.Adam(server.parameters(), lr=self.learning_rate)
            part, total, sent = self.parts[int(k)], 0.0, 0
            for _ in range(self.local_steps):
                idx = part[torch.randint(0, part.numel(), (self.batch_size,), generator=self.generator)]
                activations = device(self.x[idx])
                received = activations.detach() if b >= 32 else quantize_torch(activations, b, self.generator)
                received.requires_grad_(True)
                loss = nn.functional.cross_entropy(server(received), self.y[idx])
                opt_server.zero_grad(set_to_none=True)
                loss.backward()  # server weights and the gradient sent back, d loss / d received
                opt_server.step()
                opt_device.zero_grad(set_to_none=True)
                activations.backward(received.grad)  # straight through the quantizer
                opt_device.step()
                total += loss.item()
                sent += activations.numel()
            device_copies.append(device)
            server_copies.append(server)
            losses.append(total / self.local_steps)
            values.append(sent)
        weights = self.sizes[list(devices)] / self.sizes[list(devices)].sum()
        _average_into(self.model.device_part, device_copies, weights)
        _average_into(self.model.server_part, server_copies, weights)
        self.rounds += 1
        return SplitRoundReport(np.array(losses), np.array(values), bits_arr)

    @torch.no_grad()
    def accuracy(self) -> float:
        """Test accuracy of the averaged model (full precision)."""
        self.model.eval()
        return float((self.model(self.x_test).argmax(1) == self.y_test).float().mean())
