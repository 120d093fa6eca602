"""Shared by every env's config module: a frozen config dataclass from a named preset plus overrides."""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

__all__ = ["config_from_preset"]

ConfigT = TypeVar("ConfigT")


def config_from_preset(
    cls: type[ConfigT],
    presets: dict[str, dict[str, Any]],
    env_name: str,
    preset: str,
    overrides: dict[str, Any],
) -> ConfigT:
    """``cls(**presets[preset], **overrides)``; ValueError naming an unknown preset or field."""
    if preset not in presets:
        raise ValueError(f"unknown {env_name} preset {preset!r}; choose one of {sorted(presets)}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
    return cls(**{**presets[preset], **overrides})
