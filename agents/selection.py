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

With ``shift_dims`` the kept snapshot's deterministic action is then calibrated on the same episodes.
An agent trained on the limits mixes two nearly tied actions by its noise (MEG-v0: N = 5 and 6 steps),
while its mean action, deployed, may take the cheaper one on most states and stay a few percent inside
the limits. The policy's mean still varies with the state, so shifting it by ``delta`` along the
listed action dimensions moves the states that round to the costlier action a few at a time: the
deterministic policy then realises the mix by state (docs/experiments.md, thirteenth session). The
calibration bisects ``delta`` in ``[-shift_max, shift_max]`` (the action moves by ``shift_sign *
delta``) for the largest shift whose selection costs stay within the limits (it assumes the costs do
not fall as ``delta`` grows, as for more denoising steps, or for less transmit power with
``shift_sign=-1``), and keeps the feasible shift it played with the highest reward; the policy's
``action_offset`` buffer holds it, so ``predict``, ``save`` and ``load`` deploy it.

The selection episodes are env steps like any other: their steps count in ``num_timesteps`` (the
evaluation at the end of training runs after the budget, at most ``episodes`` episodes more). With
``shift_dims`` that last evaluation and the calibration's (at most ``shift_iters + 1``) come out of
the budget: training stops early enough to leave room for them. Their
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
import torch as th
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
        shift_dims: action dimensions along which the kept policy's deterministic action is
            calibrated (empty: none): the action moves by ``shift_sign * delta`` on each, and the
            costs must not fall as ``delta`` grows.
        shift_max: the largest shift tried, in the policy's action units ([-1, 1] per dimension;
            in (0, 2]).
        shift_iters: bisection steps of the calibration (>= 1); the shift is found to within
            ``shift_max / 2 ** shift_iters``.
        shift_sign: 1, or -1 where the costs fall as the action grows (SFLAM-v0's transmit power:
            more power, shorter rounds).
    """

    every_steps: int
    episodes: int = 5
    margin: float = 0.0
    shift_dims: tuple[int, ...] = ()
    shift_max: float = 0.25
    shift_iters: int = 6
    shift_sign: int = 1

    def __post_init__(self) -> None:
        for name in ("every_steps", "episodes", "shift_iters"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"keep_best.{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"keep_best.margin must be in [0, 1), got {self.margin!r}")
        if self.shift_sign not in (1, -1) or type(self.shift_sign) is not int:
            raise ValueError(f"keep_best.shift_sign must be 1 or -1, got {self.shift_sign!r}")
        if not 0.0 < self.shift_max <= 2.0:
            raise ValueError(f"keep_best.shift_max must be in (0, 2], got {self.shift_max!r}")
        dims = self.shift_dims
        if not isinstance(dims, (list, tuple)) or any(type(d) is not int or d < 0 for d in dims):
            raise ValueError(f"keep_best.shift_dims must be a list of action indices >= 0, got {dims!r}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"keep_best.shift_dims lists an action twice: {list(dims)}")
        object.__setattr__(self, "shift_dims", tuple(dims))

    @classmethod
    def from_value(cls, value: KeepBest | dict[str, Any] | None) -> KeepBest | None:
        """``None``, a ``KeepBest``, or a mapping of its fields (TypeError for an unknown key)."""
        if value is None or isinstance(value, KeepBest):
            return value
        fields = [field.name for field in dataclasses.fields(cls)]
        if not isinstance(value, dict):
            raise TypeError(f"keep_best must be a mapping of {', '.join(fields)}, got {value!r}")
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise TypeError(f"keep_best got unknown keys {unknown}; allowed: {', '.join(fields)}")
        return cls(**value)


class KeepBestFeasible(BaseCallback):
    """Evaluate the deterministic policy on fixed episodes; load the best feasible one at the end.

    The model needs a ``cost_spec`` (its limits are the ones judged, with any ``cost_limits`` or
    ``cost_margin`` of the agent applied), ``seed`` and a ``DummyVecEnv``; with ``shift_dims``, a
    policy with an ``action_offset`` buffer (the project's CVPO and PPO-Lagrangian policies). After
    training, ``history`` lists every evaluation as ``(step, reward_per_step, cost_per_step,
    feasible)``, ``best_step`` is the step of the loaded snapshot (None when none was feasible),
    ``calibration`` lists the shifts played as ``(shift, reward_per_step, cost_per_step, feasible)``
    and ``shift`` is the one kept (0.0 when none was feasible; None without ``shift_dims``).
    """

    def __init__(self, settings: KeepBest, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.settings = settings
        self.history: list[tuple[int, float, np.ndarray, bool]] = []
        self.calibration: list[tuple[float, float, np.ndarray, bool]] = []
        self.best_step: int | None = None
        self.shift: float | None = None
        self._best_reward = -np.inf
        self._best_state: dict[str, Any] | None = None
        self._next_step = 0
        self._steps_per_evaluation = 0  # known after the first evaluation

    def _init_callback(self) -> None:
        model: Any = self.model  # an agent with cost_spec (BaseAlgorithm does not declare it)
        self._who = f"{type(model).__name__} keep_best"
        self._env = copy_first_env(model.env, self._who)
        base = (model.seed or 0) + SELECTION_SEED_OFFSET
        self._seeds: list[int | None] = [base + i for i in range(self.settings.episodes)]
        self._limits = np.asarray(model.cost_spec.limits) * (1.0 - self.settings.margin)
        self._next_step = model.num_timesteps + self.settings.every_steps
        if self.settings.shift_dims:
            offset = getattr(model.policy, "action_offset", None)
            if not isinstance(offset, th.Tensor):
                raise TypeError(
                    f"{self._who}: shift_dims calibrates the policy's action_offset, which "
                    f"{type(model.policy).__name__} does not have (CVPOPolicy and CostActorCriticPolicy do)"
                )
            if max(self.settings.shift_dims) >= offset.numel():
                raise ValueError(
                    f"{self._who}: shift_dims {list(self.settings.shift_dims)} must lie in "
                    f"[0, {offset.numel() - 1}] (the action has {offset.numel()} dimensions)"
                )
            with th.no_grad():
                offset.zero_()  # a resumed run's snapshots are judged unshifted; calibrated again at the end

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self._next_step:
            self._evaluate()
            while self._next_step <= self.model.num_timesteps:
                self._next_step += self.settings.every_steps
        if self.settings.shift_dims and self._steps_per_evaluation:
            # stop training where the last evaluation and the calibration's still fit in the budget
            reserve = (self.settings.shift_iters + 2) * self._steps_per_evaluation
            return self.model.num_timesteps + reserve < self.model._total_timesteps
        return True

    def _on_training_end(self) -> None:
        self._evaluate()
        model: Any = self.model
        if self._best_state is not None:
            model.policy.load_state_dict(self._best_state)
        model.selected_step = self.best_step
        if self.settings.shift_dims:
            self._calibrate()
            model.selected_shift = self.shift

    def _play(self) -> tuple[float, np.ndarray, bool]:
        """The current deterministic policy on the selection episodes (steps counted in the budget)."""
        model: Any = self.model
        reward, cost, steps = play_deterministic(
            lambda obs: model.predict(obs, deterministic=True)[0],
            self._env,
            self._seeds,
            model.cost_spec.num_costs,
            self._who,
        )
        model.num_timesteps += steps  # the step budget covers these steps too
        self._steps_per_evaluation = steps
        return reward, cost, bool(np.all(cost <= self._limits))

    def _calibrate(self) -> None:
        """Bisect the shift of the deterministic action; keep the feasible one with the best reward."""
        model: Any = self.model
        offset: th.Tensor = model.policy.action_offset
        dims, sign = list(self.settings.shift_dims), self.settings.shift_sign
        # the unshifted policy was just evaluated: the kept snapshot's entry, or the last policy's
        if self.best_step is not None:
            _, reward, cost, ok = next(h for h in self.history if h[0] == self.best_step and h[3])
        else:
            _, reward, cost, ok = self.history[-1]
        self.calibration = [(0.0, reward, cost, ok)]

        def play(shift: float) -> bool:
            with th.no_grad():
                offset.zero_()
                offset[dims] = sign * shift
            reward, cost, feasible = self._play()
            self.calibration.append((shift, reward, cost, feasible))
            return feasible

        far = self.settings.shift_max if ok else -self.settings.shift_max
        if play(far) != ok:  # a feasible and an infeasible end: bisect between them
            lo, hi = (0.0, far) if ok else (far, 0.0)
            for _ in range(self.settings.shift_iters):
                mid = 0.5 * (lo + hi)
                if play(mid):
                    lo = mid
                else:
                    hi = mid
        feasible = [(reward, shift) for shift, reward, _, ok in self.calibration if ok]
        self.shift = max(feasible)[1] if feasible else 0.0
        with th.no_grad():
            offset.zero_()
            offset[dims] = sign * self.shift
        self.logger.record("select/shift", self.shift)

    def _evaluate(self) -> None:
        model: Any = self.model
        spec = model.cost_spec
        step = model.num_timesteps
        reward, cost, feasible = self._play()
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
