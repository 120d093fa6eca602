"""PPO-Lagrangian and PID-Lagrangian: stable-baselines3 PPO with one cost critic per constraint.

The policy maximises the Lagrangian surrogate with the combined, normalised advantage
``(A_r - sum_i lambda_i A_ci) / (1 + sum_i lambda_i)`` (the rescaling of Stooke et al. 2020, Alg. 1)
inside PPO's clipped objective. The multipliers are updated once per rollout from the finished
episodes' average cost per step against each per-step limit, on the normalised error
``e_i = J_ci / d_i - 1`` (so one learning rate fits costs in seconds and in joules):

- ``lagrangian="gradient"``: projected gradient ascent ``lambda_i <- max(0, lambda_i + lr e_i)``;
- ``lagrangian="pid"``: PID-Lagrangian (Stooke, Achiam, Abbeel, ICML 2020):
  ``I_i <- max(0, I_i + e_i)`` (anti-windup), ``D_i = max(0, J_ci - J_ci,prev) / d_i`` (only a rising
  cost), ``lambda_i = max(0, K_P e_i + K_I I_i + K_D D_i)``.

``cost_feedback="deterministic"`` feeds the multipliers the costs of the policy that is deployed
(its mean action, on a copy of the first training env) instead of those of the stochastic rollouts.
On MEG-v0 the optimum mixes two nearly tied actions; a Gaussian policy mixes them by its noise around
a flat mean, whose deterministic action then takes the cheaper one everywhere (docs/experiments.md,
eighth session). Those evaluation episodes are env steps too: they count in ``num_timesteps``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import explained_variance, obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from torch.nn import functional as F

from edgegen.agents.checkpoints import CheckpointMismatchError, check_env_fits, checkpoint_kind
from edgegen.agents.cost_buffer import CostRolloutBuffer, costs_from_infos
from edgegen.agents.cost_policy import CostActorCriticPolicy
from edgegen.agents.deployed import deployed_policy_costs
from edgegen.agents.entities import resolve_entity_layout
from edgegen.agents.finite import check_transition, env_label
from edgegen.agents.selection import KeepBest, with_selection
from edgegen.envs.cmdp import CostSpec, get_cost_spec

__all__ = ["PPOLagrangian"]

SelfPPOLagrangian = TypeVar("SelfPPOLagrangian", bound="PPOLagrangian")


def _multiplier_gains(
    lagrangian: str, lambda_lr: float | None, pid_kp: float | None, pid_ki: float | None, pid_kd: float | None
) -> tuple[float, float, float, float]:
    """The variant's gains with their defaults; ValueError for the other variant's settings."""
    other = (
        {"pid_kp": pid_kp, "pid_ki": pid_ki, "pid_kd": pid_kd}
        if lagrangian == "gradient"
        else {"lambda_lr": lambda_lr}
    )
    unused = sorted(name for name, value in other.items() if value is not None)
    if unused:
        owner = "PID" if lagrangian == "gradient" else "gradient"
        raise ValueError(
            f"{unused} do not apply to lagrangian={lagrangian!r} (the {owner} variant's settings)"
        )
    return (
        0.1 if lambda_lr is None else lambda_lr,
        1.0 if pid_kp is None else pid_kp,
        0.1 if pid_ki is None else pid_ki,
        0.5 if pid_kd is None else pid_kd,
    )


class PPOLagrangian(PPO):
    """PPO with Lagrange multipliers on per-step average cost constraints.

    Args:
        policy: ``"MlpPolicy"`` (a :class:`CostActorCriticPolicy`) or a subclass of it.
        env: the environment (Gymnasium env, id or SB3 VecEnv) whose steps put ``info["costs"]``.
        lagrangian: ``"gradient"`` (projected gradient ascent) or ``"pid"`` (PID-Lagrangian).
        cost_limits: per-step average limit of each cost; default ``env.unwrapped.cost_spec.limits``.
        cost_margin: the multipliers target every limit times ``1 - cost_margin`` (in [0, 1)): room
            for the sampling noise of an evaluation that judges the mean cost's confidence bound.
        lambda_init: initial value of every multiplier (>= 0); with ``"pid"`` the integral starts at
            ``lambda_init / pid_ki``, so that the multiplier is ``lambda_init`` while the costs sit at
            their limits (the PID update recomputes the multiplier from its terms at every update).
        lambda_lr: step size of the gradient variant on the normalised error (default 0.1).
        pid_kp: proportional gain of the PID variant (default 1.0).
        pid_ki: integral gain of the PID variant (default 0.1).
        pid_kd: derivative gain of the PID variant (default 0.5). Each variant refuses the other's
            settings (a ValueError, not a silently unused value).
        lambda_max: cap of every multiplier.
        cost_gamma: discount of the costs (default: ``gamma``).
        cost_gae_lambda: GAE lambda of the costs (default: ``gae_lambda``).
        cost_vf_coef: weight of the cost value losses.
        cost_feedback: which costs update the multipliers: ``"rollout"`` (the stochastic rollouts'
            finished episodes) or ``"deterministic"`` (``feedback_episodes`` episodes of the
            deterministic policy before every update, on a deep copy of the first env of a
            ``DummyVecEnv``; their steps count in ``num_timesteps``).
        feedback_episodes: episodes per update with ``cost_feedback="deterministic"`` (>= 1).
        log_std_final: if set, the Gaussian policy's log std is capped by a schedule that falls
            linearly from its initial value (``policy_kwargs["log_std_init"]``) to this value at the end
            of training, so that the deterministic (mean) action the policy is evaluated with acts
            like the stochastic policy it was trained as.
        keep_best: if set (a :class:`agents.selection.KeepBest` or a mapping of its fields
            ``every_steps``, ``episodes``, ``margin``, ``shift_dims``, ...), the deterministic policy is
            played on fixed selection episodes every ``every_steps`` steps and the best feasible snapshot
            is loaded at the end of ``learn`` (``selected_step`` names it; with ``shift_dims`` its
            deterministic action is calibrated, ``selected_shift``); their steps count in
            ``num_timesteps``.
        **kwargs: any argument of stable-baselines3's ``PPO`` (``n_steps``, ``learning_rate``, ...).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": CostActorCriticPolicy}
    rollout_buffer: CostRolloutBuffer
    policy: CostActorCriticPolicy
    cost_spec: CostSpec

    def __init__(
        self,
        policy: str | type[CostActorCriticPolicy] = "MlpPolicy",
        env: gym.Env | VecEnv | str | None = None,
        lagrangian: Literal["gradient", "pid"] = "gradient",
        cost_limits: Sequence[float] | None = None,
        cost_margin: float = 0.0,
        lambda_init: float = 0.0,
        lambda_lr: float | None = None,
        pid_kp: float | None = None,
        pid_ki: float | None = None,
        pid_kd: float | None = None,
        lambda_max: float = 100.0,
        cost_gamma: float | None = None,
        cost_gae_lambda: float | None = None,
        cost_vf_coef: float = 0.5,
        cost_feedback: Literal["rollout", "deterministic"] = "rollout",
        feedback_episodes: int = 2,
        log_std_final: float | None = None,
        keep_best: KeepBest | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if lagrangian not in ("gradient", "pid"):
            raise ValueError(f"lagrangian must be 'gradient' or 'pid', got {lagrangian!r}")
        if cost_feedback not in ("rollout", "deterministic"):
            raise ValueError(f"cost_feedback must be 'rollout' or 'deterministic', got {cost_feedback!r}")
        if type(feedback_episodes) is not int or feedback_episodes < 1:
            raise ValueError(f"feedback_episodes must be an int >= 1, got {feedback_episodes!r}")
        lambda_lr, pid_kp, pid_ki, pid_kd = _multiplier_gains(lagrangian, lambda_lr, pid_kp, pid_ki, pid_kd)
        for name, value in (
            ("lambda_init", lambda_init),
            ("lambda_lr", lambda_lr),
            ("pid_kp", pid_kp),
            ("pid_ki", pid_ki),
            ("pid_kd", pid_kd),
            ("cost_vf_coef", cost_vf_coef),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not lambda_max > 0:
            raise ValueError(f"lambda_max must be > 0, got {lambda_max}")
        if lagrangian == "pid" and lambda_init > 0 and not pid_ki > 0:
            raise ValueError(
                f"lambda_init={lambda_init} with lagrangian='pid' needs pid_ki > 0 (the integral holds the "
                f"multiplier), got pid_ki={pid_ki}"
            )
        if not 0.0 <= cost_margin < 1.0:
            raise ValueError(f"cost_margin must be in [0, 1), got {cost_margin}")
        # PPO arguments whose code path the Lagrangian update replaces: refuse them rather than
        # silently train without them.
        if kwargs.get("clip_range_vf") is not None:
            raise ValueError(
                "PPOLagrangian does not support clip_range_vf (its reward and cost value losses are "
                f"unclipped); leave it None, got {kwargs['clip_range_vf']!r}"
            )
        if kwargs.get("use_sde"):
            raise ValueError("PPOLagrangian does not support use_sde=True (state-dependent exploration)")
        if isinstance(env, str):
            env = gym.make(env)
        self.lagrangian = lagrangian
        self.lambda_lr, self.lambda_max = lambda_lr, lambda_max
        self.pid_kp, self.pid_ki, self.pid_kd = pid_kp, pid_ki, pid_kd
        self.cost_vf_coef = cost_vf_coef
        self.log_std_final = log_std_final
        self.cost_feedback, self.feedback_episodes = cost_feedback, feedback_episodes
        self.cost_margin = cost_margin
        self.keep_best = KeepBest.from_value(keep_best)
        self.selected_step: int | None = None
        self.selected_shift: float | None = None
        # SB3's load() calls the constructor without env and restores cost_spec (and the multiplier
        # state) from the checkpoint afterwards.
        if env is not None:
            spec = get_cost_spec(env)
            spec = spec if cost_limits is None else spec.with_limits(cost_limits)
            if cost_margin:
                spec = spec.with_limits([limit * (1.0 - cost_margin) for limit in spec.limits])
            self.cost_spec = spec
            n_costs = self.cost_spec.num_costs
            self.lambdas = np.full(n_costs, float(lambda_init))
            start = lambda_init / pid_ki if lagrangian == "pid" and lambda_init > 0 else 0.0
            self._pid_integral = np.full(n_costs, float(start))
            self._previous_cost = np.full(n_costs, np.nan)
            policy_kwargs = {**(kwargs.pop("policy_kwargs", None) or {}), "n_costs": n_costs}
            resolve_entity_layout(policy_kwargs, env, "PPOLagrangian")
            buffer_kwargs = {
                **(kwargs.pop("rollout_buffer_kwargs", None) or {}),
                "n_costs": n_costs,
                "cost_gamma": cost_gamma,
                "cost_gae_lambda": cost_gae_lambda,
                "seed": kwargs.get("seed"),
            }
            kwargs.update(
                policy_kwargs=policy_kwargs,
                rollout_buffer_class=CostRolloutBuffer,
                rollout_buffer_kwargs=buffer_kwargs,
            )
        elif cost_limits is not None:
            raise ValueError("cost_limits needs an env (its cost_spec names the costs)")
        super().__init__(policy, env, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def load(
        cls,
        path: str | Any,
        env: gym.Env | VecEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> PPOLagrangian:
        """SB3's ``load``, with one-sentence errors for another algorithm's checkpoint or another env.

        A CVPO archive names ``CVPO.load``; with ``env``, its observation and action shapes and its cost
        names must be the checkpoint's (otherwise SB3 fails later with unrelated messages).
        """
        from pathlib import Path

        file = Path(path) if isinstance(path, str | Path) else None
        if file is not None and not file.exists() and file.with_suffix(".zip").exists():
            file = file.with_suffix(".zip")
        if file is not None and checkpoint_kind(file) == "CVPO":
            raise CheckpointMismatchError(
                f"{file} is a CVPO checkpoint, not a PPOLagrangian one: load it with CVPO.load"
            )
        if env is not None:
            bare = super().load(
                path,
                env=None,
                device=device,
                custom_objects=custom_objects,
                print_system_info=print_system_info,
                **kwargs,
            )
            assert isinstance(bare, PPOLagrangian)
            first = env.envs[0] if isinstance(env, VecEnv) and hasattr(env, "envs") else env
            check_env_fits(
                file if file is not None else "the checkpoint",
                first,
                tuple(bare.observation_space.shape or ()),
                tuple(bare.action_space.shape or ()),
                bare.cost_spec.names,
            )
        return super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )

    def _setup_model(self) -> None:
        super()._setup_model()
        self.ep_cost_buffer: deque[np.ndarray] = deque(maxlen=self._stats_window_size)
        self._finished_costs: list[np.ndarray] = []  # per-step average cost of episodes in this rollout
        self._ep_cost_sums = np.zeros((self.n_envs, self.cost_spec.num_costs))
        self._env_label = env_label(self.env) if self.env is not None else "env"
        self._ep_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self._feedback_env: gym.Env | None = None  # built at the first update that needs it

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_feedback_env"]

    # ---------------------------------------------------------------------------------------------
    # Rollouts: SB3's loop, plus costs (bootstrapped at time-limit truncation like the reward).
    # ---------------------------------------------------------------------------------------------
    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: CostRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """Collect ``n_rollout_steps`` per env into the buffer, with costs from ``info["costs"]``."""
        if self._last_obs is None:
            raise RuntimeError("PPOLagrangian.collect_rollouts needs a reset env; call learn()")
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        self._finished_costs = []
        n_costs = self.cost_spec.num_costs
        callback.on_rollout_start()

        for _ in range(n_rollout_steps):
            with th.no_grad():
                obs_tensor = obs_as_tensor(np.asarray(self._last_obs), self.device)
                actions, values, log_probs = self.policy(obs_tensor)
                cost_values = self.policy.predict_cost_values(cast(th.Tensor, obs_tensor))
            actions = actions.cpu().numpy()
            clipped_actions = actions
            if isinstance(self.action_space, spaces.Box):
                clipped_actions = np.clip(actions, self.action_space.low, self.action_space.high)

            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            costs = costs_from_infos(infos, n_costs, "PPOLagrangian")
            check_transition(self._env_label, self.num_timesteps, new_obs, rewards, costs, infos)
            self._track_episode_costs(costs, dones)

            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            # Time-limit truncation: bootstrap reward and costs from the terminal observation.
            for idx, done in enumerate(dones):
                terminal_obs = infos[idx].get("terminal_observation")
                if done and terminal_obs is not None and infos[idx].get("TimeLimit.truncated", False):
                    terminal_tensor = cast(th.Tensor, self.policy.obs_to_tensor(terminal_obs)[0])
                    with th.no_grad():
                        rewards[idx] += self.gamma * self.policy.predict_values(terminal_tensor)[0].item()
                        terminal_cost = self.policy.predict_cost_values(terminal_tensor)[0].cpu().numpy()
                    costs[idx] += rollout_buffer.cost_gamma * terminal_cost

            rollout_buffer.add_costs(costs, cost_values)
            rollout_buffer.add(
                np.asarray(self._last_obs),
                actions,
                rewards,
                np.asarray(self._last_episode_starts),
                values,
                log_probs,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        with th.no_grad():
            last_tensor = obs_as_tensor(np.asarray(new_obs), self.device)
            last_values = self.policy.predict_values(last_tensor)
            last_cost_values = self.policy.predict_cost_values(cast(th.Tensor, last_tensor))
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
        rollout_buffer.compute_cost_returns_and_advantage(last_cost_values, dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _track_episode_costs(self, costs: np.ndarray, dones: np.ndarray) -> None:
        self._ep_cost_sums += costs
        self._ep_lengths += 1
        for idx in np.flatnonzero(dones):
            self.ep_cost_buffer.append(self._ep_cost_sums[idx].copy())
            self._finished_costs.append(self._ep_cost_sums[idx] / self._ep_lengths[idx])
            self._ep_cost_sums[idx] = 0.0
            self._ep_lengths[idx] = 0

    # ---------------------------------------------------------------------------------------------
    # Multipliers: once per rollout, from the episodes that finished in it.
    # ---------------------------------------------------------------------------------------------
    def update_multipliers(self, cost_per_step: np.ndarray) -> np.ndarray:
        """Update the multipliers from the average cost per step of finished episodes; return them."""
        limits = self.cost_spec.limits_array
        error = cost_per_step / limits - 1.0
        if self.lagrangian == "gradient":
            self.lambdas = self.lambdas + self.lambda_lr * error
        else:
            self._pid_integral = np.maximum(0.0, self._pid_integral + error)
            rising = np.where(np.isnan(self._previous_cost), 0.0, cost_per_step - self._previous_cost)
            derivative = np.maximum(0.0, rising) / limits
            self._previous_cost = cost_per_step.copy()
            self.lambdas = self.pid_kp * error + self.pid_ki * self._pid_integral + self.pid_kd * derivative
        self.lambdas = np.clip(self.lambdas, 0.0, self.lambda_max)
        return self.lambdas

    # ---------------------------------------------------------------------------------------------
    # Update: PPO's epochs x minibatches on the Lagrangian surrogate, logged once at the end.
    # ---------------------------------------------------------------------------------------------
    def train(self) -> None:
        """Update the multipliers, then the policy and all critics on the collected rollout."""
        self._feed_multipliers()
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = self.clip_range(self._current_progress_remaining)  # type: ignore[operator]
        lambdas = th.as_tensor(self.lambdas, dtype=th.float32, device=self.device)
        scale = 1.0 / (1.0 + float(self.lambdas.sum()))

        pg_losses, value_losses, cost_value_losses, entropy_losses = [], [], [], []
        clip_fractions, approx_kl_divs = [], []
        continue_training = True
        for _epoch in range(self.n_epochs):
            for batch in self.rollout_buffer.get(self.batch_size):
                actions = batch.actions
                if isinstance(self.action_space, spaces.Discrete):
                    actions = actions.long().flatten()
                values, cost_values, log_prob, entropy = self.policy.evaluate_actions_and_costs(
                    batch.observations, actions
                )
                advantages = batch.advantages
                cost_advantages = batch.cost_advantages
                # Normalization does not make sense if mini batchsize == 1, see SB3 GH issue #325
                if self.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                    cost_advantages = (cost_advantages - cost_advantages.mean(0)) / (
                        cost_advantages.std(0) + 1e-8
                    )
                lagrangian_advantage = (advantages - cost_advantages @ lambdas) * scale

                ratio = th.exp(log_prob - batch.old_log_prob)
                surrogate = th.min(
                    lagrangian_advantage * ratio,
                    lagrangian_advantage * th.clamp(ratio, 1 - clip_range, 1 + clip_range),
                )
                policy_loss = -surrogate.mean()
                value_loss = F.mse_loss(batch.returns, values.flatten())
                cost_value_loss = F.mse_loss(batch.cost_returns, cost_values)
                entropy_loss = -th.mean(entropy) if entropy is not None else th.mean(log_prob)
                loss = (
                    policy_loss
                    + self.ent_coef * entropy_loss
                    + self.vf_coef * value_loss
                    + self.cost_vf_coef * cost_value_loss
                )

                with th.no_grad():
                    log_ratio = log_prob - batch.old_log_prob
                    approx_kl = float(th.mean((th.exp(log_ratio) - 1) - log_ratio))
                if self.target_kl is not None and approx_kl > 1.5 * self.target_kl:
                    continue_training = False
                    break
                pg_losses.append(policy_loss.item())
                value_losses.append(value_loss.item())
                cost_value_losses.append(cost_value_loss.item())
                entropy_losses.append(entropy_loss.item())
                clip_fractions.append(float(th.mean((th.abs(ratio - 1) > clip_range).float())))
                approx_kl_divs.append(approx_kl)

                self.policy.optimizer.zero_grad()
                loss.backward()
                th.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
                self.policy.optimizer.step()
            self._n_updates += 1
            if not continue_training:
                break

        self._cap_log_std()  # after the update, so that the next rollout samples under the cap
        buffer = self.rollout_buffer
        self.logger.record("train/policy_gradient_loss", _mean(pg_losses))
        self.logger.record("train/value_loss", _mean(value_losses))
        self.logger.record("train/cost_value_loss", _mean(cost_value_losses))
        self.logger.record("train/entropy_loss", _mean(entropy_losses))
        self.logger.record("train/approx_kl", _mean(approx_kl_divs))
        self.logger.record("train/clip_fraction", _mean(clip_fractions))
        self.logger.record(
            "train/explained_variance", explained_variance(buffer.values.flatten(), buffer.returns.flatten())
        )
        self.logger.record("train/clip_range", clip_range)
        for name, value in zip(self.cost_spec.names, self.lambdas, strict=True):
            self.logger.record(f"train/lambda/{name}", float(value))
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _feed_multipliers(self) -> None:
        """Update the multipliers from this rollout's episodes (or the deterministic policy's); log costs."""
        names = self.cost_spec.names
        if self._finished_costs:
            episode_cost = np.mean(self._finished_costs, axis=0)
            if self.cost_feedback == "rollout":
                self.update_multipliers(episode_cost)
            for name, value in zip(names, episode_cost, strict=True):
                self.logger.record(f"rollout/cost_per_step/{name}", float(value))
        if self.cost_feedback == "deterministic":
            deployed_cost = deployed_policy_costs(self, self.feedback_episodes, "PPOLagrangian")
            self.update_multipliers(deployed_cost)
            for name, value in zip(names, deployed_cost, strict=True):
                self.logger.record(f"rollout/deterministic_cost_per_step/{name}", float(value))
        if self.ep_cost_buffer:
            mean_sums = np.mean(self.ep_cost_buffer, axis=0)
            for name, value in zip(names, mean_sums, strict=True):
                self.logger.record(f"rollout/ep_cost_mean/{name}", float(value))

    def _cap_log_std(self) -> None:
        """Hold the policy's log std under the ``log_std_final`` schedule (see the class docstring)."""
        if self.log_std_final is None:
            return
        start = float(self.policy_kwargs.get("log_std_init", 0.0))
        progress = self._current_progress_remaining  # 1 at the start of training, 0 at the end
        cap = self.log_std_final + (start - self.log_std_final) * progress
        with th.no_grad():
            self.policy.log_std.clamp_(max=cap)

    def learn(
        self: SelfPPOLagrangian,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 1,
        tb_log_name: str = "PPOLagrangian",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfPPOLagrangian:
        """Train for ``total_timesteps`` env steps (see stable-baselines3's ``PPO.learn``)."""
        if self.env is None:
            raise ValueError("PPOLagrangian.learn needs an env: pass env= to load() or set_env()")
        return super().learn(
            total_timesteps=total_timesteps,
            callback=with_selection(callback, self.keep_best),
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
