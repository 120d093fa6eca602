"""Configuration of FedDiffusion-v0: one frozen dataclass, validated, with named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgegen.envs.backends.flops import get_count
from edgegen.envs.presets import build_config, check_finite_fields, check_ranges, validate_config_fields
from edgegen.envs.quantization import RANGE_HEADER_BITS
from edgegen.envs.wireless import dbm_to_w, noise_power_w, path_loss_db_macro, shannon_rate_bps

__all__ = ["PRESETS", "FedDiffusionConfig", "make_config"]

Quantization = Literal["on_demand", "fixed", "none"]


@dataclass(frozen=True)
class FedDiffusionConfig:
    """Parameters of FedDiffusion-v0.

    Defaults are assumptions, chosen so that at the oracle both computation and upload energy are a
    sizeable share of the total and the deadline binds (see docs/architecture.md).
    """

    num_devices: int = 10
    """K: devices that train in every round."""
    num_rounds: int = 50
    """R: federated rounds per episode (the episode length)."""
    round_time_s: float = 60.0
    """T: time budget of a round (computation + upload) in s."""
    model: str = "ddpm-cifar10"
    """Architecture in envs/assets/flops.json whose parameters are uploaded and whose training FLOPs
    (forward + backward per sample) set the computation."""
    flops_per_cycle: float = 128.0
    """FLOPs a device executes per CPU cycle (assumption: a mobile SoC with 64 fp32 FMA lanes)."""
    local_iterations: int = 1
    """I: local passes over the device's data per round."""
    min_samples: int = 40
    """Smallest local data set D_k (samples), drawn per episode uniformly in [min, max]."""
    max_samples: int = 80
    """Largest local data set D_k (samples)."""
    max_frequency_hz: float = 2.0e9
    """f_max: CPU frequency cap in Hz."""
    kappa: float = 1e-28
    """Effective switched capacitance of the CPU (energy kappa cycles f^2)."""
    max_power_dbm: float = 23.0
    """p_max: transmit power cap in dBm (converted once to W)."""
    total_bandwidth_hz: float = 20e6
    """B: uplink bandwidth in Hz, shared equally by the K devices."""
    noise_psd_dbm_per_hz: float = -174.0
    """N0: noise power spectral density in dBm/Hz."""
    min_distance_m: float = 50.0
    """Closest device distance to the server (m), drawn per episode uniformly."""
    max_distance_m: float = 200.0
    """Farthest device distance to the server (m)."""
    shadowing_std_db: float = 8.0
    """Log-normal shadowing standard deviation in dB (per episode)."""
    rayleigh_fading: bool = True
    """Draw Rayleigh block fading |h|^2 ~ Exp(1) independently every round."""
    demanded_bits_choices: tuple[int, ...] = (4, 8, 16)
    """Bit-widths a device may demand; each device draws one per episode."""
    demanded_bits: tuple[int, ...] | None = None
    """Fixed per-device demands (length K) instead of random draws."""
    quantization: Quantization = "on_demand"
    """Upload scheme: "on_demand" (the demanded bits), "fixed" (fixed_bits for all), "none" (32)."""
    fixed_bits: int = 8
    """Bit-width of the "fixed" scheme."""
    deadline_miss_fraction_limit: float = 0.05
    """Per-round limit on the fraction of devices that miss the deadline."""
    energy_scale_j: float = 10.0
    """Reward = -(round energy) / energy_scale_j, so per-step rewards are O(1)."""
    oracle_in_info: bool = False
    """Also put the oracle's energy of every round in info (``oracle_energy_j``). It costs one vectorised
    KKT solve per episode at reset (about 0.13 ms, ~20 % of the env's steps/s), so it is off by default;
    the oracle is then solved on the first ``oracle_action()`` / ``oracle_energy_j()`` call of an episode."""

    backend: Literal["model", "live"] = "model"
    """"model": the system model only; "live": every step also runs one real FedAvg round of a small
    DDPM (``envs.backends.federated_ddpm``) with the bits in force, and reports its quality in info."""
    live_quality_weight: float = 0.0
    """With the live backend: reward -= weight x held-out denoising loss (0: energy only)."""
    live_fd_every: int = 0
    """With the live backend: Frechet distance every n rounds (0: only after the last round)."""

    def __post_init__(self) -> None:
        """Validate every field; raise ValueError naming the field and its allowed range."""
        for name in ("demanded_bits_choices", "demanded_bits"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(np.atleast_1d(value).tolist()))
        validate_config_fields(self)
        _check(
            -220.0 <= self.noise_psd_dbm_per_hz <= -100.0,
            "noise_psd_dbm_per_hz",
            self.noise_psd_dbm_per_hz,
            "in [-220, -100] dBm/Hz",
        )
        _check(self.max_distance_m <= 1e5, "max_distance_m", self.max_distance_m, "<= 1e5 m")
        _check(self.min_distance_m >= 1.0, "min_distance_m", self.min_distance_m, ">= 1 m")
        _check(self.shadowing_std_db <= 30.0, "shadowing_std_db", self.shadowing_std_db, "in [0, 30] dB")
        _check(self.num_devices >= 1, "num_devices", self.num_devices, ">= 1")
        _check(self.num_rounds >= 1, "num_rounds", self.num_rounds, ">= 1")
        for name in (
            "round_time_s",
            "flops_per_cycle",
            "max_frequency_hz",
            "kappa",
            "total_bandwidth_hz",
            "min_distance_m",
            "energy_scale_j",
        ):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, name, value, "> 0 (finite)")
        _check(self.local_iterations >= 1, "local_iterations", self.local_iterations, ">= 1")
        _check(self.min_samples >= 1, "min_samples", self.min_samples, ">= 1")
        _check(
            self.max_samples >= self.min_samples,
            "max_samples",
            self.max_samples,
            f">= min_samples ({self.min_samples})",
        )
        _check(
            self.max_distance_m >= self.min_distance_m,
            "max_distance_m",
            self.max_distance_m,
            f">= min_distance_m ({self.min_distance_m})",
        )
        _check(
            -30.0 <= self.max_power_dbm <= 50.0,
            "max_power_dbm",
            self.max_power_dbm,
            "[-30, 50] dBm (1 uW .. 100 W)",
        )
        _check(
            math.isfinite(self.noise_psd_dbm_per_hz),
            "noise_psd_dbm_per_hz",
            self.noise_psd_dbm_per_hz,
            "finite",
        )
        _check(self.shadowing_std_db >= 0, "shadowing_std_db", self.shadowing_std_db, ">= 0")
        _check(self.backend in ("model", "live"), "backend", self.backend, "'model' or 'live'")
        _check(
            math.isfinite(self.live_quality_weight) and self.live_quality_weight >= 0,
            "live_quality_weight",
            self.live_quality_weight,
            ">= 0 (finite)",
        )
        _check(self.live_fd_every >= 0, "live_fd_every", self.live_fd_every, ">= 0")
        _check(
            0 < self.deadline_miss_fraction_limit <= 1,
            "deadline_miss_fraction_limit",
            self.deadline_miss_fraction_limit,
            "(0, 1]",
        )
        _check(
            self.quantization in ("on_demand", "fixed", "none"),
            "quantization",
            self.quantization,
            "one of 'on_demand', 'fixed', 'none'",
        )
        _check_bits("fixed_bits", (self.fixed_bits,))
        _check(
            len(self.demanded_bits_choices) >= 1,
            "demanded_bits_choices",
            self.demanded_bits_choices,
            "non-empty",
        )
        _check_bits("demanded_bits_choices", self.demanded_bits_choices)
        if self.demanded_bits is not None:
            _check(
                len(self.demanded_bits) == self.num_devices,
                "demanded_bits",
                self.demanded_bits,
                f"length num_devices ({self.num_devices})",
            )
            _check_bits("demanded_bits", self.demanded_bits)
        # Physical ranges: outside them the model's floating point breaks down (inf energies, NaN roots).
        check_ranges(
            self,
            (
                ("round_time_s", 0.0, 1e6, "s"),
                ("flops_per_cycle", 1e-3, 1e6, "FLOP/cycle"),
                ("max_frequency_hz", 0.0, 1e12, "Hz"),
                ("kappa", 0.0, 1e-20, ""),
                ("total_bandwidth_hz", 1.0, 1e15, "Hz"),
            ),
        )
        get_count(self.model)  # raises a clear error for an unknown architecture
        shortest = self.nominal_min_round_time_s
        _check(
            shortest < self.round_time_s,
            "round_time_s",
            self.round_time_s,
            f"> {shortest:.3g} s (the farthest, most loaded device at f_max and p_max, mean channel, "
            "largest bits, needs that long)",
        )
        check_finite_fields(self)

    @property
    def num_params(self) -> int:
        """Parameters of the uploaded model."""
        return get_count(self.model).params

    @property
    def cycles_per_sample(self) -> float:
        """C: CPU cycles to train on one sample (counted training FLOPs / FLOPs per cycle)."""
        return get_count(self.model).training_flops / self.flops_per_cycle

    @property
    def max_power_w(self) -> float:
        """p_max in W."""
        return float(dbm_to_w(self.max_power_dbm))

    @property
    def device_bandwidth_hz(self) -> float:
        """B_k = B / K."""
        return self.total_bandwidth_hz / self.num_devices

    @property
    def noise_power_w(self) -> float:
        """N0 B_k in W."""
        return float(noise_power_w(self.noise_psd_dbm_per_hz, self.device_bandwidth_hz))

    @property
    def upload_bits_choices(self) -> tuple[int, ...]:
        """Bit-widths that can be in force under this quantization scheme."""
        if self.quantization == "none":
            return (32,)
        if self.quantization == "fixed":
            return (self.fixed_bits,)
        return self.demanded_bits if self.demanded_bits is not None else self.demanded_bits_choices

    @property
    def nominal_min_round_time_s(self) -> float:
        """Time the worst device needs at f_max and p_max over its mean channel (no fading/shadowing)."""
        compute_s = self.local_iterations * self.cycles_per_sample * self.max_samples / self.max_frequency_hz
        gain = 10.0 ** (-path_loss_db_macro(self.max_distance_m) / 10.0)
        rate = shannon_rate_bps(self.device_bandwidth_hz, self.max_power_w, gain, self.noise_power_w)
        bits = self.num_params * max(self.upload_bits_choices) + RANGE_HEADER_BITS
        return float(compute_s + bits / rate)


def _check(ok: bool | np.bool_, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"FedDiffusionConfig.{name} must be {allowed}, got {value!r}")


def _check_bits(name: str, values: tuple[int, ...]) -> None:
    for v in values:
        _check(isinstance(v, int | np.integer) and 1 <= v <= 32, name, values, "integers in [1, 32]")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "static": {"rayleigh_fading": False, "shadowing_std_db": 0.0},
    "large": {"num_devices": 50, "total_bandwidth_hz": 100e6},
}
"""Named overrides: "default"; "static" (path loss only); "large" (K = 50 with 5x the bandwidth)."""


def make_config(preset: str = "default", **overrides: Any) -> FedDiffusionConfig:
    """Build a config from a preset name plus field overrides."""
    return build_config(FedDiffusionConfig, PRESETS, "FedDiffusion-v0", preset, overrides)
