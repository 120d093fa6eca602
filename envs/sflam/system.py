"""SFLAM-v0 system model: latency, energy and quantization error of one split-learning round.

Pure, vectorised numpy functions (leading batch axes broadcast), shared by the env, the BCD oracle
and its brute-force check. Per selected device n, on the resource block it is matched to:

- device compute (patch embedding, forward + backward): ``C / f`` s and ``kappa C f^2`` J;
- uplink of ``S_n = V b_n + 64`` bits (V activations at b_n bits, one min-max header:
  ``quantization.payload_bits``) at
  ``r_n = beta_n B log2(1 + p_n g_n / (beta_n B N0))`` with bandwidth share beta_n and power p_n;
- server compute (blocks + head, forward + backward) with the server's throughput split M ways;
- downlink of the activation gradients (V values at 32 bits) on the device's downlink band.

Round latency = max over devices; energy = sum of device compute and uplink energy; the
quantization term is the mean over devices of the per-value variance bound ``A^2 / (4 (2^b - 1)^2)``.
Objective (to minimise) ``w_T T + w_E E + w_Q Q``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from edgegen.envs.quantization import payload_bits, variance_bound
from edgegen.envs.sflam.config import SFLAMConfig

__all__ = [
    "RoundOutcome",
    "RoundTables",
    "device_compute_energy_j",
    "equal_share_rates_bps",
    "fixed_latency_s",
    "per_value_quantization_error",
    "quantization_term",
    "round_outcome",
    "uplink_rate_bps",
    "upload_bits",
]


def upload_bits(config: SFLAMConfig, bits: ArrayLike) -> np.ndarray:
    """Bits a device uploads per round at activation bit-width ``bits`` (a range header if < 32).

    Below 32 bits the activations are quantized (``quantization.payload_bits``); at 32 they are sent
    as they are, without a header.
    """
    b = np.asarray(bits, dtype=np.int64)
    return np.where(b < 32, payload_bits(config.activation_values, b), config.activation_values * b * 1.0)


def per_value_quantization_error(config: SFLAMConfig, bits: ArrayLike) -> np.ndarray:
    """Per-value variance bound of the activation quantizer, ``A^2 / (4 (2^b - 1)^2)``; 0 at 32 bits.

    It is ``quantization.variance_bound`` of one value; 32 bits means full precision (no quantizer).
    """
    b = np.asarray(bits, dtype=np.int64)
    return (b < 32) * variance_bound(1, config.activation_range, b)


def quantization_term(config: SFLAMConfig, bits: ArrayLike) -> np.ndarray:
    """Mean over the last axis of :func:`per_value_quantization_error`."""
    per_device = per_value_quantization_error(config, bits)
    return np.add.reduce(per_device, axis=-1) / per_device.shape[-1]


def device_compute_energy_j(config: SFLAMConfig) -> float:
    """Energy of one device's compute in a round, ``kappa C f^2`` (J)."""
    return config.kappa * config.device_cycles * config.device_frequency_hz**2


def uplink_rate_bps(config: SFLAMConfig, share: ArrayLike, power_w: ArrayLike, gain: ArrayLike) -> np.ndarray:
    """``beta B log2(1 + p g / (beta B N0))`` for bandwidth share beta (> 0) of the uplink."""
    share = np.asarray(share, dtype=np.float64)
    snr = np.asarray(power_w, dtype=np.float64) * np.asarray(gain) / (share * config.uplink_noise_w)
    return share * config.uplink_bandwidth_hz * np.log2(1.0 + snr)


def equal_share_rates_bps(config: SFLAMConfig, block_gain: np.ndarray) -> np.ndarray:
    """Rates of every device on every block at full power and an equal bandwidth share, (..., M, M)."""
    m = block_gain.shape[-1]
    return uplink_rate_bps(config, 1.0 / m, config.max_power_w, block_gain)


def fixed_latency_s(config: SFLAMConfig, downlink_gain: ArrayLike) -> np.ndarray:
    """The latency the decisions do not change: device compute + server compute + downlink, per device."""
    gain = np.asarray(downlink_gain, dtype=np.float64)
    compute = config.device_cycles / config.device_frequency_hz
    server = config.selected_devices * config.server_flops / config.server_flops_per_s
    rate = config.downlink_bandwidth_hz * np.log2(
        1.0 + config.server_power_w * gain / config.downlink_noise_w
    )
    downlink = config.activation_values * config.gradient_bits / rate
    return compute + server + downlink


