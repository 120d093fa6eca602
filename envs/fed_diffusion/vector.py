"""FedDiffusion-v0 as a native batched vector env: one call of the energy model for N sub-envs.

``gym.make_vec("edgegen/FedDiffusion-v0", num_envs=N, vectorization_mode="vector_entry_point")``.
Episodes are drawn per sub-env from its own generator (``draw_episode``, as the scalar env does) and
built in one batch (``EpisodeBuilder``); each step evaluates ``device_outcome`` on (N, K) arrays.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.fed_diffusion.energy import RoundProblem, device_outcome
from edgegen.envs.fed_diffusion.env import (
    EpisodeBuilder,
    FedDiffusionEnv,
    cmdp_oracle_results,
    draw_episode,
    solve_oracle_results,
)
from edgegen.envs.oracle_result import OracleResult
from edgegen.envs.vector import BatchedEdgeGenEnv

__all__ = ["FedDiffusionVectorEnv"]


class FedDiffusionVectorEnv(BatchedEdgeGenEnv):
    """N FedDiffusion-v0 sub-envs stepped together (see :mod:`envs.vector` for the API)."""

    single_env_class: ClassVar[type[EdgeGenEnv]] = FedDiffusionEnv

    def __init__(self, num_envs: int, **kwargs: Any) -> None:
        """Same keyword arguments as the scalar env, plus ``autoreset_mode``."""
        super().__init__(num_envs, **kwargs)
        cfg = self.config
        n, k, rounds = self.num_envs, cfg.num_devices, cfg.num_rounds
        self._builder = EpisodeBuilder(cfg)
        self._budget_s = np.float64(cfg.round_time_s)
        self._half_budget_s = np.float64(0.5 * cfg.round_time_s)
        self._energy_scale_j = cfg.energy_scale_j
        self._store = {
            "obs": np.zeros((n, rounds + 1, 3 * k + 1), np.float32),
            "cycles": np.zeros((n, k)),
            "kappa_cycles": np.zeros((n, k)),
            "min_compute_time_s": np.zeros((n, k)),
            "upload_scale_s": np.zeros((n, k)),
            "min_upload_time_s": np.zeros((n, rounds, k)),
            "noise_over_gain_w": np.ones((n, rounds, k)),
            "bits": np.zeros((n, k), np.int64),
            "payload_bits": np.zeros((n, k)),
            "gain": np.ones((n, rounds, k)),
        }

    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        cfg = self.config
        draws = [draw_episode(cfg, self._rngs[i]) for i in rows.tolist()]
        stacked = {key: np.stack([d[key] for d in draws]) for key in draws[0]}
        episode = self._builder.build(**stacked)
        every = rows.size == self.num_envs
        for key, store in self._store.items():
            if every:  # all sub-envs at once (in step, the usual case): take the arrays, no copy
                self._store[key] = getattr(episode, key)
            else:
                store[rows] = getattr(episode, key)
        return episode.obs[:, 0]

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        s, t = self._store, self._t[rows]
        every = rows.size == self.num_envs  # all sub-envs: whole arrays, no gathers
        pick = (lambda x: x) if every else (lambda x: x[rows])
        if every and t[0] == t[-1] and (t == t[0]).all():  # in step (the usual case): views, not gathers
            r = int(t[0])
            round_of = lambda x: x[:, r]  # noqa: E731
            next_obs = s["obs"][:, r + 1]
        else:
            round_of = lambda x: x[rows, t]  # noqa: E731
            next_obs = s["obs"][rows, t + 1]
        upload_plan_s = actions * self._half_budget_s
        upload_plan_s += self._half_budget_s
        out = device_outcome(
            upload_plan_s,
            self._budget_s,
            pick(s["cycles"]),
            pick(s["kappa_cycles"]),
            pick(s["min_compute_time_s"]),
            round_of(s["min_upload_time_s"]),
            round_of(s["noise_over_gain_w"]),
            pick(s["upload_scale_s"]),
        )
        energy = out.compute_energy_j + out.upload_energy_j
        total = energy.sum(axis=1)
        miss = np.count_nonzero(out.late, axis=1) / energy.shape[1]
        return next_obs, -total / self._energy_scale_j, miss[:, None], total

    def _oracle(self, kind: str) -> list[OracleResult]:
        """Every sub-env's current round in one vectorised solve (per-round KKT, or the CMDP policy)."""
        if (self._t >= self.horizon).any():
            raise RuntimeError("FedDiffusion-v0: a sub-env has no episode in progress; call reset() first")
        if kind == "per_round":
            return solve_oracle_results(self.round_problems())
        return cmdp_oracle_results(self.config, self.round_problems())

    def round_problems(self) -> RoundProblem:
        """The current round of every sub-env as one batched ``RoundProblem`` of shape (N, K)."""
        s, cfg = self._store, self.config
        return RoundProblem(
            cycles=s["cycles"],
            payload_bits=s["payload_bits"],
            gain=s["gain"][self._all, self._t],
            bandwidth_hz=np.float64(cfg.device_bandwidth_hz),
            noise_power_w=self._builder.noise_power_w,
            round_time_s=cfg.round_time_s,
            max_frequency_hz=cfg.max_frequency_hz,
            max_power_w=cfg.max_power_w,
            kappa=cfg.kappa,
        )
