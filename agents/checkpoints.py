"""What a checkpoint file holds, and one-sentence errors when it does not fit the loader or the env."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from edgegen.envs.cmdp import get_cost_spec

__all__ = ["CheckpointMismatchError", "check_env_fits", "checkpoint_kind"]


class CheckpointMismatchError(ValueError):
    """A checkpoint loaded by the wrong algorithm, or into an env it was not trained on."""


def checkpoint_kind(path: str | Path) -> str:
    """The checkpoint's format, read without unpickling anything.

    "CVPO" (an SB3 zip whose policy is a ``CVPOPolicy``), "stable-baselines3" (another SB3 zip:
    ``data`` + ``policy.pth``), "CVPO (edgegen-gym 0.1)" (``cvpo.json`` + ``weights.pt``) or "unknown".
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            data = archive.read("data") if "data" in names else b""
    except (OSError, zipfile.BadZipFile):
        return "unknown"
    if "cvpo.json" in names:
        return "CVPO (edgegen-gym 0.1)"
    if data:
        return "CVPO" if b"CVPOPolicy" in data else "stable-baselines3"
    return "unknown"


def check_env_fits(
    path: str | Path,
    env: Any,
    observation_shape: tuple[int, ...],
    action_shape: tuple[int, ...],
    cost_names: tuple[str, ...],
) -> None:
    """Raise :class:`CheckpointMismatchError` if ``env``'s spaces or costs differ from the checkpoint's."""
    env_obs = tuple(env.observation_space.shape)
    env_act = tuple(env.action_space.shape)
    env_costs = get_cost_spec(env).names
    label = getattr(getattr(env, "spec", None), "id", None) or type(env).__name__
    for what, saved, given in (
        ("observations", observation_shape, env_obs),
        ("actions", action_shape, env_act),
    ):
        if tuple(saved) != tuple(given):
            raise CheckpointMismatchError(
                f"{path} was trained on {what} of shape {tuple(saved)}, but {label} has "
                f"{tuple(given)}: load it into the env it was trained on"
            )
    if tuple(cost_names) != tuple(env_costs):
        raise CheckpointMismatchError(
            f"{path} was trained on the costs {list(cost_names)}, but {label} has {list(env_costs)}: "
            "load it into the env it was trained on"
        )
