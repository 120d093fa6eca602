"""Small renderers shared by the envs: a one-line text state and a cost-vs-budget bar chart."""

from __future__ import annotations

import numpy as np

__all__ = ["cost_bar_chart"]

_HEIGHT, _BAR_WIDTH, _GAP = 96, 24, 8


def cost_bar_chart(costs: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """An RGB image (uint8, H x W x 3) with one bar per cost, scaled so that the limit is at 2/3.

    Bars are green under their limit and red over it; the grey line marks the limits.
    """
    ratios = np.asarray(costs, dtype=np.float64) / np.asarray(limits, dtype=np.float64)
    n = ratios.size
    width = _GAP + n * (_BAR_WIDTH + _GAP)
    image = np.full((_HEIGHT, width, 3), 255, dtype=np.uint8)
    limit_row = _HEIGHT - round(_HEIGHT * 2 / 3)
    for i, ratio in enumerate(ratios):
        height = round(min(max(ratio, 0.0), 1.5) * _HEIGHT * 2 / 3)
        left = _GAP + i * (_BAR_WIDTH + _GAP)
        colour = (200, 40, 40) if ratio > 1.0 else (40, 160, 60)
        image[_HEIGHT - height :, left : left + _BAR_WIDTH] = colour
    image[limit_row, :] = (90, 90, 90)
    return image
