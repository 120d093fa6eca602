"""Data the project makes itself: procedural shape images (MEG backbone) and a Dirichlet split.

Everything is a pure function of its seed, so a dataset is reproducible from a few integers and
needs no download.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASS_NAMES", "dirichlet_split", "shape_images"]

# Ten "prompts": a shape and a colour each; the class id is the prompt id of the MEG backbone.
CLASS_NAMES: tuple[str, ...] = (
    "red circle",
    "green square",
    "blue triangle",
    "yellow ring",
    "magenta cross",
    "cyan circle",
    "orange square",
    "white triangle",
    "purple ring",
    "lime cross",
)
_COLOURS = np.array(
    [
        [0.9, 0.15, 0.1],
        [0.1, 0.8, 0.2],
        [0.15, 0.3, 0.95],
        [0.95, 0.9, 0.1],
        [0.9, 0.1, 0.85],
        [0.1, 0.9, 0.9],
        [1.0, 0.55, 0.05],
        [0.97, 0.97, 0.97],
        [0.55, 0.2, 0.85],
        [0.6, 1.0, 0.1],
    ]
)
_SHAPES = ("circle", "square", "triangle", "ring", "cross")


def _shape_masks(kind: str, x: np.ndarray, y: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Soft (anti-aliased) masks in [0, 1] of one shape kind, centred coordinates x, y (batch, H, W)."""
    s = size[:, None, None]
    if kind == "circle":
        dist = np.hypot(x, y) - s
    elif kind == "square":
        dist = np.maximum(np.abs(x), np.abs(y)) - 0.8 * s
    elif kind == "triangle":
        # intersection of three half-planes: an upward equilateral triangle
        d1 = y - 0.5 * s
        d2 = -0.866 * x - 0.5 * y - 0.5 * s
        d3 = 0.866 * x - 0.5 * y - 0.5 * s
        dist = np.maximum(np.maximum(d1, d2), d3)
    elif kind == "ring":
        dist = np.abs(np.hypot(x, y) - 0.75 * s) - 0.25 * s
    else:  # cross
        arm = 0.3 * s
        horizontal = np.maximum(np.abs(x) - s, np.abs(y) - arm)
        vertical = np.maximum(np.abs(y) - s, np.abs(x) - arm)
        dist = np.minimum(horizontal, vertical)
    return np.clip(0.5 - dist, 0.0, 1.0)


def shape_images(labels: np.ndarray, seed: int, size: int = 32) -> np.ndarray:
    """Images of coloured shapes on textured backgrounds, float32 in [-1, 1], shape (n, 3, size, size).

    Args:
        labels: class ids in ``[0, 10)``, one per image (see ``CLASS_NAMES``).
        seed: seeds the position, size, colour jitter and background texture of every image.
        size: image side in pixels (>= 8).

    >>> labels = np.arange(10)
    >>> a, b = shape_images(labels, seed=3), shape_images(labels, seed=3)
    >>> a.shape, a.dtype, bool((a == b).all()), bool(a.min() >= -1 and a.max() <= 1)
    ((10, 3, 32, 32), dtype('float32'), True, True)
    """
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(CLASS_NAMES):
        raise ValueError(f"labels must lie in [0, {len(CLASS_NAMES)}), got {labels.min()}..{labels.max()}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    rng = np.random.default_rng(seed)
    n = labels.size
    grid = np.arange(size, dtype=np.float64) + 0.5
    yy, xx = np.meshgrid(grid, grid, indexing="ij")

    # Background: two oriented sinusoids between two dark random colours.
    angle = rng.uniform(0, np.pi, (n, 2))
    freq = rng.uniform(0.15, 0.6, (n, 2))
    phase = rng.uniform(0, 2 * np.pi, (n, 2))
    wave: np.ndarray | float = 0.0
    for j in range(2):
        proj = np.cos(angle[:, j, None, None]) * xx + np.sin(angle[:, j, None, None]) * yy
        wave = wave + 0.5 * np.sin(freq[:, j, None, None] * proj + phase[:, j, None, None])
    mix = np.asarray(0.5 + 0.5 * wave)  # in [0, 1]
    c0 = rng.uniform(0.0, 0.45, (n, 3))
    c1 = rng.uniform(0.0, 0.45, (n, 3))
    background = c0[:, :, None, None] + (c1 - c0)[:, :, None, None] * mix[:, None]

    # Foreground shape: random centre and size, class colour with a small jitter.
    radius = rng.uniform(0.18, 0.32, n) * size
    cx = rng.uniform(0.3, 0.7, n) * size
    cy = rng.uniform(0.3, 0.7, n) * size
    colour = np.clip(_COLOURS[labels] + rng.normal(0, 0.05, (n, 3)), 0, 1)
    image = background
    x = xx[None] - cx[:, None, None]
    y = yy[None] - cy[:, None, None]
    for k, kind in enumerate(_SHAPES):
        rows = np.flatnonzero(labels % len(_SHAPES) == k)
        if rows.size:
            mask = _shape_masks(kind, x[rows], y[rows], radius[rows])[:, None]
            image[rows] = (1 - mask) * image[rows] + mask * colour[rows, :, None, None]
    return (2.0 * image - 1.0).astype(np.float32)


def dirichlet_split(labels: np.ndarray, n_parts: int, alpha: float, seed: int) -> list[np.ndarray]:
    """Split sample indices over ``n_parts`` owners, class proportions ~ Dirichlet(alpha) per class.

    Small ``alpha`` gives each owner few classes (non-IID); large ``alpha`` approaches an IID split.
    Every owner gets at least one sample.

    >>> parts = dirichlet_split(np.repeat(np.arange(5), 20), n_parts=4, alpha=0.5, seed=0)
    >>> sorted(np.concatenate(parts).tolist()) == list(range(100)), min(p.size for p in parts) > 0
    (True, True)
    """
    labels = np.asarray(labels)
    if n_parts < 1 or n_parts > labels.size:
        raise ValueError(f"n_parts must lie in [1, {labels.size}], got {n_parts}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be finite and > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    owner = np.empty(labels.size, dtype=np.int64)
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        share = rng.dirichlet(np.full(n_parts, alpha))
        cuts = (np.cumsum(share)[:-1] * idx.size).astype(np.int64)
        for part, chunk in enumerate(np.split(idx, cuts)):
            owner[chunk] = part
    # Give every empty owner one sample from the largest owner, so no device is idle.
    for part in range(n_parts):
        if not np.any(owner == part):
            largest = np.bincount(owner, minlength=n_parts).argmax()
            owner[rng.choice(np.flatnonzero(owner == largest))] = part
    return [np.flatnonzero(owner == part) for part in range(n_parts)]
