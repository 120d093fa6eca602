"""``EdgeGenEnv``: what every edgegen env shares, so that each env holds only its state and its model.

The base owns:

- the config: a frozen dataclass built from a named preset plus keyword overrides (an unknown keyword
  raises ``TypeError``, as Python does; a bad value ``ValueError``), or passed ready as ``config=``;
- the cost spec: ``cost_names`` / ``cost_units`` declared by the env, each limit read from the config
  field ``<cost name>_limit``;
- the horizon: the config field named by ``horizon_field`` sets the episode length, the env truncates
  itself, and ``spec.max_episode_steps`` reports it (the ids are registered without a ``TimeLimit``);
- action checks: shape and NaN/inf raise ``ValueError`` naming the entries; out-of-range values are
  clipped and ``info["action_clipped"]`` says so;
- the info convention: ``reset`` returns every key that ``step`` returns (zeros, or NaN where a value
  has no meaning yet), every scalar a numpy scalar;
- ``render`` ("ansi" one line from the env, "rgb_array" a cost-vs-limit chart unless the env has an
  image), and the oracle hook: ``oracle(kind=None)`` returns an
  :class:`~envs.oracle_result.OracleResult`, ``oracle_action(kind=None)`` its action. Kinds:
  ``"cmdp"``, the best stationary policy under the env's average-cost limits (the yardstick, and the
  default), and ``"per_round"`` where the env has one: each step's own optimum with every step
  within the limits (the papers' problem; stricter than the env's constraint).

An env subclasses it with its config class, declares the class attributes below, builds its spaces
in ``__init__`` after ``super().__init__``, and implements ``reset``, ``step``, ``_info_template``,
``_ansi`` and ``_oracle(kind)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

from edgegen.envs.cmdp import CostSpec
from edgegen.envs.oracle_result import OracleResult
from edgegen.envs.presets import build_config
from edgegen.envs.rendering import cost_bar_chart

__all__ = ["EdgeGenEnv"]

ConfigT = TypeVar("ConfigT")
_max_reduce = np.maximum.reduce


class EdgeGenEnv(gym.Env[np.ndarray, np.ndarray], Generic[ConfigT]):
    """Base class of the edgegen envs (see the module docstring for what it owns).

    Class attributes an env declares:
        env_name: e.g. ``"MEG-v0"``, used in messages.
        config_class, presets, default_preset: the config dataclass and its named presets.
        horizon_field: the config field that sets the episode length.
        cost_names, cost_units: the constraints; their limits are config fields ``<name>_limit``.
        objective_key: the info key of the per-step objective (lower is better) that the oracle's
            ``objective`` is measured in.
        oracle_kinds: the oracle kinds the env offers, the default first. With ``"per_round"``
            ``oracle().objective`` is the objective of this very step; with ``"cmdp"`` it is the
            expected objective per step of a stationary policy, whose single steps may exceed the
            average limits (its expected costs meet them).
        baseline_names: named heuristics of :meth:`baseline_action`.
        entity_layout: ``(features per entity, action values per entity)`` where the env is a set of
            like entities (devices): the observation starts with one block of features per entity
            (the rest is global) and the action is one block per entity, in the same order. Agents
            with per-entity networks read it (CVPO's ``policy_kwargs={"entity_layout": "env"}``);
            ``None`` otherwise.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012 (gymnasium's name)
    env_name: ClassVar[str]
    config_class: ClassVar[type]
    presets: ClassVar[dict[str, dict[str, Any]]]
    default_preset: ClassVar[str] = "default"
    horizon_field: ClassVar[str]
    cost_names: ClassVar[tuple[str, ...]]
    cost_units: ClassVar[tuple[str, ...]]
    objective_key: ClassVar[str]
    oracle_kinds: ClassVar[tuple[str, ...]] = ("cmdp",)
    baseline_names: ClassVar[tuple[str, ...]] = ()
    entity_layout: ClassVar[tuple[int, int] | None] = None

    _spec: EnvSpec | None = None
    _action_shape: tuple[int, ...]
    """The action's shape; the env sets it with its action space (read on every step)."""

    def __init__(
        self,
        preset: str | None = None,
        render_mode: str | None = None,
        config: ConfigT | None = None,
        **overrides: Any,
    ) -> None:
        """Build the config from ``preset`` plus ``overrides`` (config fields), or take ``config``."""
        modes = self.metadata["render_modes"]
        if render_mode is not None and render_mode not in modes:
            raise ValueError(f"render_mode must be one of {modes} or None, got {render_mode!r}")
        if config is not None:
            if overrides or preset is not None:
                raise ValueError(f"pass either config or preset/field overrides to {self.env_name}, not both")
            if not isinstance(config, self.config_class):
                raise TypeError(f"config must be a {self.config_class.__name__}, got {type(config).__name__}")
            self.config: ConfigT = config
        else:
            self.config = build_config(
                self.config_class, self.presets, self.env_name, preset or self.default_preset, overrides
            )
        self.render_mode = render_mode
        limits = tuple(getattr(self.config, f"{name}_limit") for name in self.cost_names)
        self.cost_spec = CostSpec(self.cost_names, self.cost_units, limits)
        self._horizon: int = getattr(self.config, self.horizon_field)
        self._t = self._horizon  # no episode until reset()
        self._last_info: dict[str, Any] = {}

    # -- spec: the horizon is the config's ----------------------------------------------------------
    @property
    def spec(self) -> EnvSpec | None:
        """The env's spec; ``max_episode_steps`` is the configured horizon."""
        return self._spec

    @spec.setter
    def spec(self, value: EnvSpec | None) -> None:
        if value is not None and value.max_episode_steps != self._horizon:
            value = dataclasses.replace(value, max_episode_steps=self._horizon)
        self._spec = value

    @property
    def horizon(self) -> int:
        """Steps per episode (the config's ``horizon_field``)."""
        return self._horizon

    # -- info -------------------------------------------------------------------------------------
    def _info_template(self) -> dict[str, Any]:
        """Every key ``step`` puts in info, with the value ``reset`` returns (zeros or NaN)."""
        raise NotImplementedError

    def _reset_info(self, **values: Any) -> dict[str, Any]:
        """The info of ``reset``: the template with ``values`` filled in (zero costs)."""
        info = self._info_template()
        info.update(values)
        info["costs"] = np.zeros(self.cost_spec.num_costs)
        info["cost"] = np.float64(0.0)
        info["action_clipped"] = np.False_
        self._last_info = info
        return info

    # -- actions ----------------------------------------------------------------------------------
    def _check_action(self, action: Any) -> tuple[np.ndarray, bool]:
        """``action`` as an array within [-1, 1] (clipped if it was not), and whether it was clipped.

        ValueError for a wrong shape or NaN/inf entries (named). Fast path: one reduction, no copy;
        an in-range action keeps its dtype (float32 or float64), so the env computes with float64
        constants (numpy scalars or arrays), which upcast it exactly.
        """
        a = action if type(action) is np.ndarray else np.asarray(action, dtype=np.float64)
        if a.shape != self._action_shape:
            raise ValueError(f"{self.env_name} action must have shape {self._action_shape}, got {a.shape}")
        if _max_reduce(np.abs(a), axis=None) <= 1.0:  # in range, so finite (NaN fails the test)
            return a, False
        self._raise_if_not_finite(a)
        return np.clip(a, -1.0, 1.0, dtype=np.float64), True

    def _raise_if_not_finite(self, a: np.ndarray) -> None:
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            raise ValueError(
                f"{self.env_name} action has NaN/inf at entries {bad.tolist()}: {a.reshape(-1)[bad].tolist()}"
            )

    def _check_in_episode(self) -> int:
        """The current step index; RuntimeError outside an episode."""
        if self._t >= self._horizon:
            raise RuntimeError(f"{self.env_name}: no episode in progress; call reset() first")
        return self._t

    # -- oracle and baselines ---------------------------------------------------------------------
    def oracle(self, kind: str | None = None) -> OracleResult:
        """The oracle's decision in the current state, with its objective and certificate.

        ``kind``: one of ``oracle_kinds`` (default: the first, ``"cmdp"``); see the env's docstring.
        """
        return self._oracle(self.check_oracle_kind(kind))

    def oracle_action(self, kind: str | None = None) -> np.ndarray:
        """Shortcut: ``oracle(kind).action`` (a writable copy)."""
        return self.oracle(kind).action.copy()

    @classmethod
    def check_oracle_kind(cls, kind: str | None) -> str:
        """``kind``, or the default kind for None; ValueError naming the kinds for anything else."""
        if kind is None:
            return cls.oracle_kinds[0]
        if kind not in cls.oracle_kinds:
            raise ValueError(
                f"{cls.env_name} oracle kind must be one of {list(cls.oracle_kinds)}, got {kind!r}"
            )
        return kind

    @staticmethod
    def oracle_objective_is_per_step(kind: str) -> bool:
        """True when the kind's ``objective`` is the objective of the current step itself."""
        return kind == "per_round"

    def _oracle(self, kind: str) -> OracleResult:
        raise NotImplementedError

    def baseline_action(self, name: str) -> np.ndarray:
        """The action of the named heuristic (one of ``baseline_names``) in the current state."""
        if name not in self.baseline_names:
            raise ValueError(
                f"unknown {self.env_name} baseline {name!r}; choose one of {list(self.baseline_names)}"
            )
        self._check_in_episode()
        return self._baseline(name)

    def _baseline(self, name: str) -> np.ndarray:
        raise NotImplementedError

    # -- rendering --------------------------------------------------------------------------------
    def render(self) -> str | np.ndarray | None:
        """Render the last step: "ansi" one line; "rgb_array" an image (costs against their limits)."""
        if self.render_mode is None:
            gym.logger.warn(
                f"{self.env_name}.render() called without a render_mode; set render_mode in make()"
            )
            return None
        info = self._last_info or self._reset_info()
        if self.render_mode == "ansi":
            return self._ansi(info)
        image = self._image()
        if image is not None:
            return image
        return cost_bar_chart(info["costs"], self.cost_spec.limits_array)

    def _ansi(self, info: dict[str, Any]) -> str:
        raise NotImplementedError

    def _image(self) -> np.ndarray | None:
        """An env-specific picture for "rgb_array" (None: the cost chart)."""
        return None
