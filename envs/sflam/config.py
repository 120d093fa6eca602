"""Configuration of SFLAM-v0: one frozen dataclass, validated, with named presets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from edgegen.envs.backends.flops import get_count
from edgegen.envs.presets import build_config, check_finite_fields, check_ranges, validate_config_fields
from edgegen.envs.wireless import dbm_to_w, noise_power_w

__all__ = ["PRESETS", "SFLAMConfig", "make_config"]


@dataclass(frozen=True)
class SFLAMConfig:
    """Parameters of SFLAM-v0 (defaults are assumptions, chosen so that T_max binds at the oracle)."""

    num_devices: int = 50
    """N: devices in the federation (fixed positions per episode)."""
    selected_devices: int = 10
    """M: devices selected (uniformly at random) to train in each round; also the resource blocks."""
    num_rounds: int = 20
    """R: rounds per episode."""
    batch_size: int = 32
    """Samples each selected device processes per round."""
    activation_tokens: int = 197
    """Tokens crossing the cut per sample ([CLS] + 196 patches of ViT-B/16 at 224^2)."""
    activation_width: int = 768
    """Values per token (ViT-B hidden size)."""
    device_model: str = "vit-b16-device"
    """flops.json entry of the device part (training FLOPs per sample)."""
    server_model: str = "vit-b16-server"
    """flops.json entry of the server part (training FLOPs per sample)."""
    bits_choices: tuple[int, ...] = (2, 4, 8, 16, 32)
    """Activation bit-widths the agent can pick."""
    activation_range: float = 4.0
    """Range (max - min) of the activations per tensor, for the quantizer's variance bound."""
    gradient_bits: int = 32
    """Bits per value of the activation gradients sent back."""
    flops_per_cycle: float = 128.0
    """Device FLOPs per CPU cycle."""
    device_frequency_hz: float = 2.0e9
    """Device CPU frequency."""
    kappa: float = 1e-28
    """Effective switched capacitance (device energy kappa cycles f^2)."""
    server_flops_per_s: float = 100e12
    """Edge server throughput, shared equally by the selected devices."""
    uplink_bandwidth_hz: float = 20e6
    """B: uplink bandwidth split by the agent's shares."""
    downlink_bandwidth_hz: float = 20e6
    """Downlink bandwidth per device (the server sends the gradients on its own band)."""
    max_power_dbm: float = 23.0
    """p_max of a device."""
    server_power_dbm: float = 30.0
    """Server downlink transmit power."""
    noise_psd_dbm_per_hz: float = -174.0
    """Noise power spectral density."""
    min_distance_m: float = 50.0
    """Closest device (m); distances drawn per episode uniformly."""
    max_distance_m: float = 300.0
    """Farthest device (m)."""
    shadowing_std_db: float = 6.0
    """Log-normal shadowing per device and episode."""
    latency_weight: float = 0.2
    """w_T: reward weight of the round latency (per s)."""
    energy_weight: float = 0.5
    """w_E: reward weight of the selected devices' energy (per J)."""
    quantization_weight: float = 50.0
    """w_Q: reward weight of the mean per-value quantization variance bound."""
    round_latency_s_limit: float = 2.5
    """T_max: per-round latency limit (s)."""
    backend: str = "model"
    """"model": the system model only; "live": every step also trains the tiny split ViT for one real
    round (``envs.backends.split_vit``, digits) with the selected devices and bits, accuracy in info."""
    live_alpha: float = 0.5
    """With the live backend: Dirichlet concentration of the digits split over the N devices."""

    def __post_init__(self) -> None:
        """Validate every field; raise ValueError naming the field and its allowed range."""
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
        _check(
            isinstance(self.num_devices, int) and self.num_devices >= 1,
            "num_devices",
            self.num_devices,
            ">= 1",
        )
        _check(
            isinstance(self.selected_devices, int) and 1 <= self.selected_devices <= self.num_devices,
            "selected_devices",
            self.selected_devices,
            f"an integer in [1, num_devices={self.num_devices}]",
        )
        for name in ("num_rounds", "batch_size", "activation_tokens", "activation_width"):
            _check(
                isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                name,
                getattr(self, name),
                ">= 1",
            )
        object.__setattr__(self, "bits_choices", tuple(int(b) for b in self.bits_choices))
        _check(
            len(self.bits_choices) >= 1
            and all(1 <= b <= 32 for b in self.bits_choices)
            and list(self.bits_choices) == sorted(set(self.bits_choices)),
            "bits_choices",
            self.bits_choices,
            "increasing distinct integers in [1, 32]",
        )
        _check(1 <= self.gradient_bits <= 32, "gradient_bits", self.gradient_bits, "in [1, 32]")
        for name in (
            "activation_range",
            "flops_per_cycle",
            "device_frequency_hz",
            "kappa",
            "server_flops_per_s",
            "uplink_bandwidth_hz",
            "downlink_bandwidth_hz",
            "min_distance_m",
            "round_latency_s_limit",
        ):
            value = getattr(self, name)
            _check(math.isfinite(value) and value > 0, name, value, "finite and > 0")
        _check(
            self.max_distance_m >= self.min_distance_m,
            "max_distance_m",
            self.max_distance_m,
            f">= min_distance_m ({self.min_distance_m})",
        )
        for name in ("max_power_dbm", "server_power_dbm"):
            _check(-30.0 <= getattr(self, name) <= 50.0, name, getattr(self, name), "in [-30, 50] dBm")
        _check(self.shadowing_std_db >= 0, "shadowing_std_db", self.shadowing_std_db, ">= 0")
        for name in ("latency_weight", "energy_weight", "quantization_weight"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, name, value, "finite and >= 0")
        _check(self.backend in ("model", "live"), "backend", self.backend, "'model' or 'live'")
        _check(
            math.isfinite(self.live_alpha) and self.live_alpha > 0,
            "live_alpha",
            self.live_alpha,
            "finite, > 0",
        )
        # Physical ranges: outside them the model's floating point breaks down (inf energies, NaN rates).
        check_ranges(
            self,
            (
                ("activation_range", 0.0, 1e6, ""),
                ("flops_per_cycle", 1e-3, 1e6, "FLOP/cycle"),
                ("device_frequency_hz", 0.0, 1e12, "Hz"),
                ("kappa", 0.0, 1e-20, ""),
                ("server_flops_per_s", 1e6, 1e18, "FLOP/s"),
                ("uplink_bandwidth_hz", 1.0, 1e12, "Hz"),
                ("downlink_bandwidth_hz", 1.0, 1e12, "Hz"),
            ),
        )
        for name in ("device_model", "server_model"):
            get_count(getattr(self, name))  # ValueError naming the missing architecture
        check_finite_fields(self)

    # cached: the env's step reads these constants every round (the dataclass is frozen)
    @cached_property
    def device_cycles(self) -> float:
        """CPU cycles of the device part (forward + backward) for one round's batch."""
        return self.batch_size * get_count(self.device_model).training_flops / self.flops_per_cycle

    @cached_property
    def server_flops(self) -> float:
        """Server FLOPs (forward + backward incl. the activation gradient) per device and round."""
        return self.batch_size * get_count(self.server_model).training_flops

    @cached_property
    def activation_values(self) -> int:
        """Values uploaded per device and round (batch x tokens x width)."""
        return self.batch_size * self.activation_tokens * self.activation_width

    @cached_property
    def max_power_w(self) -> float:
        """p_max in W."""
        return float(dbm_to_w(self.max_power_dbm))

    @cached_property
    def server_power_w(self) -> float:
        """Server power in W."""
        return float(dbm_to_w(self.server_power_dbm))

    @cached_property
    def uplink_noise_w(self) -> float:
        """Noise power over the whole uplink band (N0 B)."""
        return float(noise_power_w(self.noise_psd_dbm_per_hz, self.uplink_bandwidth_hz))

    @cached_property
    def downlink_noise_w(self) -> float:
        """Noise power over one device's downlink band."""
        return float(noise_power_w(self.noise_psd_dbm_per_hz, self.downlink_bandwidth_hz))


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ValueError(f"SFLAMConfig.{name} must be {allowed}, got {value!r}")


PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "small": {"num_devices": 10, "selected_devices": 3},
}
"""Named overrides: "default" (N = 50, M = 10) and "small" (N = 10, M = 3: brute-force sized)."""


def make_config(preset: str = "default", **overrides: Any) -> SFLAMConfig:
    """Build a config from a preset name plus field overrides."""
    return build_config(SFLAMConfig, PRESETS, "SFLAM-v0", preset, overrides)
