"""The envs' analytic oracles as policies with the stable-baselines3 ``predict`` interface."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["BaselinePolicy", "OraclePolicy", "RandomPolicy"]


class OraclePolicy:
    """Act with the oracle of the env it is bound to (``env.unwrapped.oracle_action()``).

    The oracle reads the env's full state (channels, demands), not the observation, so the policy
    must be bound to the very env (or vector env) that produced the observation it is asked about.

    Args:
        env: a Gymnasium env, a ``gymnasium.vector.VectorEnv`` or a stable-baselines3 ``VecEnv``
            whose underlying envs define ``oracle_action()``.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        if hasattr(env, "env_method"):  # stable-baselines3 VecEnv
            self._act = lambda: np.stack(env.env_method("oracle_action"))
        elif isinstance(env, gym.vector.VectorEnv):
            self._act = lambda: np.stack(env.call("oracle_action"))  # type: ignore[attr-defined]
        elif hasattr(env, "unwrapped") and hasattr(env.unwrapped, "oracle_action"):
            self._act = env.unwrapped.oracle_action
        else:
            raise ValueError(
                f"{type(env).__name__} has no oracle: OraclePolicy needs an env whose unwrapped env "
                "defines oracle_action() (every edgegen env does)"
            )

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Return ``(action, None)`` like a stable-baselines3 policy; the observation is not used."""
        return self._act(), None


class BaselinePolicy:
    """Act with one of the env's named heuristics (``env.unwrapped.baseline_action(name)``).

    Args:
        env: a Gymnasium env whose unwrapped env lists ``name`` in ``baseline_names``.
        name: the baseline, e.g. ``"equal_split"`` on FedDiffusion-v0.
    """

    def __init__(self, env: gym.Env, name: str) -> None:
        names = getattr(env.unwrapped, "baseline_names", ())
        if name not in names:
            raise ValueError(
                f"{env.unwrapped.__class__.__name__} has no baseline {name!r}; it has {list(names)}"
            )
        self.env, self.name = env, name

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Return ``(action, None)``; the observation is not used."""
        return self.env.unwrapped.baseline_action(self.name), None  # type: ignore[attr-defined]


class RandomPolicy:
    """Uniformly random actions from an action space, seeded.

    Args:
        action_space: the space to sample.
        seed: seed of the sampler.
    """

    def __init__(self, action_space: gym.Space, seed: int | None = 0) -> None:
        self.action_space = copy.deepcopy(action_space)  # seeding must not touch the env's space
        self.action_space.seed(seed)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Return ``(random action, None)``."""
        return self.action_space.sample(), None
