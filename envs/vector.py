"""Native batched vector envs: N sub-envs stepped by one call into the env's batched model.

``gym.make_vec("edgegen/<id>", num_envs=N, vectorization_mode="vector_entry_point")`` builds the env's
subclass of :class:`BatchedEdgeGenEnv`. It follows Gymnasium 1.x's vector API:

- batched ``observation_space`` / ``action_space``; ``autoreset_mode`` NEXT_STEP (default) or
  SAME_STEP (then ``info["final_obs"]`` / ``info["final_info"]`` with their ``_`` masks);
- seeding as ``SyncVectorEnv``: ``reset(seed=s)`` gives sub-env i the episode the scalar env gets
  with seed ``s + i`` (a list seeds each sub-env), and each sub-env keeps its own generator, so later
  episodes match too; ``options={"reset_mask": mask}`` resets some sub-envs;
- ``info["costs"]`` of shape (N, k) in the env's ``cost_spec`` order, ``info["cost"]`` of shape (N,),
  ``info["action_clipped"]`` and the env's per-step objective (``objective_key``), each with the
  ``_key`` mask that Gymnasium's vector envs add.

Observations, rewards, costs, terminations and truncations equal those of ``SyncVectorEnv`` over the
scalar env with the same seeds and actions (tested step for step in both modes). The scalar env and
the batched env share one model: the episode draws and the step's physics are the same functions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.cmdp import CostSpec
from edgegen.envs.oracle_result import OracleResult

__all__ = ["BatchedEdgeGenEnv"]


class BatchedEdgeGenEnv(gym.vector.VectorEnv):
    """Base of the batched envs: seeding, autoreset, action checks and info; the env adds its model.

    A subclass sets ``single_env_class`` and implements ``_reset_rows`` (draw the episodes of the given
    sub-envs from their generators and store them) and ``_step_rows`` (one batched step of the given
    sub-envs). ``self.envs`` holds one scalar env per sub-env: its config, generator and oracle; the
    batched env never calls its ``step``.
    """

    single_env_class: ClassVar[type[EdgeGenEnv]]

    def __init__(
        self,
        num_envs: int,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        **env_kwargs: Any,
    ) -> None:
        """Build ``num_envs`` sub-envs from the same keyword arguments as the scalar env."""
        if isinstance(num_envs, bool) or not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        mode = AutoresetMode(autoreset_mode)
        if mode == AutoresetMode.DISABLED:
            raise ValueError("autoreset_mode must be NEXT_STEP or SAME_STEP; DISABLED is not supported")
        if render_mode is not None:
            raise ValueError("the batched edgegen envs do not render; use the scalar env to render")
        self.num_envs = int(num_envs)
        self.envs = [self.single_env_class(**env_kwargs) for _ in range(self.num_envs)]
        first = self.envs[0]
        if getattr(first.config, "backend", "model") == "live":
            raise ValueError(
                f"the batched {first.env_name} runs the model only; the live backend stays scalar "
                "(use gym.make_vec(..., vectorization_mode='sync'))"
            )
        self.config = first.config
        self.cost_spec: CostSpec = first.cost_spec
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(first.observation_space, self.num_envs)
        self.action_space = batch_space(first.action_space, self.num_envs)
        self.metadata = {**first.metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.render_mode = None
        self.horizon = first.horizon
        self._rngs: list[np.random.Generator | None] = [None] * self.num_envs
        self._t = np.full(self.num_envs, self.horizon, dtype=np.int64)  # no episode until reset()
        self._autoreset = np.zeros(self.num_envs, dtype=bool)
        self._all = np.arange(self.num_envs)
        self._inv_limits = 1.0 / self.cost_spec.limits_array  # as the scalar envs: cost x (1 / limit)
        self._action_shape: tuple[int, ...] = (self.num_envs, *(first.action_space.shape or ()))

    # -- hooks of the env -------------------------------------------------------------------------
    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        """Draw new episodes for ``rows`` from ``self._rngs`` and store them; their first observations.

        ``seeds`` (one per row, or None) are the seeds of this reset, for envs whose scalar reset does
        more with a seed than seeding its generator (``self._rngs`` is already seeded).
        """
        raise NotImplementedError

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """One step of ``rows`` (their stored round ``self._t[rows]``) with in-range ``actions``.

        Returns (observations, rewards, costs (n, k), objective (n,)); the base advances ``self._t``.
        """
        raise NotImplementedError

    # -- the vector API ---------------------------------------------------------------------------
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env (or those of ``options["reset_mask"]``); seeds as ``SyncVectorEnv``."""
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"{self.envs[0].env_name} reset takes no options, got {sorted(options)}")
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int | np.integer) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)  # type: ignore[arg-type]
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must have one entry per sub-env ({self.num_envs}), got {len(seeds)}")
        if mask is None:
            rows = self._all
        else:
            mask = np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
                raise ValueError(
                    f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with a True"
                )
            rows = np.flatnonzero(mask)
        for i in rows.tolist():
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        if mask is None:
            self._obs = np.empty((self.num_envs, *(self.single_observation_space.shape or ())), np.float32)
        self._obs[rows] = self._reset_rows(rows, [seeds[i] for i in rows.tolist()])
        self._t[rows] = 0
        self._autoreset[rows] = False
        info = self._zero_info()
        if mask is not None:
            info = {key: value for key, value in info.items()}
            for key in list(info):
                if key.startswith("_"):
                    info[key] = mask.copy()
        return self._obs.copy(), info

    def _zero_info(self) -> dict[str, Any]:
        n, k = self.num_envs, self.cost_spec.num_costs
        info: dict[str, Any] = {
            "costs": np.zeros((n, k)),
            "cost": np.zeros(n),
            "action_clipped": np.zeros(n, dtype=bool),
            self.envs[0].objective_key: np.zeros(n),
        }
        for key in list(info):
            info[f"_{key}"] = np.ones(n, dtype=bool)
        return info

    def _check_actions(self, actions: Any) -> tuple[np.ndarray, np.ndarray]:
        """Actions as an in-range array and the per-sub-env clipping flags; ValueError naming sub-envs."""
        a = actions if type(actions) is np.ndarray else np.asarray(actions, dtype=np.float64)
        if a.shape != self._action_shape:
            raise ValueError(
                f"{self.envs[0].env_name} batched actions must have shape {self._action_shape}, got {a.shape}"
            )
        high = np.abs(a).max(axis=1)
        clipped = ~(high <= 1.0)  # NaN fails the test
        if clipped.any():
            bad = ~np.isfinite(a)
            if bad.any():
                where = {int(i): np.flatnonzero(bad[i]).tolist() for i in np.flatnonzero(bad.any(axis=1))}
                raise ValueError(
                    f"{self.envs[0].env_name} action has NaN/inf in sub-env(s) {sorted(where)} "
                    f"(entries by sub-env: {where})"
                )
            a = np.clip(a, -1.0, 1.0, dtype=np.float64)
        return a, clipped

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with one batched model call; autoreset as configured."""
        if self._t.min() >= self.horizon and not self._autoreset.any():
            raise RuntimeError(f"{self.envs[0].env_name}: call reset() before step()")
        a, clipped = self._check_actions(actions)
        n, k = self.num_envs, self.cost_spec.num_costs
        rewards = np.zeros(n)
        costs = np.zeros((n, k))
        objective = np.zeros(n)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        resetting = self._autoreset if self.autoreset_mode == AutoresetMode.NEXT_STEP else None
        rows = self._all if resetting is None or not resetting.any() else np.flatnonzero(~resetting)
        info: dict[str, Any] = {}
        if rows.size:
            obs, rewards_rows, costs_rows, objective_rows = self._step_rows(rows, a[rows])
            self._t[rows] += 1
            self._obs[rows] = obs
            rewards[rows], costs[rows], objective[rows] = rewards_rows, costs_rows, objective_rows
            truncated[rows] = self._t[rows] >= self.horizon
        if resetting is not None and resetting.any():
            reset_rows = np.flatnonzero(resetting)
            self._obs[reset_rows] = self._reset_rows(reset_rows)
            self._t[reset_rows] = 0
            clipped = clipped & ~resetting  # a reset step applies no action
        done = truncated | terminated
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            done_rows = np.flatnonzero(done)
            final_obs = np.full(n, None, dtype=object)
            for i in done_rows.tolist():
                final_obs[i] = self._obs[i].copy()
            final_info = self._info(costs, clipped, objective, done)
            info.update(
                final_obs=final_obs, _final_obs=done.copy(), final_info=final_info, _final_info=done.copy()
            )
            self._obs[done_rows] = self._reset_rows(done_rows)
            self._t[done_rows] = 0
            costs = np.where(done[:, None], 0.0, costs)
            objective = np.where(done, 0.0, objective)
            clipped = clipped & ~done
        else:
            self._autoreset = done
        info.update(self._info(costs, clipped, objective, np.ones(n, dtype=bool)))
        return self._obs.copy(), rewards, terminated, truncated, info

    def _info(self, costs: np.ndarray, clipped: np.ndarray, objective: np.ndarray, mask: np.ndarray) -> dict:
        cost = (costs * self._inv_limits).max(axis=1)
        info = {
            "costs": costs,
            "cost": cost,
            "action_clipped": clipped,
            self.envs[0].objective_key: objective,
        }
        for key in list(info):
            info[f"_{key}"] = mask.copy()
        return info

    # -- oracle -----------------------------------------------------------------------------------
    def oracle(self, kind: str | None = None) -> list[OracleResult]:
        """The oracle of every sub-env in its current state (``kind`` as the scalar env's ``oracle``)."""
        kind = self.envs[0].check_oracle_kind(kind)
        return self._oracle(kind)

    def oracle_action(self, kind: str | None = None) -> np.ndarray:
        """The oracle actions of all sub-envs, shape (N, action dim)."""
        return np.stack([result.action for result in self.oracle(kind)])

    def _oracle(self, kind: str) -> list[OracleResult]:
        """Default: one scalar solve per sub-env."""
        return [self._sub_env_oracle(i, kind) for i in range(self.num_envs)]

    def _sub_env_oracle(self, i: int, kind: str) -> OracleResult:
        raise NotImplementedError

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release: the sub-envs hold arrays only."""
