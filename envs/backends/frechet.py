"""Frechet distance between image sets, on the features of a small classifier of the shape images.

FID's recipe at toy scale: a CNN trained to classify the 16x16 procedural shapes
(``envs.backends.data.shape_images``, 10 classes) gives 64-dim penultimate features; the Frechet
distance between two sets is the one between Gaussians fitted to their features,
``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``. The shipped weights
(``envs/assets/shape16_classifier.safetensors``) are rebuilt by ``python -m edgegen.envs.backends.frechet``
(about 20 s on 2 CPU cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from edgegen.envs.backends.data import shape_images
from edgegen.envs.integrity import verify_asset

__all__ = [
    "CLASSIFIER_WEIGHTS",
    "ShapeClassifier",
    "frechet_distance",
    "gaussian_statistics",
    "load_classifier",
    "train_classifier",
]

CLASSIFIER_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "shape16_classifier.safetensors"
RETRAIN_COMMAND = "python -m edgegen.envs.backends.frechet"
IMAGE_SIZE = 16


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of ``features`` (n, d), n >= 2."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (n >= 2, d), got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance squared between N(mu1, cov1) and N(mu2, cov2).

    >>> float(round(frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2)), 12))
    4.0
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: mu {mu1.shape}/{mu2.shape}, cov {cov1.shape}/{cov2.shape}")
    # tr (S1 S2)^(1/2) = tr (A S2 A)^(1/2) with A = S1^(1/2): a symmetric PSD matrix, so its square
    # root's trace is the sum of the roots of its eigenvalues; stable where S1 or S2 is singular.
    w1, v1 = np.linalg.eigh(cov1)
    a = (v1 * np.sqrt(np.clip(w1, 0.0, None))) @ v1.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(a @ cov2 @ a), 0.0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_root)


class ShapeClassifier(nn.Module):
    """Two conv blocks and a 64-unit feature layer; ``features`` gives the layer FD uses."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (IMAGE_SIZE // 4) ** 2, 64),
            nn.ReLU(),
        )
        self.head = nn.Linear(64, n_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """64-dim features of images in [-1, 1], (n, 3, 16, 16)."""
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.head(self.body(images))


def train_classifier(seed: int = 0, n_images: int = 6000, epochs: int = 4) -> tuple[ShapeClassifier, float]:
    """Train on seeded shape images; returns the model and its accuracy on 1000 fresh images."""
    torch.manual_seed(seed)
    labels = np.arange(n_images) % 10
    x = torch.from_numpy(shape_images(labels, seed=seed, size=IMAGE_SIZE))
    y = torch.from_numpy(labels)
    model = ShapeClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n_images).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    test_labels = np.arange(1000) % 10
    x_test = torch.from_numpy(shape_images(test_labels, seed=seed + 1, size=IMAGE_SIZE))
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1).numpy() == test_labels).mean())
    return model.eval(), accuracy


def load_classifier(path: str | Path | None = None) -> ShapeClassifier:
    """The shipped feature network; a missing or corrupt file names itself and the rebuild command."""
    path = CLASSIFIER_WEIGHTS if path is None else Path(path)
    if path.is_file():
        verify_asset(path)  # the shipped weights against the manifest (a user's own file passes)
    model = ShapeClassifier()
    try:
        model.load_state_dict(load_file(path))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"classifier weights {path} are missing; rebuild them with `{RETRAIN_COMMAND}`"
        ) from None
    except Exception as err:  # safetensors and load_state_dict raise several types
        raise ValueError(
            f"classifier weights {path} are corrupt ({err}); rebuild them with `{RETRAIN_COMMAND}`"
        ) from err
    return model.eval()


def main() -> None:
    """Command line: retrain and save the classifier."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CLASSIFIER_WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, accuracy = train_classifier()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    print(f"wrote {args.out}; accuracy on 1000 fresh images {accuracy:.3f}")


if __name__ == "__main__":
    main()
