"""SFLAM-v0's scheduler: which resource block each selected device uploads on.

Part of the env's model (the agent does not choose it), shared by the env and the oracles. Importing
it needs scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from edgegen.envs.sflam.config import SFLAMConfig

__all__ = ["rate_matching"]


def rate_matching(config: SFLAMConfig, block_gain: np.ndarray) -> np.ndarray:
    """Scheduler rule of the env: blocks maximising the sum of full-power, equal-share rates.

    ``block_gain`` is (..., M, M) (device, block); returns the block of every device, (..., M).
    """
    block_gain = np.asarray(block_gain, dtype=np.float64)
    m = block_gain.shape[-1]
    # The equal-share rate is (B / M) log2(1 + snr): a positive factor away from log1p(snr).
    neg_rates = np.log1p(block_gain * (config.max_power_w * m / config.uplink_noise_w))
    np.negative(neg_rates, out=neg_rates)  # once for all rounds, not per call (maximize=True copies)
    flat = neg_rates.reshape(-1, m, m)
    # scipy solves one assignment per call
    cols = np.array([linear_sum_assignment(cost)[1] for cost in flat], dtype=np.intp)
    return cols.reshape(block_gain.shape[:-1])
