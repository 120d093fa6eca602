"""Shared by every env: its config from a preset plus overrides, and its constructor's argument checks."""

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


def env_config(
    owner: str, config: ConfigT | None, make_config: Any, preset: str, overrides: dict[str, Any]
) -> ConfigT:
    """An env's config: the ready ``config``, or ``make_config(preset, **overrides)``, never both."""
    if config is not None and overrides:
        raise ValueError(f"pass either config or field overrides to {owner}, not both")
    return config if config is not None else make_config(preset, **overrides)


def check_render_mode(render_mode: str | None, render_modes: list[str]) -> None:
    """ValueError unless ``render_mode`` is None or one of ``render_modes``."""
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be one of {render_modes} or None, got {render_mode!r}")
