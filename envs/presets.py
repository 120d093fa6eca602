"""Config building shared by every env: a frozen dataclass from a preset plus overrides, type-checked."""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, TypeVar

import numpy as np

__all__ = ["build_config", "check_finite_fields", "check_ranges", "validate_config_fields"]

ConfigT = TypeVar("ConfigT")


def validate_config_fields(config: Any) -> None:
    """Type checks every field of a config dataclass can share; ValueError naming the field.

    ``float`` fields must be real numbers (ints are converted to float), ``int`` fields integers (not
    ``bool``, not ``2.5``), ``bool`` fields booleans. Range checks stay with each config; finiteness is
    :func:`check_finite_fields`.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value, hint = getattr(config, f.name), hints.get(f.name)
        where = f"{cls.__name__}.{f.name}"
        if hint is float or (hint == (float | None) and value is not None):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{where} must be a real number, got {value!r}")
            object.__setattr__(config, f.name, float(value))
        elif hint is int or (hint == (int | None) and value is not None):
            if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
                raise ValueError(f"{where} must be an integer, got {value!r}")
            object.__setattr__(config, f.name, int(value))
        elif hint is bool and not isinstance(value, bool | np.bool_):
            raise ValueError(f"{where} must be True or False, got {value!r}")
        elif _is_int_tuple(hint) and value is not None:
            for v in value:
                if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Integral):
                    raise ValueError(f"{where} must hold integers, got {value!r}")


def check_ranges(config: Any, ranges: tuple[tuple[str, float, float, str], ...]) -> None:
    """ValueError naming the first field outside its ``(name, low, high, unit)`` range (inclusive)."""
    for name, low, high, unit in ranges:
        value = getattr(config, name)
        if not low <= value <= high:
            allowed = f"in [{low:g}, {high:g}] {unit}".rstrip()
            raise ValueError(f"{type(config).__name__}.{name} must be {allowed}, got {value!r}")


def check_finite_fields(config: Any) -> None:
    """ValueError naming the first ``float`` field of a config dataclass that is NaN or infinite.

    Configs call it after their own range checks, so that a range message wins where both apply.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{type(config).__name__}.{f.name} must be finite, got {value!r}")


def _is_int_tuple(hint: Any) -> bool:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return len(args) == 1 and _is_int_tuple(args[0])
    return typing.get_origin(hint) is tuple and bool(args) and args[0] is int


def build_config(
    cls: type[ConfigT],
    presets: dict[str, dict[str, Any]],
    env_name: str,
    preset: str,
    overrides: dict[str, Any],
) -> ConfigT:
    """``cls(**presets[preset], **overrides)``: ValueError for an unknown preset, TypeError for a field."""
    if preset not in presets:
        raise ValueError(f"unknown {env_name} preset {preset!r}; choose one of {sorted(presets)}")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        # Python's own wording for the first one: tools match it (TorchRL's GymEnv probes with frameskip=).
        raise TypeError(
            f"{env_name} got an unexpected keyword argument {unknown[0]!r} (unknown {cls.__name__} "
            f"field(s) {unknown}); the keywords are preset, render_mode, config and the fields "
            f"{sorted(known)}"
        )
    return cls(**{**presets[preset], **overrides})
