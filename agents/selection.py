"""Keep the best feasible policy seen in training, judged on fixed selection episodes.

A Lagrangian agent's multipliers chase its costs, so its policy circles the constraint surface to the
end of training: the last policy is one snapshot of that orbit, over the limits on some seeds and far
inside them on others (docs/experiments.md: MEG-v0 PPO-Lag's runs end 2-7 % over the energy limit on
one seed in eight). :class:`KeepBestFeasible` plays the deterministic policy every ``every_steps`` env
steps on the same ``episodes`` episodes of a copy of the first training env (common random numbers:
two snapshots are compared on identical channels and tasks), and at the end of training loads the
snapshot with the highest reward per step among those whose mean cost per step was within every
limit times ``1 - margin``. With none feasible, the last policy stays. This is stable-baselines3's
``EvalCallback(best_model_save_path=...)`` with the constraint in the criterion.

The selection episodes are env steps like any other: their steps count in ``num_timesteps`` (the
evaluation at the end of training runs after the budget, at most ``episodes`` episodes more). Their
seeds, ``training seed + 104_729 + i``, are apart from the protocol's evaluation blocks (10000+,
50000+), so selecting does not look at the episodes that report the result. The snapshots live in
memory: an interrupted ``learn`` leaves the current policy (``edgegen-train`` saves it), and a resumed
run chooses among the snapshots after the resume.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback

from edgegen.agents.deployed import copy_first_env, play_deterministic

__all__ = ["KeepBest", "KeepBestFeasible", "with_selection"]

SELECTION_SEED_OFFSET = 104_729


@dataclasses.dataclass(frozen=True)
class KeepBest:
    """Settings of :class:`KeepBestFeasible` (recipes give them as a mapping: ``keep_best: {...}``).

    Args:
        every_steps: env steps of training between two selection evaluations (>= 1).
        episodes: selection episodes per evaluation, the same ones every time (>= 1).
        margin: a snapshot is feasible when each mean cost per step is within its limit times
            ``1 - margin`` (in [0, 1)).
    """

    every_steps: int
    episodes: int = 5
    margin: float = 0.0

    def __post_init__(self) -> None:
        for name in ("every_steps", "episodes"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"keep_best.{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"keep_best.margin must be in [0, 1), got {self.margin!r}")

    @classmethod
    def from_value(cls, value: KeepBest | dict[str, Any] | None) -> KeepBest | None:
        """``None``, a ``KeepBest``, or a mapping of its fields (TypeError for an unknown key)."""
        if value is None or isinstance(value, KeepBest):
            return value
        if not isinstance(value, dict):
            raise TypeError(f"keep_best must be a mapping of every_steps / episodes / margin, got {value!r}")
        unknown = sorted(set(value) - {field.name for field in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"keep_best got unknown keys {unknown}; allowed: every_steps, episodes, margin")
        return cls(**value)


class KeepBestFeasible(BaseCallback):
    """Evaluate the deterministic policy on fixed episodes; load the best feasible one at the end.

    The model needs a ``cost_spec`` (its limits are the ones judged, with any ``cost_limits`` or
    ``cost_margin`` of the agent applied), ``seed`` and a ``DummyVecEnv``. After training,
    ``history`` lists every evaluation as ``(step, reward_per_step, cost_per_step, feasible)`` and
    ``best_step`` is the step of the loaded snapshot (None when none was feasible).
    """

    def __init__(self, settings: KeepBest, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.settings = settings
        self.history: list[tuple[int, float, np.ndarray, bool]] = []
        self.best_step: int | None = None
        self._best_reward = -np.inf
        self._best_state: dict[str, Any] | None = None
        self._next_step = 0

    def _init_callback(self) -> None:
        model: Any = self.model  # an agent with cost_spec (BaseAlgorithm does not declare it)
        self._env = copy_first_env(model.env, f"{type(model).__name__} keep_best")
        base = (model.seed or 0) + SELECTION_SEED_OFFSET
        self._seeds: list[int | None] = [base + i for i in range(self.settings.episodes)]
        self._limits = np.asarray(model.cost_spec.limits) * (1.0 - self.settings.margin)
        self._next_step = model.num_timesteps + self.settings.every_steps

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next_step:
            self._evaluate()
            while self._next_step <= self.model.num_timesteps:
                self._next_step += self.settings.every_steps
        return True

    def _on_training_end(self) -> None:
        self._evaluate()
        model: Any = self.model
        if self._best_state is not None:
            model.policy.load_state_dict(self._best_state)
        model.selected_step = self.best_step

    def _evaluate(self) -> None:
        model: Any = self.model
        spec = model.cost_spec
        step = model.num_timesteps
        reward, cost, steps = play_deterministic(
            lambda obs: model.predict(obs, deterministic=True)[0],
            self._env,
            self._seeds,
            spec.num_costs,
            f"{type(model).__name__} keep_best",
        )
        model.num_timesteps += steps  # the step budget covers these steps too
        feasible = bool(np.all(cost <= self._limits))
        self.history.append((step, reward, cost, feasible))
        if feasible and reward > self._best_reward:
            self._best_reward, self.best_step = reward, step
            self._best_state = copy.deepcopy(model.policy.state_dict())
        self.logger.record("select/reward_per_step", reward)
        for name, value in zip(spec.names, cost, strict=True):
            self.logger.record(f"select/cost_per_step/{name}", float(value))
        self.logger.record("select/best_step", -1 if self.best_step is None else self.best_step)


def with_selection(callback: Any, settings: KeepBest | None) -> Any:
    """The user's ``callback`` (None, a callable, a callback or a list) plus a ``KeepBestFeasible``."""
    if settings is None:
        return callback
    callbacks = callback if isinstance(callback, list) else [] if callback is None else [callback]
    converted = [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in callbacks]
    return CallbackList([*converted, KeepBestFeasible(settings)])
