"""FedDiffusion-v0: per-round time allocation for on-demand quantized federated diffusion."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.cmdp import CostSpec, zero_cost_info
from envs.fed_diffusion.config import FedDiffusionConfig, make_config
from envs.fed_diffusion.energy import RoundProblem, device_outcome
from envs.presets import check_render_mode, env_config
from envs.quantization import RANGE_HEADER_BITS
from envs.rendering import cost_bar_chart
from envs.wireless import channel_gain, path_loss_db_macro, rayleigh_power_gain, shadowing_db
from solvers.fed_energy import solve_round_energy

__all__ = ["FedDiffusionEnv"]

_OBS_CLIP = 10.0
# Bound ufunc reductions: a few microseconds cheaper per step than the ndarray methods.
_sum_reduce, _max_reduce = np.add.reduce, np.maximum.reduce


class FedDiffusionEnv(gym.Env):
    """Split each federated round's time budget between local training and upload, per device.

    ## Description

    K devices train a diffusion model (the CIFAR-10 DDPM U-Net, 35.7 M parameters, by default) by
    federated averaging. In every round each device trains ``I`` local passes over its ``D_k``
    samples, then uploads its model stochastically quantized at the bit-width it demands
    (on-demand quantization, ``b_k`` in {4, 8, 16}). The agent chooses, per device, the share of the
    round's time budget ``T`` spent uploading; the CPU frequency and the transmit power then follow
    from the tight time and rate constraints. The aim is the least round energy with no device late.
    The cycles per sample come from the DDPM's counted training FLOPs (forward + backward, torch
    meta device) divided by the device's FLOPs per cycle; the upload size is ``d b_k + 64`` bits.

    ## Action Space

    ``Box(-1, 1, (K,), float32)``; out-of-range values are clipped, NaN/inf raise ``ValueError``.

    | Num | Action | Maps to | Unit |
    |-----|--------|---------|------|
    | k | upload share of device k | ``s_k = (a_k + 1) / 2``: upload ``s_k T``, compute ``(1 - s_k) T`` | 1 |

    Frequency ``f_k = I C_k D_k / ((1 - s_k) T)`` and power
    ``p_k = (N0 B_k / h_k)(2^(S_k / (B_k s_k T)) - 1)`` are capped at ``f_max`` / ``p_max``; a capped
    device takes longer than ``T`` and misses the deadline.

    ## Observation Space

    ``Box(0, 10, (3K + 1,), float32)``: per device three times relative to ``T`` that determine its
    energy trade-off (with the constants ``f_max``, ``p_max``), then the round progress.

    | Num | Observation | Min | Max | Unit |
    |-----|-------------|-----|-----|------|
    | 3k | computation time at f_max / T | 0 | 10 | 1 |
    | 3k + 1 | upload time at p_max / T (this round's fading) | 0 | 10 | 1 |
    | 3k + 2 | ``S_k ln 2 / (B_k T)``: upload time scale at unlimited SNR / T | 0 | 10 | 1 |
    | 3K | rounds done / R | 0 | 1 | 1 |

    ## Rewards

    ``-(sum_k E_k) / energy_scale_j`` with ``E_k = kappa I C_k D_k f_k^2 + p_k t_k`` (J), computed from the
    frequency and power actually applied.

    ## Costs

    | Index | Name | Unit | Per-step limit |
    |-------|------|------|----------------|
    | 0 | deadline_miss_fraction | 1 | ``deadline_miss_limit`` (0.05) |

    ``info["cost"] = costs[0] / limit``. ``info`` also holds ``energy_j``, ``device_energy_j``,
    ``compute_energy_j``, ``upload_energy_j``, ``compute_time_s``, ``upload_time_s``, ``frequency_hz``,
    ``power_w``, ``late``, ``upload_bits``; with ``oracle_in_info=True`` also ``oracle_energy_j`` (the
    optimum of this round), at the price of one oracle solve per episode (~20 % of the steps/s).

    With ``backend="live"`` every step also runs one real FedAvg round of a small DDPM
    (``envs.backends.federated_ddpm``: K devices, 16x16 shapes, updates quantized at the bits in force)
    and adds ``live_train_loss``, ``live_heldout_loss``, ``live_quantization_error_sq`` and its
    ``live_quantization_error_bound``, ``live_upload_bits``, and ``live_frechet_distance`` (after the
    last round, or every ``live_fd_every`` rounds); ``live_quality_weight`` subtracts the weighted
    held-out loss from the reward. A round takes a few seconds on 2 CPU cores.

    ## Starting State

    Per episode: distances ``U[min_distance_m, max_distance_m]``, shadowing ``N(0, 8 dB)``, data sizes
    ``U{min_samples..max_samples}``, demanded bits from ``demanded_bits_choices``; per round: Rayleigh
    block fading ``|h|^2 ~ Exp(1)``. All are drawn at ``reset`` from ``self.np_random``.

    ## Episode End

    1. Termination: never.
    2. Truncation: after ``num_rounds`` rounds (50); the env truncates itself, and the registered
       ``max_episode_steps`` is 50 (pass ``max_episode_steps`` to ``gymnasium.make`` with ``num_rounds``).

    ## Oracle

    ``oracle_action()`` returns the exact minimum-energy allocation of the current round
    (``solvers.fed_energy.solve_round_energy``: KKT, Lambert W, bisection on the deadline multiplier).

    ## Arguments

    | Parameter | Type | Default | Description |
    |-----------|------|---------|-------------|
    | preset | str | "default" | "default", "static" (path loss only) or "large" (K = 50) |
    | render_mode | str or None | None | "ansi" or "rgb_array" |
    | backend | str | "model" | "live" also trains a small federated DDPM for real, one round per step |
    | **overrides | | | any field of ``FedDiffusionConfig`` (e.g. ``num_devices=20``) |

    >>> import gymnasium as gym, envs
    >>> env = gym.make("edgegen/FedDiffusion-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["costs"]
    ((31,), array([0.]))
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
    >>> bool(np.isclose(-reward * 10.0, info["energy_j"])), info["costs"].tolist()
    (True, [0.0])

    ## Version History

    * v0: initial version.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    baseline_names: ClassVar[tuple[str, ...]] = ("equal_split",)
    """Named heuristic policies of :meth:`baseline_action` (besides the oracle and random)."""

    def __init__(
        self,
        preset: str = "default",
        render_mode: str | None = None,
        config: FedDiffusionConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Build the env from a preset plus overrides, or from a ready ``config``."""
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.config = env_config("FedDiffusionEnv", config, make_config, preset, overrides)
        self.render_mode = render_mode
        cfg = self.config
        k = cfg.num_devices
        self.cost_spec = CostSpec(("deadline_miss_fraction",), ("1",), (cfg.deadline_miss_limit,))
        self.action_space = spaces.Box(-1.0, 1.0, shape=(k,), dtype=np.float32)
        high = np.full(3 * k + 1, _OBS_CLIP, dtype=np.float32)
        high[-1] = 1.0
        self.observation_space = spaces.Box(np.zeros_like(high), high, dtype=np.float32)
        # Scalars of the hot path, read once (config properties convert units on every access).
        self._budget_s, self._max_power_w = cfg.round_time_s, cfg.max_power_w
        self._half_budget_s = 0.5 * cfg.round_time_s
        self._energy_scale_j = cfg.energy_scale_j
        self._inv_miss_limit = 1.0 / cfg.deadline_miss_limit
        self._cycles_per_sample = cfg.local_iterations * cfg.cycles_per_sample
        self._num_params = float(cfg.num_params)
        self._noise_power_w = cfg.noise_power_w
        self._bits_choices = np.asarray(cfg.demanded_bits_choices, dtype=np.int64)
        self._num_sample_sizes = cfg.max_samples - cfg.min_samples + 1
        self._bits_fixed_demand = np.asarray(cfg.demanded_bits or (), dtype=np.int64)
        self._bits_scheme = np.full(k, 32 if cfg.quantization == "none" else cfg.fixed_bits, dtype=np.int64)
        self._progress = np.arange(cfg.num_rounds + 1) / cfg.num_rounds
        self._num_rounds = cfg.num_rounds
        self._oracle_in_info = cfg.oracle_in_info
        self._action_shape = (k,)
        self._round = cfg.num_rounds  # no episode until reset()
        self._episode: RoundProblem | None = None
        self._last_info: dict[str, Any] = zero_cost_info(self.cost_spec)

    # -- episode ----------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new episode (devices, demands, and the fading of every round)."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"FedDiffusion-v0 reset takes no options, got {sorted(options)}")
        cfg, rng = self.config, self.np_random
        k, rounds = cfg.num_devices, cfg.num_rounds
        distance_m = rng.uniform(cfg.min_distance_m, cfg.max_distance_m, size=k)
        shadow_db = shadowing_db(rng, cfg.shadowing_std_db, k)
        # Uniform integer draws by flooring one block of uniforms (cheaper than rng.integers).
        uniforms = rng.random((2, k))
        samples = cfg.min_samples + (uniforms[0] * self._num_sample_sizes).astype(np.int64)
        if cfg.demanded_bits is not None:
            demanded = self._bits_fixed_demand
        else:
            demanded = self._bits_choices[(uniforms[1] * self._bits_choices.size).astype(np.int64)]
        bits = demanded if cfg.quantization == "on_demand" else self._bits_scheme
        fading = rayleigh_power_gain(rng, (rounds, k)) if cfg.rayleigh_fading else np.ones((rounds, k))
        episode = RoundProblem(
            cycles=self._cycles_per_sample * samples,
            payload_bits=self._num_params * bits + RANGE_HEADER_BITS,
            gain=channel_gain(path_loss_db_macro(distance_m) + shadow_db, 0.0, fading),
            bandwidth_hz=cfg.device_bandwidth_hz,
            noise_power_w=self._noise_power_w,
            round_time_s=cfg.round_time_s,
            max_frequency_hz=cfg.max_frequency_hz,
            max_power_w=self._max_power_w,
            kappa=cfg.kappa,
        )
        self._episode = episode
        self._oracle: tuple[np.ndarray, list[float]] | None = None
        if cfg.oracle_in_info:
            self._solve_oracle()
        self._bits = bits
        # Per-device constants (K,) and per-round arrays (R, K) that the step reads.
        self._cycles, self._tau_min, self._upload_scale_s = (
            episode.cycles,
            episode.min_compute_time_s,
            episode.upload_scale_s,
        )
        self._kappa_cycles = cfg.kappa * episode.cycles
        self._t_min, self._noise_over_gain_w = episode.min_upload_time_s, episode.noise_over_gain_w
        inv_budget = 1.0 / cfg.round_time_s
        obs = np.empty((rounds + 1, k, 3), dtype=np.float32)
        obs[:rounds, :, 0] = episode.min_compute_time_s * inv_budget
        obs[:rounds, :, 1] = episode.min_upload_time_s * inv_budget
        obs[:rounds, :, 2] = episode.upload_scale_s * inv_budget
        obs[rounds] = obs[rounds - 1]
        np.minimum(obs, _OBS_CLIP, out=obs)
        self._obs = np.empty((rounds + 1, 3 * k + 1), dtype=np.float32)
        self._obs[:, :-1] = obs.reshape(rounds + 1, 3 * k)
        self._obs[:, -1] = self._progress
        self._round = 0
        self._last_info = zero_cost_info(self.cost_spec)
        if cfg.backend == "live":
            from envs.backends.federated_ddpm import FederatedDDPM, FederatedDDPMConfig

            self._live = FederatedDDPM(FederatedDDPMConfig(num_devices=k), seed=int(rng.integers(2**31 - 1)))
        info = {
            **self._last_info,
            "demanded_bits": demanded.copy(),
            "upload_bits": bits.copy(),
            "samples": samples,
            "distance_m": distance_m,
        }
        return self._obs[0].copy(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the upload shares of this round; see the class docstring for the outputs."""
        r = self._round
        if r >= self._num_rounds:
            raise RuntimeError("FedDiffusion-v0: no episode in progress; call reset() before step()")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self._action_shape:
            raise ValueError(f"FedDiffusion-v0 action must have shape {self._action_shape}, got {a.shape}")
        if not _max_reduce(np.abs(a)) <= 1.0:  # fast path: in range (so finite); NaN fails the test
            bad = np.flatnonzero(~np.isfinite(a)).tolist()
            if bad:
                raise ValueError(f"FedDiffusion-v0 action has NaN/inf at entries {bad}: {a[bad].tolist()}")
            a = np.minimum(np.maximum(a, -1.0), 1.0)  # out-of-range actions are clipped
        upload_plan_s = a * self._half_budget_s  # s T = (a + 1) T / 2
        upload_plan_s += self._half_budget_s
        out = device_outcome(
            upload_plan_s,
            self._budget_s,
            self._cycles,
            self._kappa_cycles,
            self._tau_min,
            self._t_min[r],
            self._noise_over_gain_w[r],
            self._upload_scale_s,
        )
        energy = out.compute_energy_j + out.upload_energy_j
        total = float(_sum_reduce(energy))
        miss = np.count_nonzero(out.late) / energy.size
        self._round = r + 1
        info = {
            "costs": np.array([miss]),
            "cost": miss * self._inv_miss_limit,
            "energy_j": total,
            "device_energy_j": energy,
            "compute_energy_j": out.compute_energy_j,
            "upload_energy_j": out.upload_energy_j,
            "compute_time_s": out.compute_time_s,
            "upload_time_s": out.upload_time_s,
            "frequency_hz": out.frequency_hz,
            "power_w": out.power_w,
            "late": out.late,
            "upload_bits": self._bits.copy(),
        }
        if self._oracle_in_info:
            info["oracle_energy_j"] = self._oracle[1][r]
        reward = -total / self._energy_scale_j
        if self.config.backend == "live":
            reward -= self._live_round(info, last=r + 1 >= self._num_rounds)
        self._last_info = info
        return self._obs[r + 1].copy(), reward, False, r + 1 >= self._num_rounds, info

    def _live_round(self, info: dict[str, Any], last: bool) -> float:
        """Run one real FedAvg round with the bits in force; quality into info; the reward's quality term."""
        report = self._live.run_round(self._bits)
        loss = self._live.heldout_loss()
        info["live_train_loss"] = float(report.train_loss.mean())
        info["live_heldout_loss"] = loss
        info["live_quantization_error_sq"] = report.quantization_error_sq
        info["live_quantization_error_bound"] = report.quantization_error_bound
        info["live_upload_bits"] = report.upload_bits
        every = self.config.live_fd_every
        if last or (every and self._live.rounds % every == 0):
            info["live_frechet_distance"] = self._live.frechet_distance()
        return self.config.live_quality_weight * loss

    # -- oracle and baselines ---------------------------------------------------------------------
    def oracle_action(self) -> np.ndarray:
        """The exact minimum-energy action of the current round (Box(-1, 1))."""
        self._check_in_episode()
        return self._solve_oracle()[0][self._round].copy()

    def oracle_energy_j(self) -> float:
        """Round energy of the oracle's action in the current round (J)."""
        self._check_in_episode()
        return self._solve_oracle()[1][self._round]

    def _solve_oracle(self) -> tuple[np.ndarray, list[float]]:
        # The whole episode is drawn at reset, so one vectorised call solves every round.
        if self._oracle is None:
            result = solve_round_energy(self._episode)
            self._oracle = (result.action, result.total_energy_j.tolist())  # floats: cheap to index
        return self._oracle

    def equal_split_action(self) -> np.ndarray:
        """Baseline: half of the budget to computation, half to upload, for every device."""
        return np.zeros(self.action_space.shape, dtype=np.float32)

    def baseline_action(self, name: str) -> np.ndarray:
        """The action of the named baseline (one of ``baseline_names``) in the current state."""
        if name == "equal_split":
            return self.equal_split_action()
        raise ValueError(f"unknown FedDiffusion-v0 baseline {name!r}; choose one of {self.baseline_names}")

    def round_problem(self) -> RoundProblem:
        """The physical data of the current round (for solvers and analysis)."""
        self._check_in_episode()
        return self._episode[self._round]

    def _check_in_episode(self) -> None:
        if self._round >= self._num_rounds:
            raise RuntimeError("FedDiffusion-v0: no episode in progress; call reset() first")

    # -- rendering --------------------------------------------------------------------------------
    def render(self) -> str | np.ndarray | None:
        """Render: "ansi" gives one line of round, energy and misses; "rgb_array" costs vs limits."""
        if self.render_mode is None:
            gym.logger.warn(
                "FedDiffusion-v0.render() called without a render_mode; set render_mode in make()"
            )
            return None
        info = self._last_info
        if self.render_mode == "ansi":
            energy = info.get("energy_j", 0.0)
            return (
                f"round {self._round}/{self.config.num_rounds}  energy {energy:.3f} J  "
                f"missed {info['costs'][0]:.2%} (limit {self.config.deadline_miss_limit:.0%})"
            )
        return cost_bar_chart(info["costs"], self.cost_spec.limits_array)
