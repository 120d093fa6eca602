"""SFLAM-v0 as a native batched vector env: one vectorised round for N sub-envs.

``gym.make_vec("edgegen/SFLAM-v0", num_envs=N, vectorization_mode="vector_entry_point")``. Each
sub-env's episodes come from its scalar env's ``reset`` (the scheduler's per-round matching, scipy's
Hungarian solver, stays per episode there); every step decodes the (N, 3M) actions with the scalar
env's ``decisions_from_unit`` and evaluates ``round_outcome_indexed`` on (N, M) arrays. Equal to
``SyncVectorEnv`` to float round-off (the per-round sums reduce in another order).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.oracle_result import OracleResult
from edgegen.envs.sflam.env import SFLAMEnv
from edgegen.envs.sflam.system import round_outcome_indexed
from edgegen.envs.vector import BatchedEdgeGenEnv

__all__ = ["SFLAMVectorEnv"]


class SFLAMVectorEnv(BatchedEdgeGenEnv):
    """N SFLAM-v0 sub-envs stepped together (see :mod:`envs.vector` for the API)."""

    single_env_class: ClassVar[type[EdgeGenEnv]] = SFLAMEnv

    def __init__(self, num_envs: int, **kwargs: Any) -> None:
        """Same keyword arguments as the scalar env, plus ``autoreset_mode``."""
        super().__init__(num_envs, **kwargs)
        cfg = self.config
        n, m, rounds = self.num_envs, cfg.selected_devices, cfg.num_rounds
        self._first: SFLAMEnv = self.envs[0]  # type: ignore[assignment]
        self._store = {
            "obs": np.zeros((n, rounds + 1, 2 * m + 1), np.float32),
            "gain_over_noise": np.ones((n, rounds, m)),
            "fixed_s": np.zeros((n, rounds, m)),
        }

    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        # The scalar env's reset, so that its block draws (16 episodes per unseeded draw) are kept.
        seeds = seeds or [None] * rows.size
        first = []
        for i, seed in zip(rows.tolist(), seeds, strict=True):
            env = self.envs[i]
            assert isinstance(env, SFLAMEnv)
            obs, _ = env.reset(seed=seed)
            first.append(obs)
            self._store["obs"][i] = env._obs
            self._store["gain_over_noise"][i] = env._gain_over_noise
            self._store["fixed_s"][i] = env._fixed_s
        return np.stack(first)

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        s, t, first = self._store, self._t[rows], self._first
        u = actions * first._action_scale
        u += first._action_scale
        np.clip(u, 0.0, first._action_top, out=u)  # in range already (the base checked); a no-op
        index, share, power = first.decisions_from_unit(u)
        _, latency, _, _, objective = round_outcome_indexed(
            first._tables, s["gain_over_noise"][rows, t], s["fixed_s"][rows, t], index, share, power
        )
        return s["obs"][rows, t + 1], -objective, latency[:, None], objective

    def _sub_env_oracle(self, i: int, kind: str) -> OracleResult:
        env: SFLAMEnv = self.envs[i]  # type: ignore[assignment]
        env._t = int(self._t[i])  # the scalar env holds the episode; point it at the current round
        return env.oracle(kind)
