"""MEG-v0: mobile edge generation with dynamic denoising steps and latent token merging."""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from functools import cache
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.extras import require_extra
from edgegen.envs.integrity import verify_assets
from edgegen.envs.meg.channel import episode_snr, feature_noise_std, rate_bps
from edgegen.envs.meg.config import PRESETS, MEGConfig
from edgegen.envs.meg.cost_model import (
    payload_costs,
    task_energy_j,
    task_latency_s,
    unchecked_latent_bits,
    unchecked_merged_tokens,
)
from edgegen.envs.meg.quality import QualityProfile, load_profile
from edgegen.envs.oracle_result import OracleResult
from edgegen.solvers.meg_oracle import MEGOracle, best_fixed_action, frame_rewards, solve_meg_oracle

__all__ = ["MEGEnv"]

_OBS_CLIP = 10.0
_LIVE_IMAGE_SCALE = 4  # the 32^2 backbone image is shown at 128^2
_f64, _i64, _TRUE, _FALSE = np.float64, np.int64, np.True_, np.False_


@cache
def _profile(path: str | None, decoder: str) -> QualityProfile:
    return load_profile(path, decoder)


@cache
def _oracle(config: MEGConfig) -> MEGOracle:
    return solve_meg_oracle(config, _profile(config.profile_path, config.decoder))


