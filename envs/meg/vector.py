"""MEG-v0 as a native batched vector env: every sub-env's frame in one vectorised pass.

``gym.make_vec("edgegen/MEG-v0", num_envs=N, vectorization_mode="vector_entry_point")``. The channel of
each sub-env's episode is drawn from its own generator (``episode_snr``, as the scalar env does); the
step evaluates the cost model (``unchecked_merged_tokens``, ``unchecked_latent_bits``,
``payload_costs``) and the quality profile's interpolation on (N,) arrays. The profile backend only:
the live backbone stays scalar.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.meg.channel import channel_snr, draw_channel, feature_noise_std, rate_bps
from edgegen.envs.meg.cost_model import payload_costs, unchecked_latent_bits, unchecked_merged_tokens
from edgegen.envs.meg.env import MEGEnv
from edgegen.envs.meg.quality import _interp_weights
from edgegen.envs.oracle_result import OracleResult
from edgegen.envs.vector import BatchedEdgeGenEnv

__all__ = ["MEGVectorEnv"]

_OBS_CLIP = 10.0


class MEGVectorEnv(BatchedEdgeGenEnv):
    """N MEG-v0 sub-envs stepped together (see :mod:`envs.vector` for the API)."""

    single_env_class: ClassVar[type[EdgeGenEnv]] = MEGEnv

    def __init__(self, num_envs: int, **kwargs: Any) -> None:
        """Same keyword arguments as the scalar env, plus ``autoreset_mode``."""
        super().__init__(num_envs, **kwargs)
        env: MEGEnv = self.envs[0]  # type: ignore[assignment]
        cfg, profile = self.config, env.profile
        n, frames = self.num_envs, self.horizon + 1
        self._compute_latency = np.asarray(env._compute_latency)
        self._compute_energy = np.asarray(env._compute_energy)
        self._n_choices = env._n_choices
        self._tokens = cfg.n_tokens
        self._latent = env._latent
        self._power_w = cfg.tx_power_w
        self._half_rho_max = env._half_rho_max
        self._inv_limits = np.asarray(env._inv_limits)
        self._rho_grid = profile.rho
        self._step_offset = env._step_offset
        self._mean_by_sigma = profile.ln_mse_mean.transpose(2, 0, 1)  # (sigma, steps, rho)
        self._std_by_sigma = profile.ln_mse_std.transpose(2, 0, 1)
        self._profile_sigma = profile.sigma
        self._fixed_noise = cfg.feature_noise == "fixed"
        self._store: dict[str, np.ndarray] = {
            "rate": np.ones((n, frames)),
            "snr_db": np.zeros((n, frames)),
            "sigma": np.zeros((n, frames)),
            "left": np.zeros((n, frames), np.int64),
            "weight": np.zeros((n, frames)),
            "spread": np.zeros((n, frames)),
            "mix": np.zeros((n, frames)),
            "obs_snr": np.zeros((n, frames), np.float32),
        }

    def _reset_rows(self, rows: np.ndarray, seeds: list[int | None] | None = None) -> np.ndarray:
        cfg, frames = self.config, self.horizon + 1
        distance: list[np.ndarray] = []
        innovations: list[np.ndarray] = []
        spread: list[np.ndarray] = []
        mix: list[np.ndarray] = []
        for i in rows.tolist():
            rng = self._rngs[i]
            assert rng is not None
            draws = draw_channel(cfg, rng, frames)  # the scalar env's draws, in its order
            distance.append(draws["distance_m"])
            innovations.append(draws["innovations"])
            spread.append(rng.standard_normal(frames) if cfg.reward_spread else np.zeros(frames))
            mix.append(rng.random(frames))
        fading = np.stack(innovations) if cfg.rayleigh_fading else None
        snr_arr = channel_snr(cfg, np.stack(distance), fading)
        s = self._store
        snr_db = 10.0 * np.log10(snr_arr)
        sigma = feature_noise_std(cfg, snr_arr)
        noise_for_table = np.float64(cfg.feature_noise_std) if self._fixed_noise else sigma
        left, weight = _interp_weights(self._profile_sigma, np.asarray(noise_for_table))
        s["rate"][rows] = rate_bps(cfg, snr_arr)
        s["snr_db"][rows] = snr_db
        s["sigma"][rows] = sigma
        s["left"][rows] = left
        s["weight"][rows] = weight
        s["spread"][rows] = np.stack(spread)
        s["mix"][rows] = np.stack(mix)
        s["obs_snr"][rows] = np.clip(snr_db / 10.0, -_OBS_CLIP, _OBS_CLIP)
        obs = np.zeros((rows.size, 3), np.float32)
        obs[:, 0] = s["obs_snr"][rows, 0]
        return obs

    def _cell(self, table: np.ndarray, left: np.ndarray, weight: np.ndarray, row: np.ndarray, j: np.ndarray):
        # the formula of QualityProfile.table_at_sigma, evaluated at the cells the step reads only
        return (1 - weight) * table[left, row, j] + weight * table[left + 1, row, j]

    def _step_rows(self, rows: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        s, t = self._store, self._t[rows]
        a0 = actions[:, 0].astype(np.float64)
        a1 = actions[:, 1].astype(np.float64)
        n_idx = np.minimum((self._n_choices * 0.5 * (a0 + 1.0)).astype(np.int64), self._n_choices - 1)
        rho = self._half_rho_max * (a1 + 1.0)
        merged = unchecked_merged_tokens(rho, self._tokens)
        channels, tokens, bits_per_value = self._latent
        bits = unchecked_latent_bits(merged, channels, tokens, bits_per_value)
        rate = s["rate"][rows, t]
        _, latency, energy = payload_costs(
            self._compute_latency[n_idx], self._compute_energy[n_idx], bits, rate, self._power_w
        )
        grid = self._rho_grid
        j = np.minimum(np.searchsorted(grid, rho, side="right") - 1, grid.size - 2)
        w = (rho - grid[j]) / (grid[j + 1] - grid[j])
        row = n_idx + self._step_offset
        left, weight = s["left"][rows, t], s["weight"][rows, t]
        mean_j = self._cell(self._mean_by_sigma, left, weight, row, j)
        mean_k = self._cell(self._mean_by_sigma, left, weight, row, j + 1)
        std_j = self._cell(self._std_by_sigma, left, weight, row, j)
        std_k = self._cell(self._std_by_sigma, left, weight, row, j + 1)
        ln_mse = mean_j + w * (mean_k - mean_j)
        ln_mse += (std_j + w * (std_k - std_j)) * s["spread"][rows, t]
        ratio_l, ratio_e = latency * self._inv_limits[0], energy * self._inv_limits[1]
        obs = np.empty((rows.size, 3), np.float32)
        obs[:, 0] = s["obs_snr"][rows, t + 1]
        obs[:, 1] = ratio_l
        obs[:, 2] = ratio_e
        np.clip(obs, -_OBS_CLIP, _OBS_CLIP, out=obs)
        return obs, -ln_mse, np.stack((latency, energy), axis=1), ln_mse

    def _oracle(self, kind: str) -> list[OracleResult]:
        """The stationary oracle's action in every sub-env's current frame: one vectorised choice."""
        if (self._t >= self.horizon).any():
            raise RuntimeError("MEG-v0: a sub-env has no episode in progress; call reset() first")
        env: MEGEnv = self.envs[0]  # type: ignore[assignment]
        from edgegen.solvers.meg_oracle import frame_rewards

        solved = env.solved_oracle()
        s, t = self._store, self._t
        sigma = s["sigma"][self._all, t]
        rewards = frame_rewards(env.profile, solved.grid, sigma[:, None])[:, 0, :]
        idx = solved.choose(s["rate"][self._all, t], rewards, s["mix"][self._all, t])
        objective = -solved.expected_reward
        bound = min(-solved.dual_value, objective)
        return [
            OracleResult(
                action=env.physical_to_action(int(solved.grid.steps[k]), float(solved.grid.rho[k])),
                objective=objective,
                lower_bound=bound,
                status="optimal",
            )
            for k in idx.tolist()
        ]
