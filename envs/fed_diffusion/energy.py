"""Per-round energy model of on-demand quantized federated diffusion (pure, vectorised numpy).

Device k computes ``cycles_k = I C_k D_k`` CPU cycles at frequency ``f_k`` and uploads
``S_k = d b_k + 64`` bits at power ``p_k`` over its bandwidth ``B_k``:

- computation time ``cycles_k / f_k``, energy ``kappa cycles_k f_k^2``;
- upload rate ``B_k log2(1 + p_k h_k / (N0 B_k))``, energy ``p_k t_k``;
- the round fails for device k when its computation plus upload time exceeds the budget ``T``.

Every array broadcasts over leading batch axes (rounds, episodes), so the env, the oracle and the
tests call the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

__all__ = ["LATE_RTOL", "RoundOutcome", "RoundProblem", "device_outcome", "round_outcome"]

LATE_RTOL = 1e-9
"""A device is late when ``compute_time + upload_time > T (1 + LATE_RTOL)`` (float round-off slack)."""


@dataclass(frozen=True, eq=False)
class RoundProblem:
    """The physical data of one round (arrays of shape ``(..., K)``; scalars broadcast).

    Arrays broadcast against ``gain``, which carries the full shape (e.g. per-device constants of
    shape ``(K,)`` against per-round gains of shape ``(R, K)``).

    Args:
        cycles: CPU cycles of the local update, ``I C_k D_k``.
        payload_bits: upload size ``S_k`` in bits.
        gain: linear channel power gain ``h_k``.
        bandwidth_hz: uplink bandwidth ``B_k`` in Hz.
        noise_power_w: noise power ``N0 B_k`` in W.
        round_time_s: time budget ``T`` of the round in s.
        max_frequency_hz: CPU frequency cap ``f_max`` in Hz.
        max_power_w: transmit power cap ``p_max`` in W.
        kappa: effective switched capacitance (J s^2 / cycle^3).
    """

    cycles: np.ndarray
    payload_bits: np.ndarray
    gain: np.ndarray
    bandwidth_hz: np.ndarray
    noise_power_w: np.ndarray
    round_time_s: float
    max_frequency_hz: float
    max_power_w: float
    kappa: float

    @cached_property
    def min_compute_time_s(self) -> np.ndarray:
        """Computation time at ``f_max``."""
        return self.cycles / self.max_frequency_hz

    @cached_property
    def noise_over_gain_w(self) -> np.ndarray:
        """``a = N0 B / h``: the power that gives an SNR of 1."""
        return self.noise_power_w / self.gain

    @cached_property
    def upload_scale_s(self) -> np.ndarray:
        """``c = S ln 2 / B``, so that the power needed to upload in time t is ``a (exp(c/t) - 1)``."""
        return self.payload_bits * math.log(2.0) / self.bandwidth_hz

    @cached_property
    def min_upload_time_s(self) -> np.ndarray:
        """Upload time at ``p_max``."""
        rate = self.bandwidth_hz * np.log2(1.0 + self.max_power_w / self.noise_over_gain_w)
        return self.payload_bits / rate

    @cached_property
    def feasible(self) -> np.ndarray:
        """Devices that can meet the deadline at all (at ``f_max`` and ``p_max``)."""
        return self.min_compute_time_s + self.min_upload_time_s <= self.round_time_s

    def __getitem__(self, index: int | slice | tuple) -> RoundProblem:
        """The sub-problem of a batch index (e.g. one round of an episode)."""
        shape = self.gain.shape
        return RoundProblem(
            cycles=np.broadcast_to(self.cycles, shape)[index],
            payload_bits=np.broadcast_to(self.payload_bits, shape)[index],
            gain=self.gain[index],
            bandwidth_hz=np.broadcast_to(self.bandwidth_hz, shape)[index],
            noise_power_w=np.broadcast_to(self.noise_power_w, shape)[index],
            round_time_s=self.round_time_s,
            max_frequency_hz=self.max_frequency_hz,
            max_power_w=self.max_power_w,
            kappa=self.kappa,
        )


class RoundOutcome(NamedTuple):
    """What each device does and spends in a round (arrays shaped like the problem)."""

    frequency_hz: np.ndarray
    power_w: np.ndarray
    compute_time_s: np.ndarray
    upload_time_s: np.ndarray
    compute_energy_j: np.ndarray
    upload_energy_j: np.ndarray
    late: np.ndarray

    @property
    def energy_j(self) -> np.ndarray:
        """Energy per device."""
        return self.compute_energy_j + self.upload_energy_j


def round_outcome(problem: RoundProblem, upload_share: np.ndarray) -> RoundOutcome:
    """Apply an upload time share ``s_k`` in [0, 1] of the budget to each device.

    The device plans to upload for ``s T`` and compute for ``(1 - s) T``; frequency and power follow
    from the tight time and rate constraints, capped at ``f_max`` and ``p_max``. A capped device takes
    longer than planned, so it misses the deadline.
    """
    return device_outcome(
        np.asarray(upload_share, dtype=np.float64) * problem.round_time_s,
        problem.round_time_s,
        problem.cycles,
        problem.kappa * problem.cycles,
        problem.min_compute_time_s,
        problem.min_upload_time_s,
        problem.noise_over_gain_w,
        problem.upload_scale_s,
    )


def device_outcome(
    upload_plan_s: np.ndarray,
    round_time_s: float,
    cycles: np.ndarray,
    kappa_cycles: np.ndarray,
    min_compute_time_s: np.ndarray,
    min_upload_time_s: np.ndarray,
    noise_over_gain_w: np.ndarray,
    upload_scale_s: np.ndarray,
) -> RoundOutcome:
    """:func:`round_outcome` from the planned upload time and the problem's derived arrays.

    The env's hot path calls this with per-episode arrays it computed once (``kappa_cycles`` is
    ``kappa * cycles``).
    """
    compute_time = np.maximum(round_time_s - upload_plan_s, min_compute_time_s)
    upload_time = np.maximum(upload_plan_s, min_upload_time_s)
    frequency = cycles / compute_time
    # upload_time >= t_min, so this power is <= p_max by the definition of t_min (up to round-off).
    power = noise_over_gain_w * np.expm1(upload_scale_s / upload_time)
    return RoundOutcome(
        frequency_hz=frequency,
        power_w=power,
        compute_time_s=compute_time,
        upload_time_s=upload_time,
        compute_energy_j=kappa_cycles * frequency * frequency,
        upload_energy_j=power * upload_time,
        late=compute_time + upload_time > round_time_s * (1.0 + LATE_RTOL),
    )