class MEGEnv(EdgeGenEnv[MEGConfig]):
    """Choose denoising steps and a merge ratio per generation task, under latency and energy budgets.

    ## Description

    An edge server (ES) runs ``N`` denoising steps of a latent diffusion U-Net (SDXL at 1024^2 for the
    costs, FLOPs counted on the meta device), merges ``r = floor(rho T)`` of the latent's ``T`` tokens
    (2x2 patches, bipartite soft matching in 2x2 windows) and sends the rest over a 1 MHz downlink;
    the UE unmerges and decodes. Fewer steps and more merging save time and energy but degrade the
    image. The quality comes from a profile measured on a real split-diffusion backbone shipped with the
    project (``envs/assets/meg_quality_profile.npz``), or, with ``backend="live"``, from running it.

    ## Action Space

    ``Box(-1, 1, (2,), float32)``, ``u = (a + 1) / 2``; out-of-range values are clipped, NaN/inf raise
    ``ValueError``.

    | Num | Action | Maps to |
    |-----|--------|---------|
    | 0 | denoising steps | ``N = N_min + floor((N_max - N_min + 1) u0)``, clipped to [4, 12] |
    | 1 | merge ratio | ``rho = 0.75 u1`` (``r = floor(rho T)`` tokens merged) |

    ## Observation Space

    ``Box(-10, 10, (3,), float32)``.

    | Num | Observation | Unit |
    |-----|-------------|------|
    | 0 | SNR of this frame / 10 | dB / 10 |
    | 1 | latency of the previous frame / L_max | 1 |
    | 2 | energy of the previous frame / E_max | 1 |

    ## Rewards

    ``-ln MSE(N, rho, sigma)`` between the UE's image and the reference (12 steps, no merging,
    noiseless): the profile's mean plus its measured per-sample spread times a standard normal draw
    (``reward_spread=False`` gives the mean).

    ## Costs

    | Index | Name | Unit | Per-step limit |
    |-------|------|------|----------------|
    | 0 | latency_s | s | ``latency_s_limit`` (3.8 s) |
    | 1 | energy_j | J | ``energy_j_limit`` (650 J) |

    Latency ``N F_step g / Theta_ES + L0 + D / R + F_dec / Theta_UE``, energy
    ``e_ES N F_step g + e_UE F_dec + P D / R`` with ``D = b [4C (T - r) + r]`` bits and
    ``R = B log2(1 + SNR)``. ``info["cost"] = max_i costs[i] / limits[i]``. ``info`` also holds
    ``steps``, ``merge_ratio``, ``merged_tokens``, ``bits``, ``rate_bps``, ``snr_db``, ``sigma``,
    ``tx_latency_s``, ``ln_mse`` (and ``image`` with the live backend).

    ## Starting State

    Per frame: UE distance ``U[200, 300]`` m (and Rayleigh fading with Gauss-Markov correlation in
    preset "fading"), the reward's spread draw, and with the live backend a prompt and a seed; all
    drawn at ``reset`` from ``self.np_random``. The previous latency and energy start at 0.

    ## Episode End

    1. Termination: never.
    2. Truncation: after ``horizon`` frames (64); ``env.spec.max_episode_steps`` reports the configured
       value.

    ## Oracle

    ``oracle()`` gives the action of the best stationary policy (``solvers.meg_oracle``: dual
    decomposition over the (N, rho) grid with time-sharing) in this frame; its ``objective`` is the
    policy's expected ln MSE per frame and ``lower_bound`` the Lagrange dual bound. The policy meets
    the limits on average, not in every frame. ``best_fixed_action()`` and ``random`` are the baselines.

    ## Arguments

    | Parameter | Type | Default | Description |
    |-----------|------|---------|-------------|
    | preset | str | "paper" | "paper" (path loss only) or "fading" (Rayleigh + Gauss-Markov) |
    | config | MEGConfig | None | a ready config instead of preset + overrides |
    | render_mode | str or None | None | "ansi" or "rgb_array" (the decoded image when live) |
    | **overrides | | | any field of ``MEGConfig`` (e.g. ``backend="live"``, ``latency_s_limit=3``) |

    >>> import gymnasium as gym, edgegen
    >>> env = gym.make("edgegen/MEG-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["costs"]
    ((3,), array([0., 0.]))
    >>> obs, reward, terminated, truncated, info = env.step(np.array([1.0, -1.0], dtype=np.float32))
    >>> int(info["steps"]), int(info["merged_tokens"]), float(info["bits"])
    (12, 0, 1048576.0)

    ## Version History

    * v0: initial version.
    """

    env_name: ClassVar[str] = "MEG-v0"
    config_class: ClassVar[type] = MEGConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    default_preset: ClassVar[str] = "paper"
    horizon_field: ClassVar[str] = "horizon"
    cost_names: ClassVar[tuple[str, ...]] = ("latency_s", "energy_j")
    cost_units: ClassVar[tuple[str, ...]] = ("s", "J")
    objective_key: ClassVar[str] = "ln_mse"
    oracle_kinds: ClassVar[tuple[str, ...]] = ("cmdp",)
    baseline_names: ClassVar[tuple[str, ...]] = ("best_fixed",)

    def __init__(
        self,
        preset: str | None = None,
        render_mode: str | None = None,
        config: MEGConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Build the env from a preset plus overrides (config fields), or from a ready ``config``."""
        super().__init__(preset, render_mode, config, **overrides)
        cfg = self.config
        self.profile = _profile(cfg.profile_path, cfg.decoder)
        self.profile.step_index([cfg.min_steps, cfg.max_steps])  # the profile must cover the steps
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-_OBS_CLIP, _OBS_CLIP, shape=(3,), dtype=np.float32)
        self._action_shape = (2,)

        # Per-N compute parts of the cost model as Python floats (indexing lists beats numpy for
        # scalars); the step combines them with the payload through the cost model's payload_costs.
        model, n_img = cfg.compute_model, cfg.images_per_task
        steps = np.arange(cfg.min_steps, cfg.max_steps + 1)
        self._compute_latency = task_latency_s(model, steps, 0.0, n_img).tolist()
        self._compute_energy = task_energy_j(model, steps, 0.0, cfg.tx_power_w, n_img).tolist()
        self._n_choices = cfg.max_steps - cfg.min_steps + 1
        self._tokens = cfg.n_tokens
        self._latent = (cfg.latent_channels, cfg.n_tokens, n_img * cfg.bits_per_value)
        self._power_w = cfg.tx_power_w
        self._half_rho_max = 0.5 * cfg.max_merge_ratio
        self._inv_limits = (1.0 / cfg.latency_s_limit, 1.0 / cfg.energy_j_limit)
        self._rho_grid = self.profile.rho.tolist()
        self._step_offset = cfg.min_steps - int(self.profile.steps[0])
        self._fixed_table = None
        if cfg.feature_noise == "fixed":
            mean, std = self.profile.table_at_sigma(cfg.feature_noise_std)
            self._fixed_table = (mean.tolist(), std.tolist())
        self._backbone: Any = None
        self._live = cfg.backend == "live"
        if self._live:  # the backbone loads at the first step: check its files now, not then
            require_extra("live", "torch", "diffusers", "safetensors")
            from edgegen.envs.backends.diffusion.backbone import DEFAULT_BACKBONE_DIR

            verify_assets(DEFAULT_BACKBONE_DIR)
        self._image_rgb: np.ndarray | None = None

    def _info_template(self) -> dict[str, Any]:
        return {
            "steps": np.int64(0),
            "merge_ratio": np.float64(0.0),
            "merged_tokens": np.int64(0),
            "bits": np.float64(0.0),
            "rate_bps": np.float64(0.0),
            "snr_db": np.float64(np.nan),
            "sigma": np.float64(np.nan),
            "tx_latency_s": np.float64(0.0),
            "ln_mse": np.float64(np.nan),
        }

    # -- episode ----------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw the channel of every frame of a new episode (and its reward noise, prompts, seeds)."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"MEG-v0 reset takes no options, got {sorted(options)}")
        cfg, rng = self.config, self.np_random
        n = cfg.horizon + 1  # one more frame: the observation after the last step
        snr = episode_snr(cfg, rng, n)
        self._snr_db = 10.0 * np.log10(snr)
        self._rate = rate_bps(cfg, snr)
        self._sigma = feature_noise_std(cfg, snr)
        self._spread_draw = (rng.standard_normal(n) if cfg.reward_spread else np.zeros(n)).tolist()
        self._mix_draw = rng.random(n)  # the oracle's time-sharing coin, one per frame
        if self._fixed_table is None:
            mean, std = self.profile.table_at_sigma(self._sigma)
            self._tables = list(zip(mean.tolist(), std.tolist(), strict=True))
        if cfg.backend == "live":
            self._prompts = rng.integers(0, 10, n)
            self._seeds = rng.integers(0, 2**31 - 1, n)
        obs = np.zeros((n, 3), dtype=np.float32)
        obs[:, 0] = np.clip(self._snr_db / 10.0, -_OBS_CLIP, _OBS_CLIP)
        self._obs_snr = obs[:, 0].copy()
        self._rate_list, self._sigma_list = self._rate.tolist(), self._sigma.tolist()
        self._snr_db_list = self._snr_db.tolist()
        self._t = 0
        self._image_rgb = None
        info = self._reset_info(snr_db=np.float64(self._snr_db[0]), sigma=np.float64(self._sigma_list[0]))
        return obs[0], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Run one generation task with the chosen steps and merge ratio."""
        t = self._t
        if t >= self._horizon:
            raise RuntimeError("MEG-v0: no episode in progress; call reset() before step()")
        if type(action) is not np.ndarray:
            action = np.asarray(action, dtype=np.float64)
        if action.shape != (2,):
            raise ValueError(f"MEG-v0 action must have shape (2,), got {action.shape}")
        a0, a1 = float(action[0]), float(action[1])
        clipped = not (-1.0 <= a0 <= 1.0 and -1.0 <= a1 <= 1.0)  # NaN fails every comparison
        if clipped:
            self._raise_if_not_finite(action)
            a0, a1 = min(max(a0, -1.0), 1.0), min(max(a1, -1.0), 1.0)
        n_idx = min(int(self._n_choices * 0.5 * (a0 + 1.0)), self._n_choices - 1)
        rho = self._half_rho_max * (a1 + 1.0)
        merged = int(unchecked_merged_tokens(rho, self._tokens))
        channels, tokens, bits_per_value = self._latent
        bits = unchecked_latent_bits(merged, channels, tokens, bits_per_value)
        tx_s, latency, energy = payload_costs(
            self._compute_latency[n_idx], self._compute_energy[n_idx], bits, self._rate_list[t], self._power_w
        )
        steps = n_idx + self.config.min_steps

        if self._live:
            ln_mse = self._live_ln_mse(t, steps, rho)
        else:
            mean_rows, std_rows = self._fixed_table if self._fixed_table is not None else self._tables[t]
            row, spread = mean_rows[n_idx + self._step_offset], std_rows[n_idx + self._step_offset]
            j = min(bisect_right(self._rho_grid, rho) - 1, len(self._rho_grid) - 2)
            w = (rho - self._rho_grid[j]) / (self._rho_grid[j + 1] - self._rho_grid[j])
            ln_mse = row[j] + w * (row[j + 1] - row[j])
            ln_mse += (spread[j] + w * (spread[j + 1] - spread[j])) * self._spread_draw[t]

        self._t = t + 1
        ratio_l, ratio_e = latency * self._inv_limits[0], energy * self._inv_limits[1]
        obs = np.array((self._obs_snr[t + 1], ratio_l, ratio_e), np.float32)
        np.clip(obs, -_OBS_CLIP, _OBS_CLIP, out=obs)
        info = {
            "costs": np.array((latency, energy)),
            "cost": _f64(ratio_l if ratio_l > ratio_e else ratio_e),
            "action_clipped": _TRUE if clipped else _FALSE,
            "steps": _i64(steps),
            "merge_ratio": _f64(rho),
            "merged_tokens": _i64(merged),
            "bits": _f64(bits),
            "rate_bps": _f64(self._rate_list[t]),
            "snr_db": _f64(self._snr_db_list[t]),
            "sigma": _f64(self._sigma_list[t]),
            "tx_latency_s": _f64(tx_s),
            "ln_mse": _f64(ln_mse),
        }
        self._last_info = info
        return obs, -ln_mse, False, t + 1 >= self._horizon, info

    # -- live backend -----------------------------------------------------------------------------
    def _live_ln_mse(self, t: int, steps: int, rho: float) -> float:
        """Run the shipped backbone for this frame's prompt and seed; ln MSE against its reference."""
        import torch

        from edgegen.envs.backends.diffusion.backbone import load_default_backbone

        if self._backbone is None:
            self._backbone = load_default_backbone()
        backbone, cfg = self._backbone, self.config
        prompt, seed = [int(self._prompts[t])], [int(self._seeds[t])]
        latents = backbone.denoise(prompt, seed, steps)
        reference = backbone.decode(backbone.denoise(prompt, seed, cfg.max_steps), finetuned=False)
        received = backbone.transmit(latents, rho, self._sigma_list[t], seed=seed[0])
        image = backbone.decode(received, finetuned=cfg.decoder == "finetuned")
        mse = float(((image - reference) / 2).pow(2).mean())  # pixels in [0, 1]
        pixels = ((image[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        self._image_rgb = pixels.repeat(_LIVE_IMAGE_SCALE, 0).repeat(_LIVE_IMAGE_SCALE, 1)
        return math.log(max(mse, 1e-10))

    # -- oracle and baselines ---------------------------------------------------------------------
    def solved_oracle(self) -> MEGOracle:
        """The solved dual-decomposition policy of this configuration (cached per configuration)."""
        return _oracle(self.config)

    def _oracle(self, kind: str) -> OracleResult:
        """The best stationary policy's action in the current frame.

        ``objective`` is the policy's expected ln MSE per frame (the negated expected reward) and
        ``lower_bound`` the Lagrange dual bound on it (weak duality over the sampled frames; equal up
        to round-off because time-sharing closes the duality gap).
        """
        t = self._check_in_episode()
        start = time.perf_counter()
        solved = self.solved_oracle()
        rewards = frame_rewards(self.profile, solved.grid, np.asarray(self._sigma_list[t]))
        idx = int(solved.choose(self._rate[t : t + 1], rewards, self._mix_draw[t])[0])
        action = self.physical_to_action(int(solved.grid.steps[idx]), float(solved.grid.rho[idx]))
        objective = -solved.expected_reward
        return OracleResult(
            action=action,
            objective=objective,
            lower_bound=min(-solved.dual_value, objective),
            status="optimal",
            solve_time_s=time.perf_counter() - start,
            details={
                "expected_latency_s": solved.expected_costs[0],
                "expected_energy_j": solved.expected_costs[1],
                "multiplier_latency": solved.dual[0],
                "multiplier_energy": solved.dual[1],
            },
        )

    def physical_to_action(self, steps: int, rho: float) -> np.ndarray:
        """The Box(-1, 1) action that maps to ``steps`` denoising steps and merge ratio ``rho``."""
        cfg = self.config
        if not cfg.min_steps <= steps <= cfg.max_steps:
            raise ValueError(f"steps must lie in [{cfg.min_steps}, {cfg.max_steps}], got {steps}")
        if not 0.0 <= rho <= cfg.max_merge_ratio:
            raise ValueError(f"rho must lie in [0, {cfg.max_merge_ratio}], got {rho}")
        u0 = (steps - cfg.min_steps + 0.5) / self._n_choices
        # Round rho up by a hair so that float32 storage cannot floor the merged tokens one short.
        u1 = min(rho / cfg.max_merge_ratio + 1e-6, 1.0)
        return np.array([2.0 * u0 - 1.0, 2.0 * u1 - 1.0], dtype=np.float32)

    def best_fixed_action(self) -> np.ndarray:
        """Baseline: the fixed (N, rho) with the best expected reward whose average costs meet the limits."""
        steps, rho, _, _ = _best_fixed(self.config)
        return self.physical_to_action(steps, rho)

    def _baseline(self, name: str) -> np.ndarray:
        return self.best_fixed_action()

    # -- rendering --------------------------------------------------------------------------------
    def _ansi(self, info: dict[str, Any]) -> str:
        if self._t == 0:
            return f"frame {self._t}/{self._horizon}  (no task yet)"
        return (
            f"frame {self._t}/{self._horizon}  N={info['steps']} rho={info['merge_ratio']:.2f}  "
            f"latency {info['costs'][0]:.2f} s  energy {info['costs'][1]:.0f} J  "
            f"-lnMSE {-info['ln_mse']:.2f}"
        )

    def _image(self) -> np.ndarray | None:
        return None if self._image_rgb is None else self._image_rgb.copy()


@cache
def _best_fixed(config: MEGConfig) -> tuple[int, float, float, tuple[float, float]]:
    return best_fixed_action(config, _profile(config.profile_path, config.decoder))
