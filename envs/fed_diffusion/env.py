"""FedDiffusion-v0: per-round time allocation for on-demand quantized federated diffusion."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.extras import require_extra
from edgegen.envs.fed_diffusion.config import PRESETS, FedDiffusionConfig
from edgegen.envs.fed_diffusion.energy import RoundProblem, device_outcome, round_outcome
from edgegen.envs.integrity import verify_asset
from edgegen.envs.oracle_result import OracleResult
from edgegen.envs.quantization import payload_bits
from edgegen.envs.wireless import channel_gain, path_loss_db_macro, rayleigh_power_gain, shadowing_db
from edgegen.solvers.fed_cmdp import FedCMDPPolicy, fit_cmdp_policy
from edgegen.solvers.fed_energy import solve_round_energy

__all__ = [
    "Episode",
    "EpisodeBuilder",
    "FedDiffusionEnv",
    "cmdp_oracle_results",
    "cmdp_policy",
    "draw_episode",
    "feasible_float32_action",
    "solve_oracle_results",
]

_OBS_CLIP = 10.0
# Bound ufunc reductions: a few microseconds cheaper per step than the ndarray methods.
_sum_reduce = np.add.reduce
_LIVE_SCALARS = ("live_train_loss", "live_heldout_loss", "live_frechet_distance")
_LIVE_PER_DEVICE = ("live_quantization_error_sq", "live_quantization_error_bound", "live_upload_bits")


class FedDiffusionEnv(EdgeGenEnv[FedDiffusionConfig]):
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
    | 0 | deadline_miss_fraction | 1 | ``deadline_miss_fraction_limit`` (0.05) |

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
    2. Truncation: after ``num_rounds`` rounds (50); the env truncates itself and
       ``env.spec.max_episode_steps`` reports the configured value.

    ## Oracle

    ``oracle(kind)`` returns an ``OracleResult``:

    - ``"cmdp"`` (default, the yardstick): the best stationary policy under the env's *average*
      miss-fraction limit (``solvers.fed_cmdp``). A device goes late when that saves more energy than
      a threshold fitted on 2,048 sampled episodes; on-time devices get the per-round KKT share.
      ``objective`` is the policy's expected round energy in J, ``lower_bound`` its Lagrange dual
      value (equal: a fractional knapsack over the samples).
    - ``"per_round"``: the exact minimum-energy allocation of the current round with no device late
      (``solvers.fed_energy.solve_round_energy``: KKT, Lambert W, a Newton search for the deadline
      multiplier): ``objective`` is the round energy in J of its float32 action (rounded inward so
      that no device that can meet the deadline is late), ``lower_bound`` the exact optimum,
      ``status`` "optimal", or "infeasible" when some device cannot meet the deadline even at
      ``f_max`` and ``p_max`` (it then runs flat out).

    ## Arguments

    | Parameter | Type | Default | Description |
    |-----------|------|---------|-------------|
    | preset | str | "default" | "default", "static" (path loss only) or "large" (K = 50) |
    | config | FedDiffusionConfig | None | a ready config instead of preset + overrides |
    | render_mode | str or None | None | "ansi" or "rgb_array" |
    | backend | str | "model" | "live" also trains a small federated DDPM for real, one round per step |
    | **overrides | | | any field of ``FedDiffusionConfig`` (e.g. ``num_devices=20``) |

    >>> import gymnasium as gym, edgegen
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

    env_name: ClassVar[str] = "FedDiffusion-v0"
    config_class: ClassVar[type] = FedDiffusionConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS
    horizon_field: ClassVar[str] = "num_rounds"
    cost_names: ClassVar[tuple[str, ...]] = ("deadline_miss_fraction",)
    cost_units: ClassVar[tuple[str, ...]] = ("1",)
    objective_key: ClassVar[str] = "energy_j"
    baseline_names: ClassVar[tuple[str, ...]] = ("equal_split",)
    # per device 3 observation features and 1 action value (its time split)
    entity_layout: ClassVar[tuple[int, int] | None] = (3, 1)

    def __init__(
        self,
        preset: str | None = None,
        render_mode: str | None = None,
        config: FedDiffusionConfig | None = None,
        **overrides: Any,
    ) -> None:
        """Build the env from a preset plus overrides (config fields), or from a ready ``config``."""
        super().__init__(preset, render_mode, config, **overrides)
        cfg = self.config
        k = cfg.num_devices
        self.action_space = spaces.Box(-1.0, 1.0, shape=(k,), dtype=np.float32)
        high = np.full(3 * k + 1, _OBS_CLIP, dtype=np.float32)
        high[-1] = 1.0
        self.observation_space = spaces.Box(np.zeros_like(high), high, dtype=np.float32)
        # Scalars of the hot path, read once (config properties convert units on every access).
        self._budget_s, self._max_power_w = cfg.round_time_s, cfg.max_power_w
        self._half_budget_s = np.float64(0.5 * cfg.round_time_s)  # numpy: upcasts a float32 action
        self._energy_scale_j = cfg.energy_scale_j
        self._inv_miss_limit = 1.0 / cfg.deadline_miss_fraction_limit
        self.builder = EpisodeBuilder(cfg)
        if cfg.backend == "live":  # the Frechet classifier loads after the last round: check it now
            require_extra("live", "torch", "diffusers", "safetensors")
            from edgegen.envs.backends.frechet import CLASSIFIER_WEIGHTS

            verify_asset(CLASSIFIER_WEIGHTS)
        self._oracle_in_info = cfg.oracle_in_info
        self._action_shape = (k,)
        self._live: Any = None
        self._episode: RoundProblem | None = None
        self._per_round: list[OracleResult] | None = None

    def _info_template(self) -> dict[str, Any]:
        k = self.config.num_devices
        zeros = np.zeros(k)
        info: dict[str, Any] = {
            "energy_j": np.float64(0.0),
            "device_energy_j": zeros,
            "compute_energy_j": zeros.copy(),
            "upload_energy_j": zeros.copy(),
            "compute_time_s": zeros.copy(),
            "upload_time_s": zeros.copy(),
            "frequency_hz": zeros.copy(),
            "power_w": zeros.copy(),
            "late": np.zeros(k, dtype=bool),
            "upload_bits": np.zeros(k, dtype=np.int64),
        }
        if self._oracle_in_info:
            info["oracle_energy_j"] = np.float64(np.nan)
        if self.config.backend == "live":
            info.update({name: np.float64(np.nan) for name in _LIVE_SCALARS})
            info.update({name: np.full(k, np.nan) for name in _LIVE_PER_DEVICE})
        return info

    # -- episode ----------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new episode (devices, demands, and the fading of every round)."""
        super().reset(seed=seed)
        if options:
            raise ValueError(f"FedDiffusion-v0 reset takes no options, got {sorted(options)}")
        cfg, rng = self.config, self.np_random
        episode = self.builder.build(**draw_episode(cfg, rng))
        self._episode = episode.problem
        self._per_round = None
        if cfg.oracle_in_info:
            self._solve_oracle()
        self._bits, self._demanded = episode.bits, episode.demanded_bits
        # Per-device constants (K,) and per-round arrays (R, K) that the step reads.
        self._cycles, self._kappa_cycles = episode.cycles, episode.kappa_cycles
        self._tau_min, self._upload_scale_s = episode.min_compute_time_s, episode.upload_scale_s
        self._t_min, self._noise_over_gain_w = episode.min_upload_time_s, episode.noise_over_gain_w
        self._obs = episode.obs
        self._samples, self._distance_m = episode.samples, episode.distance_m
        self._t = 0
        if cfg.backend == "live":
            from edgegen.envs.backends.federated_ddpm import FederatedDDPM, FederatedDDPMConfig

            live_config = FederatedDDPMConfig(num_devices=cfg.num_devices)
            self._live = FederatedDDPM(live_config, seed=int(rng.integers(2**31 - 1)))
        info = self._reset_info(upload_bits=episode.bits.copy())
        return self._obs[0].copy(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply the upload shares of this round; see the class docstring for the outputs."""
        r = self._t
        if r >= self._horizon:
            raise RuntimeError("FedDiffusion-v0: no episode in progress; call reset() before step()")
        a, clipped = self._check_action(action)
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
        total = _sum_reduce(energy)
        miss = np.float64(np.count_nonzero(out.late) / energy.size)
        self._t = r + 1
        info = {
            "costs": np.array([miss]),
            "cost": miss * self._inv_miss_limit,
            "action_clipped": np.True_ if clipped else np.False_,
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
            info["oracle_energy_j"] = np.float64(self._solve_oracle()[r].objective)
        reward = -float(total) / self._energy_scale_j
        if self._live is not None:
            reward -= self._live_round(info, last=r + 1 >= self._horizon)
        self._last_info = info
        return self._obs[r + 1].copy(), reward, False, r + 1 >= self._horizon, info

    def _live_round(self, info: dict[str, Any], last: bool) -> float:
        """Run one real FedAvg round with the bits in force; quality into info; the reward's quality term."""
        assert self._live is not None
        report = self._live.run_round(self._bits)
        loss = self._live.heldout_loss()
        info["live_train_loss"] = np.float64(report.train_loss.mean())
        info["live_heldout_loss"] = np.float64(loss)
        info["live_quantization_error_sq"] = np.asarray(report.quantization_error_sq, dtype=np.float64)
        info["live_quantization_error_bound"] = np.asarray(report.quantization_error_bound, dtype=np.float64)
        info["live_upload_bits"] = np.asarray(report.upload_bits, dtype=np.float64)
        every = self.config.live_fd_every
        info["live_frechet_distance"] = np.float64(np.nan)
        if last or (every and self._live.rounds % every == 0):
            info["live_frechet_distance"] = np.float64(self._live.frechet_distance())
        return self.config.live_quality_weight * loss

    # -- oracle and baselines ---------------------------------------------------------------------
    oracle_kinds: ClassVar[tuple[str, ...]] = ("cmdp", "per_round")

    def _oracle(self, kind: str) -> OracleResult:
        r = self._check_in_episode()
        if kind == "per_round":
            return self._solve_oracle()[r]
        assert self._episode is not None
        return cmdp_oracle_results(self.config, self._episode[r : r + 1])[0]

    def oracle_energy_j(self) -> float:
        """Round energy of the per-round oracle's action in the current round (J)."""
        return self.oracle("per_round").objective

    def _solve_oracle(self) -> list[OracleResult]:
        # The whole episode is drawn at reset, so one vectorised call solves every round.
        if self._per_round is None:
            assert self._episode is not None
            self._per_round = solve_oracle_results(self._episode)
        return self._per_round

    def _baseline(self, name: str) -> np.ndarray:
        return self.equal_split_action()  # the only baseline

    def equal_split_action(self) -> np.ndarray:
        """Baseline: half of the budget to computation, half to upload, for every device."""
        return np.zeros(self._action_shape, dtype=np.float32)

    def episode_constants(self) -> dict[str, np.ndarray]:
        """The episode's per-device draws: ``samples`` (D_k), ``distance_m``, ``demanded_bits``."""
        self._check_in_episode()
        return {
            "samples": self._samples.copy(),
            "distance_m": self._distance_m.copy(),
            "demanded_bits": self._demanded.copy(),
        }

    def episode_problem(self) -> RoundProblem:
        """The physical data of every round of the episode, shape (R, K) (for solvers and analysis)."""
        if self._episode is None:
            raise RuntimeError("FedDiffusion-v0: no episode yet; call reset() first")
        return self._episode

    def round_problem(self) -> RoundProblem:
        """The physical data of the current round (for solvers and analysis)."""
        assert self._episode is not None
        return self._episode[self._check_in_episode()]

    # -- rendering --------------------------------------------------------------------------------
    def _ansi(self, info: dict[str, Any]) -> str:
        return (
            f"round {self._t}/{self._horizon}  energy {info['energy_j']:.3f} J  "
            f"missed {info['costs'][0]:.2%} (limit {self.config.deadline_miss_fraction_limit:.0%})"
        )


def draw_episode(config: FedDiffusionConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The random draws of one episode, in the order ``reset`` takes them from its generator.

    Distances, shadowing, the uniforms of the data sizes and demanded bits, and every round's fading.
    """
    k, rounds = config.num_devices, config.num_rounds
    distance_m = rng.uniform(config.min_distance_m, config.max_distance_m, size=k)
    shadow_db = shadowing_db(rng, config.shadowing_std_db, k)
    uniforms = rng.random((2, k))  # data sizes and demands by flooring (cheaper than rng.integers)
    if config.rayleigh_fading:
        fading = rayleigh_power_gain(rng, (rounds, k))
    else:
        fading = np.ones((rounds, k))
    return {"distance_m": distance_m, "shadow_db": shadow_db, "uniforms": uniforms, "fading": fading}


@dataclass(frozen=True)
class Episode:
    """One episode's (or a batch of episodes') arrays: per device (..., K), per round (..., R, K)."""

    problem: RoundProblem
    payload_bits: np.ndarray
    gain: np.ndarray
    samples: np.ndarray
    distance_m: np.ndarray
    demanded_bits: np.ndarray
    bits: np.ndarray
    cycles: np.ndarray
    kappa_cycles: np.ndarray
    min_compute_time_s: np.ndarray
    upload_scale_s: np.ndarray
    min_upload_time_s: np.ndarray
    noise_over_gain_w: np.ndarray
    obs: np.ndarray


class EpisodeBuilder:
    """Turns the draws of :func:`draw_episode` into the episode's arrays, for one episode or a batch.

    Every operation is elementwise (leading batch axes broadcast), so the scalar env and the batched
    env get bit-identical arrays from the same draws.
    """

    def __init__(self, config: FedDiffusionConfig) -> None:
        self.config = config
        self.cycles_per_sample = config.local_iterations * config.cycles_per_sample
        self.num_params = float(config.num_params)
        self.noise_power_w = np.float64(config.noise_power_w)
        self.bits_choices = np.asarray(config.demanded_bits_choices, dtype=np.int64)
        self.num_sample_sizes = config.max_samples - config.min_samples + 1
        self.fixed_demand = np.asarray(config.demanded_bits or (), dtype=np.int64)
        scheme = 32 if config.quantization == "none" else config.fixed_bits
        self.scheme_bits = np.full(config.num_devices, scheme, dtype=np.int64)
        self.progress = np.arange(config.num_rounds + 1) / config.num_rounds

    def build(
        self, distance_m: np.ndarray, shadow_db: np.ndarray, uniforms: np.ndarray, fading: np.ndarray
    ) -> Episode:
        """The episode of these draws (shapes as :func:`draw_episode`'s, with optional batch axes)."""
        cfg = self.config
        k, rounds = cfg.num_devices, cfg.num_rounds
        batch = distance_m.shape[:-1]
        samples = cfg.min_samples + (uniforms[..., 0, :] * self.num_sample_sizes).astype(np.int64)
        if cfg.demanded_bits is not None:
            demanded = np.broadcast_to(self.fixed_demand, (*batch, k)).copy()
        else:
            demanded = self.bits_choices[(uniforms[..., 1, :] * self.bits_choices.size).astype(np.int64)]
        bits = demanded if cfg.quantization == "on_demand" else np.broadcast_to(self.scheme_bits, (*batch, k))
        loss_db = path_loss_db_macro(distance_m) + shadow_db
        cycles = self.cycles_per_sample * samples
        problem = RoundProblem(
            cycles=cycles[..., None, :],
            payload_bits=payload_bits(self.num_params, bits)[..., None, :],
            gain=channel_gain(loss_db[..., None, :], 0.0, fading),
            bandwidth_hz=np.float64(cfg.device_bandwidth_hz),
            noise_power_w=self.noise_power_w,
            round_time_s=cfg.round_time_s,
            max_frequency_hz=cfg.max_frequency_hz,
            max_power_w=cfg.max_power_w,
            kappa=cfg.kappa,
        )
        tau_min = problem.min_compute_time_s[..., 0, :]
        upload_scale = problem.upload_scale_s[..., 0, :]
        t_min = problem.min_upload_time_s
        inv_budget = 1.0 / cfg.round_time_s
        # Written in place into the (rounds + 1, 3K + 1) rows: device k's three values at 3k .. 3k + 2.
        flat = np.empty((*batch, rounds + 1, 3 * k + 1), dtype=np.float32)
        flat[..., :rounds, 0 : 3 * k : 3] = (tau_min * inv_budget)[..., None, :]
        flat[..., :rounds, 1 : 3 * k : 3] = t_min * inv_budget
        flat[..., :rounds, 2 : 3 * k : 3] = (upload_scale * inv_budget)[..., None, :]
        flat[..., rounds, :-1] = flat[..., rounds - 1, :-1]
        np.minimum(flat, _OBS_CLIP, out=flat)  # the progress column is <= 1 anyway
        flat[..., -1] = self.progress
        return Episode(
            problem=problem,
            payload_bits=problem.payload_bits[..., 0, :],
            gain=problem.gain,
            samples=samples,
            distance_m=distance_m,
            demanded_bits=demanded,
            bits=bits,
            cycles=cycles,
            kappa_cycles=cfg.kappa * cycles,
            min_compute_time_s=tau_min,
            upload_scale_s=upload_scale,
            min_upload_time_s=t_min,
            noise_over_gain_w=problem.noise_over_gain_w,
            obs=flat,
        )


def solve_oracle_results(problem: RoundProblem) -> list[OracleResult]:
    """The exact allocation of every round in ``problem`` (shape (B, K)) as one ``OracleResult`` each.

    One vectorised KKT solve; the float32 actions are rounded inward (:func:`feasible_float32_action`)
    and ``objective`` is their energy by the env's own step arithmetic (``a T / 2 + T / 2``). Shared by
    the scalar env (B = the episode's rounds) and the batched env (B = the sub-envs).
    """
    sol = solve_round_energy(problem)
    action = feasible_float32_action(problem, sol.upload_share)
    half = np.float64(0.5 * problem.round_time_s)
    applied = device_outcome(
        action.astype(np.float64) * half + half,
        problem.round_time_s,
        problem.cycles,
        problem.kappa * problem.cycles,
        problem.min_compute_time_s,
        problem.min_upload_time_s,
        problem.noise_over_gain_w,
        problem.upload_scale_s,
    )
    energy = (applied.compute_energy_j + applied.upload_energy_j).sum(axis=-1)
    bound = np.minimum(sol.total_energy_j, energy)  # the exact optimum, up to the KKT tolerance
    device_ok = np.asarray(sol.feasible)
    feasible = np.asarray(device_ok.all(axis=-1))
    per_round_s = sol.solve_time_s / len(action)
    return [
        OracleResult(
            action=action[b],
            objective=energy[b],
            lower_bound=bound[b],
            status="optimal" if feasible[b] and sol.converged else "infeasible",
            iterations=sol.iterations,
            solve_time_s=per_round_s,
            details={"devices_unable_to_meet_deadline": int(np.count_nonzero(~device_ok[b]))},
        )
        for b in range(len(action))
    ]


_CMDP_SEED, _CMDP_EPISODES = 20_261_203, 2048  # the CMDP oracle's sampled episodes
_CMDP_POLICIES: dict[FedDiffusionConfig, FedCMDPPolicy] = {}  # fitted once per config and process


def cmdp_policy(config: FedDiffusionConfig) -> FedCMDPPolicy:
    """The CMDP oracle's threshold policy for ``config``.

    Fitted on 2,048 episodes drawn by the env's own model from a fixed seed, once per config and
    process (~0.5 s at the default).
    """
    policy = _CMDP_POLICIES.get(config)
    if policy is None:
        rng = np.random.default_rng(_CMDP_SEED)
        draws = [draw_episode(config, rng) for _ in range(_CMDP_EPISODES)]
        episode = EpisodeBuilder(config).build(**{k: np.stack([d[k] for d in draws]) for k in draws[0]})
        policy = fit_cmdp_policy(episode.problem, config.deadline_miss_fraction_limit)
        _CMDP_POLICIES[config] = policy
    return policy


def cmdp_oracle_results(config: FedDiffusionConfig, problem: RoundProblem) -> list[OracleResult]:
    """The CMDP oracle's action in every round of ``problem`` (shape (B, K)), one ``OracleResult`` each.

    On-time devices get the per-round KKT share (rounded inward like the per-round oracle's), the
    devices the policy sends late the cheaper end (-1 or 1). ``objective`` and ``lower_bound`` are the
    policy's expected round energy and its dual value.
    """
    start = time.perf_counter()
    policy = cmdp_policy(config)
    shares, late = policy.shares(problem)
    action = feasible_float32_action(problem, np.where(late, 0.5, shares))
    action = np.where(late, (2.0 * shares - 1.0).astype(np.float32), action)
    per_round_s = (time.perf_counter() - start) / len(action)
    return [
        OracleResult(
            action=action[b],
            objective=policy.expected_energy_j,
            lower_bound=policy.dual_value,
            status=policy.status,
            iterations=policy.samples,
            solve_time_s=per_round_s,
            details={
                "late_devices": int(np.count_nonzero(late[b])),
                "expected_miss_fraction": policy.expected_miss_fraction,
                "threshold_j": policy.threshold_j,
            },
        )
        for b in range(len(action))
    ]


def feasible_float32_action(problem: RoundProblem, upload_share: np.ndarray) -> np.ndarray:
    """The float32 env action of ``upload_share``, rounded inward where float32 would make a device late.

    A device that meets the deadline in float64 (e.g. a power-capped one at exactly ``t_min``) must not
    be late because its share was stored in float32.

    Each entry moves by at most a few float32 ulps toward the middle of the device's feasible shares
    ``[t_min / T, 1 - tau_min / T]``.
    """
    budget = problem.round_time_s
    half = 0.5 * budget
    action = (2.0 * np.asarray(upload_share, dtype=np.float64) - 1.0).astype(np.float32)
    low = problem.min_upload_time_s / budget
    high = 1.0 - problem.min_compute_time_s / budget
    target = np.where(problem.feasible, 0.5 * (low + high) * 2.0 - 1.0, action).astype(np.float32)
    for _ in range(8):
        plan = action.astype(np.float64) * half + half  # exactly the env's arithmetic
        late = round_outcome(problem, plan / budget).late & problem.feasible
        if not late.any():
            break
        action = np.where(late, np.nextafter(action, target), action)
    return action
