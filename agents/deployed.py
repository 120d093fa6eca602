"""Costs of the deployed policy: the deterministic policy played on a private copy of a training env.

An agent is evaluated, and deployed, with its mean action; its constraint machinery (multipliers,
CVPO's Q thresholds) is fitted to its stochastic behaviour. Where the optimum mixes nearly tied actions
(MEG-v0: N = 5 and 6) a Gaussian policy mixes them by noise while its mean action takes the cheaper one
everywhere, so the deployed policy sits well inside the limits. ``cost_feedback="deterministic"`` of
:class:`agents.PPOLagrangian` and :class:`agents.CVPOConfig` measures the deployed policy's costs with
:func:`deterministic_costs` and steers by them. The episodes are env steps like any other: the agents
count them in ``num_timesteps``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from edgegen.agents.cost_buffer import costs_from_infos

__all__ = ["copy_first_env", "deterministic_costs"]


def copy_first_env(vec_env: object, who: str) -> gym.Env:
    """A deep copy of the first env of a ``DummyVecEnv``, wrappers included."""
    envs = getattr(vec_env, "envs", None)
    if not envs:
        raise ValueError(
            f"{who}: cost_feedback='deterministic' plays the policy on a copy of the first training env, "
            f"which needs a DummyVecEnv; got {type(vec_env).__name__}"
        )
    return copy.deepcopy(envs[0])


def deterministic_costs(
    predict: Callable[[np.ndarray], np.ndarray],
    env: gym.Env,
    episodes: int,
    n_costs: int,
    who: str,
    seed: int | None = None,
) -> tuple[np.ndarray, int]:
    """Mean over ``episodes`` whole episodes of the cost per step, and the env steps they took.

    ``predict`` maps one observation to the deterministic action. The first episode's reset takes
    ``seed`` (give one on the first call only); every other reset continues the env's random stream.
    """
    per_step, steps = [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        total, length, done = np.zeros(n_costs), 0, False
        while not done:
            obs, _, terminated, truncated, info = env.step(predict(obs))
            total += costs_from_infos([info], n_costs, who)[0]
            length += 1
            done = bool(terminated or truncated)
        per_step.append(total / length)
        steps += length
    return np.mean(per_step, axis=0), steps
