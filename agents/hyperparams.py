"""Per-env hyperparameters as data: ``agents/hyperparams/<algo>.yml``, keyed by env id, with a default.

>>> settings, source = load_hyperparams("cvpo", "edgegen/MEG-v0")
>>> settings["policy_kwargs"]["min_std"], source
(0.1, 'agents/hyperparams/cvpo.yml#edgegen/MEG-v0')
>>> load_hyperparams("cvpo", "my_pkg:MyCMDP-v0")[1]  # an env without an entry
'agents/hyperparams/cvpo.yml#default'
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["RECIPES_DIR", "load_hyperparams", "recipe_algos", "split_env_wrapper"]

RECIPES_DIR = Path(__file__).with_name("hyperparams")


@cache
def _read(algo: str) -> dict[str, dict[str, Any]]:
    import yaml

    path = RECIPES_DIR / f"{algo}.yml"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("default"), dict):
        raise ValueError(f"{path} must map env ids (and 'default') to settings")
    return data


def recipe_algos() -> tuple[str, ...]:
    """The algorithms that have a recipe file."""
    return tuple(sorted(p.stem for p in RECIPES_DIR.glob("*.yml")))


def load_hyperparams(algo: str, env_id: str) -> tuple[dict[str, Any], str]:
    """The recipe of ``algo`` for ``env_id`` (its own entry, else ``default``) and where it came from.

    ``env_id`` may carry a ``module:`` prefix. Returns a fresh dict (safe to modify) and the source
    as ``agents/hyperparams/<algo>.yml#<key>``.
    """
    if algo not in recipe_algos():
        raise ValueError(f"no recipe file for algo {algo!r}; recipes exist for {list(recipe_algos())}")
    recipes = _read(algo)
    key = env_id.split(":")[-1]
    key = key if key in recipes else "default"
    return copy.deepcopy(recipes[key]), f"agents/hyperparams/{algo}.yml#{key}"


def split_env_wrapper(settings: dict[str, Any]) -> tuple[dict[str, Any], type | None]:
    """``settings`` without ``env_wrapper``, and the wrapper class that key names (dotted path).

    rl-baselines3-zoo's key: a recipe can ask for its training envs to be wrapped (e.g.
    ``edgegen.envs.cmdp.NormalizeCosts``). ValueError unless the path names a gymnasium wrapper.
    """
    import importlib

    import gymnasium as gym

    rest = dict(settings)
    path = rest.pop("env_wrapper", None)
    if path is None:
        return rest, None
    module_name, _, name = str(path).rpartition(".")
    try:
        wrapper = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"env_wrapper {path!r} names no importable class") from None
    if not (isinstance(wrapper, type) and issubclass(wrapper, gym.Wrapper)):
        raise ValueError(f"env_wrapper {path!r} is not a gymnasium.Wrapper")
    return rest, wrapper
