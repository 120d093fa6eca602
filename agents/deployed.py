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
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.monitor import Monitor
from torch import nn

from edgegen.agents.cost_buffer import costs_from_infos

__all__ = [
    "add_action_offset",
    "copy_first_env",
    "deployed_policy_costs",
    "deterministic_costs",
    "play_deterministic",
]

ACTION_OFFSET = "action_offset"


def add_action_offset(policy: nn.Module, act_dim: int) -> None:
    """Give ``policy`` a buffer ``action_offset`` (zeros): what its deterministic action adds to the mean.

    The offset is part of the deployed policy: :class:`agents.selection.KeepBestFeasible` sets it when
    it calibrates the deterministic action on its selection episodes, and it travels in the policy's
    state dict (``save`` / ``load``, snapshots). Checkpoints written before the buffer existed load with
    a zero offset.
    """
    policy.register_buffer(ACTION_OFFSET, th.zeros(act_dim))

    def fill_missing(_module: nn.Module, state_dict: dict, prefix: str, *_args: Any) -> None:
        state_dict.setdefault(prefix + ACTION_OFFSET, th.zeros(act_dim))

    policy.register_load_state_dict_pre_hook(fill_missing)


def copy_first_env(vec_env: object, who: str) -> gym.Env:
    """A deep copy of the first env of a ``DummyVecEnv``, its wrappers included but SB3's ``Monitor``s.

    A ``Monitor`` records the training episodes (rl-zoo3 and ``make_vec_env`` write them to a CSV
    file): the deployed policy's episodes are not training episodes, and the open file cannot be
    copied. Each ``Monitor`` in the chain is replaced by the copy of the env it wraps.
    """
    envs = getattr(vec_env, "envs", None)
    if not envs:
        raise ValueError(
            f"{who}: cost_feedback='deterministic' plays the policy on a copy of the first training env, "
            f"which needs a DummyVecEnv; got {type(vec_env).__name__}"
        )
    monitors, layer = [], envs[0]
    while isinstance(layer, gym.Wrapper):
        if isinstance(layer, Monitor):
            monitors.append(layer)
        layer = layer.env
    memo: dict[int, Any] = {}
    for monitor in reversed(monitors):  # innermost first: an outer one's inner env holds it
        memo[id(monitor)] = copy.deepcopy(monitor.env, memo)
    return copy.deepcopy(envs[0], memo)


def play_deterministic(
    predict: Callable[[np.ndarray], np.ndarray],
    env: gym.Env,
    seeds: list[int | None],
    n_costs: int,
    who: str,
) -> tuple[float, np.ndarray, int]:
    """One whole episode per entry of ``seeds``: mean reward per step, mean cost per step, steps.

    ``predict`` maps one observation to the deterministic action; each episode's reset takes its seed
    (``None`` continues the env's random stream). The means are over episodes of each episode's
    per-step average, as the protocol's evaluation takes them.
    """
    rewards, costs, steps = [], [], 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        reward, total, length, done = 0.0, np.zeros(n_costs), 0, False
        while not done:
            obs, r, terminated, truncated, info = env.step(predict(obs))
            reward += float(r)
            total += costs_from_infos([info], n_costs, who)[0]
            length += 1
            done = bool(terminated or truncated)
        rewards.append(reward / length)
        costs.append(total / length)
        steps += length
    return float(np.mean(rewards)), np.mean(costs, axis=0), steps


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
    _, cost, steps = play_deterministic(predict, env, [seed] + [None] * (episodes - 1), n_costs, who)
    return cost, steps


def deployed_policy_costs(model: Any, episodes: int, who: str) -> np.ndarray:
    """The cost per step of ``model``'s deterministic policy over ``episodes`` episodes.

    ``model`` is an SB3 algorithm with ``cost_spec`` and a ``_feedback_env`` slot (None until the first
    call, which copies the first training env and seeds it from ``model.seed``, apart from the
    rollouts' stream). The episodes' steps are added to ``model.num_timesteps``.
    """
    seed = None
    if model._feedback_env is None:
        model._feedback_env = copy_first_env(model.env, who)
        seed = None if model.seed is None else model.seed + 7_919
    cost, steps = deterministic_costs(
        lambda obs: model.predict(obs, deterministic=True)[0],
        model._feedback_env,
        episodes,
        model.cost_spec.num_costs,
        who,
        seed,
    )
    model.num_timesteps += steps  # the step budget covers these steps too
    return cost