@dataclass(frozen=True)
class RoundOutcome:
    """Per-device and round totals of one round (arrays broadcast over leading batch axes)."""

    latency_s: np.ndarray
    round_latency_s: np.ndarray
    upload_time_s: np.ndarray
    energy_j: np.ndarray
    upload_energy_j: np.ndarray
    quantization: np.ndarray
    objective: np.ndarray


def round_outcome(
    config: SFLAMConfig,
    gain: ArrayLike,
    fixed_s: ArrayLike,
    bits: ArrayLike,
    share: ArrayLike,
    power_w: ArrayLike,
) -> RoundOutcome:
    """Evaluate one round: ``gain`` is each device's gain on its matched block, the rest its decisions.

    Shares must be > 0 (a device with no bandwidth never finishes; the env floors weights at 1/1024
    of the largest).
    """
    upload = upload_bits(config, bits) / uplink_rate_bps(config, share, power_w, gain)
    latency = fixed_s + upload
    compute_energy = device_compute_energy_j(config)
    upload_energy = power_w * upload
    energy = np.add.reduce(compute_energy + upload_energy, axis=-1)
    round_latency = np.maximum.reduce(latency, axis=-1)
    quant = quantization_term(config, bits)
    objective = (
        config.latency_weight * round_latency
        + config.energy_weight * energy
        + config.quantization_weight * quant
    )
    return RoundOutcome(latency, round_latency, upload, energy, upload_energy, quant, objective)


@dataclass(frozen=True)
class RoundTables:
    """Per-bit-width constants of :func:`round_outcome`, for the env's per-step evaluation.

    ``round_outcome_indexed(tables, ...)`` equals ``round_outcome(config, ...)`` (tested); it takes the
    index of each device's bit-width in ``config.bits_choices`` and ``gain / (B N0)``.
    """

    upload_s_per_rate: np.ndarray  # upload bits / (B / ln 2): upload time = this / (beta ln(1 + snr))
    quantization: np.ndarray
    compute_energy_j: float
    latency_weight: float
    energy_weight: float
    quantization_weight: float

    @classmethod
    def from_config(cls, config: SFLAMConfig) -> RoundTables:
        """Tables of ``config``."""
        choices = np.asarray(config.bits_choices)
        return cls(
            upload_s_per_rate=upload_bits(config, choices) * np.log(2.0) / config.uplink_bandwidth_hz,
            quantization=per_value_quantization_error(config, choices),
            compute_energy_j=device_compute_energy_j(config),
            latency_weight=config.latency_weight,
            energy_weight=config.energy_weight,
            quantization_weight=config.quantization_weight,
        )


def round_outcome_indexed(
    tables: RoundTables,
    gain_over_noise: np.ndarray,
    fixed_s: np.ndarray,
    bits_index: np.ndarray,
    share: np.ndarray,
    power_w: np.ndarray,
) -> tuple[np.ndarray, Any, Any, Any, Any]:
    """One round of M devices: (latency per device, round latency, energy, quantization, objective).

    Written for the env's step: one pass, in-place where it can, on M values. Energy and objective
    come out as numpy scalars (the dot product's type), the others as Python floats.
    """
    rate = power_w * gain_over_noise
    rate /= share
    np.log1p(rate, out=rate)
    rate *= share  # the uplink rate over B / ln 2
    upload = tables.upload_s_per_rate[bits_index]
    upload /= rate
    latency = upload + fixed_s
    m = latency.shape[-1]
    if latency.ndim > 1:  # a batch of rounds (the batched env): the same sums as ufunc reductions
        energy_b = tables.compute_energy_j * m + (power_w * upload).sum(axis=-1)
        quant_b = tables.quantization[bits_index].sum(axis=-1) / m
        latency_b = latency.max(axis=-1)
        objective_b = (
            tables.latency_weight * latency_b
            + tables.energy_weight * energy_b
            + tables.quantization_weight * quant_b
        )
        return latency, latency_b, energy_b, quant_b, objective_b  # type: ignore[return-value,unused-ignore]
    round_latency = max(latency.tolist())  # builtins on M floats beat a ufunc reduction's overhead
    energy = tables.compute_energy_j * m + power_w.dot(upload)  # a numpy scalar, as the env's info wants
    quant = sum(tables.quantization[bits_index].tolist()) / m
    objective = (
        tables.latency_weight * round_latency
        + tables.energy_weight * energy
        + tables.quantization_weight * quant
    )
    return latency, round_latency, energy, quant, objective
