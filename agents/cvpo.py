"""CVPO: Constrained Variational Policy Optimization (Liu et al., ICML 2022, arXiv 2201.11927).

Off-policy, continuous actions, any number of constraints. Reads top to bottom:

1. networks: a diagonal Gaussian actor (tanh-bounded mean, clipped samples), a reward critic with two
   heads (min for targets) and one cost critic per constraint, all with Polyak-averaged targets;
2. a replay buffer with n-step returns (time-limit truncation bootstraps, termination does not);
3. the E-step: K particles per state from the old (target) policy, the convex dual over
   (eta, lambda) solved with scipy (bounded, warm-started), non-parametric weights
   ``q = softmax_k((Q_r - sum_i lambda_i Q_ci) / eta)``;
4. the M-step: weighted maximum likelihood with decoupled KL trust regions for mean and std
   (MPO, Abdolmaleki et al. 2018), multipliers by dual ascent, gradient clipping;
5. the ``CVPO`` class: ``learn``, ``predict``, ``save``, ``load``, logs through SB3's logger.

The episodic cost limit of constraint i, given per step as ``d_i`` over an episode of T steps, becomes
the Q threshold ``thr_i = d_i (1 - gamma^T) / (1 - gamma)``: the discounted value of paying exactly the
per-step limit for T steps (:func:`q_threshold`; ``CVPOConfig.threshold_horizon`` picks T). Costs in
units of their limits (``d_i = 1``) come from wrapping the env in ``envs.cmdp.NormalizeCosts``.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
import torch as th
from scipy.optimize import minimize
from scipy.special import logsumexp
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.logger import Logger, configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn
from torch.nn import functional as F

from edgegen.agents.checkpoints import CheckpointMismatchError, check_env_fits, checkpoint_kind
from edgegen.agents.finite import check_transition, env_label
from edgegen.envs.cmdp import CostSpec, get_cost_spec

__all__ = ["CVPO", "CVPOConfig", "centre_cost_q", "estep_dual", "q_threshold", "solve_estep_dual"]

SelfCVPO = TypeVar("SelfCVPO", bound="CVPO")
_DUAL_MIN = 1e-6


def q_threshold(limit_per_step: float | np.ndarray, gamma: float, horizon: float) -> np.ndarray:
    """Q-value threshold of a per-step cost limit over an episode of ``horizon`` steps.

    ``limit (1 - gamma^T) / (1 - gamma)`` = ``sum_{t<T} gamma^t limit``; ``horizon=math.inf`` gives the
    infinite-horizon ``limit / (1 - gamma)``.
    """
    if not 0 < gamma < 1:
        raise ValueError(f"gamma must be in (0, 1), got {gamma}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return np.asarray(limit_per_step, dtype=np.float64) * (1 - gamma**horizon) / (1 - gamma)


@dataclass(frozen=True)
class CVPOConfig:
    """Hyperparameters of :class:`CVPO` (defaults after FSRL's CVPO and the MEG authors' settings)."""

    gamma: float = 0.97
    """discount of reward and costs. In MEG-v0 and FedDiffusion-v0 no action changes a later state, so
    a small gamma (0.5) loses nothing and shrinks the action-independent part of Q that the critics
    must fit around the small action-dependent part. It raised MEG-v0's mean score at 60k steps from
    0.86 to 0.94 (BENCHMARKS.md)"""
    n_step: int = 2
    """n of the n-step returns"""
    hidden: tuple[int, ...] = (128, 128)
    """hidden layers of every network"""
    actor_lr: float = 5e-4
    """actor learning rate (M-step)"""
    critic_lr: float = 1e-3
    """critic learning rate"""
    tau: float = 0.05
    """Polyak coefficient of the target networks"""
    batch_size: int = 256
    """states per gradient update"""
    num_particles: int = 32
    """K: actions sampled per state in the E-step"""
    estep_kl: float = 0.02
    """epsilon: KL bound between the non-parametric q and the old policy"""
    estep_dual_max: float = 20.0
    """upper bound of eta and of every lambda (the dual is unbounded below in lambda when no particle
    meets a constraint, so lambda needs a cap; FSRL uses 20)"""
    mstep_kl_mean: float = 0.01
    """KL bound of the mean in the M-step"""
    mstep_kl_std: float = 0.0005
    """KL bound of the std in the M-step"""
    mstep_iterations: int = 5
    """actor gradient steps per update"""
    mstep_dual_lr: float = 0.1
    """dual-ascent step of the M-step KL multipliers"""
    mstep_dual_max: float = 0.5
    """cap of the M-step KL multipliers"""
    log_std_init: float = -0.5
    """initial log std of the (state-independent) policy"""
    min_std: float | None = None
    """floor of the policy's std during training (``None``: e^-10). Where the reward's dependence on
    an action is small next to its spread over states (FedDiffusion-v0: ~0.02 per 0.1 of a device's
    share, against a reward std of 3.6), the std collapses to ~0.06 before the critics have resolved
    that dependence, and the policy stops where it is; a floor keeps the critics' data wide enough.
    Deterministic predictions use the mean, so the floor costs nothing there. 0.2 with per-device
    critics took FedDiffusion-v0 from 1.15-1.17x the oracle's energy to 0.98x; 0.15 on MEG-v0 met
    the score and cost targets on every seed (BENCHMARKS.md)"""
    buffer_size: int = 200_000
    """replay capacity in transitions per env"""
    learning_starts: int = 1_000
    """env steps of uniformly random actions before the first update"""
    updates_per_step: float = 0.5
    """gradient updates per env step (summed over envs)"""
    max_grad_norm: float = 1.0
    """gradient clipping of actor and critics"""
    threshold_horizon: int | str = "episode"
    """horizon T of the Q threshold ``thr = d (1 - gamma^T) / (1 - gamma)``: ``"episode"`` (the env's
    max_episode_steps, the paper's episodic threshold), ``"infinite"`` (``thr = d / (1 - gamma)``) or a
    number of steps. The critics bootstrap through time-limit truncations, so they estimate
    ``d / (1 - gamma)`` for a policy that pays d per step; the episodic threshold then holds the costs
    near ``(1 - gamma^T)`` of the limit (0.86 on MEG-v0). "infinite" moved both of MEG-v0's costs from
    0.83-0.88 to 0.98-1.01 of their limits (docs/experiments.md); the recipes use it"""
    entity_dims: tuple[int, int] | str | None = None
    """``(observation features, action dims)`` of one entity (a device) for an actor shared by all
    entities: the observation is the entities' features one after the other, then global features;
    the action is the entities' actions one after the other. One MLP maps each entity's features plus
    the global ones to its actions, so every entity's sample trains it and its policy is the same
    whatever the entity's index. ``"env"``: the layout the env declares (``entity_layout``:
    FedDiffusion-v0 ``(3, 1)``, SFLAM-v0 ``(2, 3)``). ``None``: one MLP on the whole observation"""
    entity_critic_hidden: tuple[int, ...] | None = None
    """hidden layers of critics that are sums over the entities of ``entity_dims``: every head is
    ``Q(s, a) = sum_e q(s_e, g, a_e)``, one MLP q shared by the entities (their features, the global
    ones, their action), so Q is invariant to the entities' order. Exact where reward and costs are sums
    of per-entity terms (FedDiffusion-v0: energy and late devices), and each transition then trains q
    once per entity. At (32, 32) an update takes ~1.3x as long as with the whole-state critics.
    ``None``: whole-state critics of ``hidden``"""
    cost_value_baseline: float | None = None
    """replace each state's cost Qs in the E-step dual by their deviation from the state's particle
    mean plus a running mean (this Polyak rate per update) of the batch's cost value. Each state's
    softmax weights are unchanged (a per-state constant cancels), but the constraint no longer moves
    with which states the batch happened to draw: without it the batch mean of Q_c jitters by more
    than the KL-bounded q can correct, and lambda flips between 0 and its cap from batch to batch.
    ``None``: the batch's own Q_c, as in the paper"""

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> CVPOConfig:
        """A config from plain data (YAML, JSON): lists become the tuples the fields hold.

        Settings of edgegen-gym 0.1 checkpoints are translated: ``episode_length`` and
        ``infinite_horizon_threshold`` into ``threshold_horizon``; an unused ``policy_average`` or
        ``normalize_costs`` is dropped, a used one is refused with what replaced it.
        """
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        infinite = fields.pop("infinite_horizon_threshold", None)
        length = fields.pop("episode_length", None)
        if infinite is not None or length is not None:
            fields.setdefault("threshold_horizon", "infinite" if infinite else (length or "episode"))
        if fields.pop("policy_average", None) is not None:
            raise ValueError("CVPOConfig.policy_average was removed (no recipe used it)")
        if fields.pop("normalize_costs", False):
            raise ValueError(
                "CVPOConfig.normalize_costs was removed: wrap the env in edgegen.envs.cmdp.NormalizeCosts "
                "(a recipe's env_wrapper) for costs in units of their limits"
            )
        return cls(**fields)

    def __post_init__(self) -> None:
        """Validate the fields."""
        checks = {
            "gamma": 0 < self.gamma < 1,
            "n_step": self.n_step >= 1,
            "actor_lr": self.actor_lr > 0,
            "critic_lr": self.critic_lr > 0,
            "tau": 0 < self.tau <= 1,
            "batch_size": self.batch_size >= 2,
            "num_particles": self.num_particles >= 2,
            "estep_kl": self.estep_kl > 0,
            "estep_dual_max": self.estep_dual_max > 0,
            "mstep_kl_mean": self.mstep_kl_mean > 0,
            "mstep_kl_std": self.mstep_kl_std > 0,
            "mstep_iterations": self.mstep_iterations >= 1,
            "min_std": self.min_std is None or 0 < self.min_std < 1,
            "buffer_size": self.buffer_size >= self.n_step,
            "learning_starts": self.learning_starts >= 0,
            "updates_per_step": self.updates_per_step > 0,
            "max_grad_norm": self.max_grad_norm > 0,
            "threshold_horizon": self.threshold_horizon in ("episode", "infinite")
            or (isinstance(self.threshold_horizon, int) and self.threshold_horizon >= 1),
            "cost_value_baseline": self.cost_value_baseline is None or 0 < self.cost_value_baseline <= 1,
            "entity_dims": self.entity_dims in (None, "env")
            or (
                not isinstance(self.entity_dims, str)
                and len(self.entity_dims) == 2
                and min(self.entity_dims) >= 1
            ),
            "entity_critic_hidden": self.entity_critic_hidden is None
            or min(self.entity_critic_hidden, default=1) >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"CVPOConfig.{name} is out of range: {getattr(self, name)!r}")
        if self.entity_critic_hidden is not None and self.entity_dims is None:
            raise ValueError("CVPOConfig.entity_critic_hidden needs entity_dims (the entities to sum over)")


# ---------------------------------------------------------------------------------------------------
# 1. Networks
# ---------------------------------------------------------------------------------------------------
def mlp(n_in: int, n_out: int, hidden: Sequence[int]) -> nn.Sequential:
    """ReLU MLP."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    """Diagonal Gaussian with a tanh-bounded mean in [-1, 1] and a state-independent log std."""

    min_log_std: float = -10.0

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], log_std_init: float) -> None:
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(th.full((act_dim,), float(log_std_init)))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std, each ``(batch, act_dim)``."""
        mean = th.tanh(self.mean_net(obs))
        std = self.log_std.clamp(self.min_log_std, 2.0).exp().expand_as(mean)
        return mean, std


class EntityGaussianActor(GaussianActor):
    """:class:`GaussianActor` whose mean is one MLP applied to every entity (``CVPOConfig.entity_dims``).

    The std is one per entity action dimension, shared by the entities.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        log_std_init: float,
        entity_dims: tuple[int, int],
    ) -> None:
        nn.Module.__init__(self)
        entity_obs, entity_act = entity_dims
        self.entities = act_dim // entity_act
        self.entity_obs, self.global_obs = entity_obs, obs_dim - self.entities * entity_obs
        if act_dim % entity_act or self.entities < 1 or self.global_obs < 0:
            raise ValueError(
                f"CVPOConfig.entity_dims={tuple(entity_dims)} does not fit observations of {obs_dim} and "
                f"actions of {act_dim} values: the actions must be whole entities of {entity_act}, and "
                f"the observation at least {entity_obs} features per entity"
            )
        self.mean_net = mlp(entity_obs + self.global_obs, entity_act, hidden)
        self.log_std = nn.Parameter(th.full((entity_act,), float(log_std_init)))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std, each ``(batch, act_dim)``."""
        lead = obs.shape[:-1]
        mean = th.tanh(self.mean_net(entity_inputs(obs, self.entities, self.entity_obs))).reshape(*lead, -1)
        std = self.log_std.clamp(self.min_log_std, 2.0).exp().repeat(self.entities).expand_as(mean)
        return mean, std


def entity_inputs(obs: th.Tensor, entities: int, entity_obs: int) -> th.Tensor:
    """``(..., entities, entity_obs + global)``: each entity's features followed by the global ones."""
    lead, split = obs.shape[:-1], entities * entity_obs
    per_entity = obs[..., :split].reshape(*lead, entities, entity_obs)
    shared = obs[..., split:].unsqueeze(-2).expand(*lead, entities, obs.shape[-1] - split)
    return th.cat([per_entity, shared], dim=-1)


class Critics(nn.Module):
    """Two reward Q heads and one Q network per cost, on (obs, action)."""

    def __init__(self, obs_dim: int, act_dim: int, n_costs: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.reward = nn.ModuleList([mlp(obs_dim + act_dim, 1, hidden) for _ in range(2)])
        self.costs = nn.ModuleList([mlp(obs_dim + act_dim, 1, hidden) for _ in range(n_costs)])

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reward Q of both heads ``(2, batch)`` and cost Qs ``(n_costs, batch)``."""
        x = th.cat([obs, act], dim=-1)
        q_r = th.stack([q(x).squeeze(-1) for q in self.reward])
        q_c = th.stack([q(x).squeeze(-1) for q in self.costs])
        return q_r, q_c


class EntityCritics(Critics):
    """:class:`Critics` whose heads are sums over entities, ``sum_e q(s_e, g, a_e)``."""

    def __init__(
        self, actor: EntityGaussianActor, n_costs: int, hidden: Sequence[int], entity_act: int
    ) -> None:
        nn.Module.__init__(self)
        self.entities, self.entity_obs, self.entity_act = actor.entities, actor.entity_obs, entity_act
        entity_in = self.entity_obs + actor.global_obs + entity_act
        self.reward = nn.ModuleList([mlp(entity_in, 1, hidden) for _ in range(2)])
        self.costs = nn.ModuleList([mlp(entity_in, 1, hidden) for _ in range(n_costs)])

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reward Q of both heads ``(2, batch)`` and cost Qs ``(n_costs, batch)``."""
        per_entity = th.cat(
            [
                entity_inputs(obs, self.entities, self.entity_obs),
                act.reshape(*act.shape[:-1], self.entities, self.entity_act),
            ],
            dim=-1,
        )
        q_r = th.stack([q(per_entity).sum((-2, -1)) for q in self.reward])
        q_c = th.stack([q(per_entity).sum((-2, -1)) for q in self.costs])
        return q_r, q_c


def polyak_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau net``."""
    with th.no_grad():
        for p, p_t in zip(net.parameters(), target.parameters(), strict=True):
            p_t.mul_(1 - tau).add_(p, alpha=tau)


# ---------------------------------------------------------------------------------------------------
# 2. Replay buffer with n-step returns
# ---------------------------------------------------------------------------------------------------
class NStepReplayBuffer:
    """Time-major ring buffer ``(capacity, n_envs)``; n-step targets are assembled at sampling.

    An n-step return stops at the first step that ends an episode (terminated or truncated) and at the
    newest stored step; it bootstraps from the next observation of its last step unless that step
    terminated (a time-limit truncation bootstraps).
    """

    def __init__(
        self, capacity: int, n_envs: int, obs_dim: int, act_dim: int, n_costs: int, seed: int | None
    ):
        self.capacity, self.n_envs = capacity, n_envs
        self.obs = np.zeros((capacity, n_envs, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, n_envs, obs_dim), np.float32)
        self.actions = np.zeros((capacity, n_envs, act_dim), np.float32)
        self.rewards = np.zeros((capacity, n_envs), np.float32)
        self.costs = np.zeros((capacity, n_envs, n_costs), np.float32)
        self.terminated = np.zeros((capacity, n_envs), np.float32)
        self.ended = np.zeros((capacity, n_envs), bool)
        self.pos, self.size = 0, 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, next_obs, actions, rewards, costs, terminated, ended) -> None:
        """Store one vector-env step (arrays with a leading ``n_envs`` axis)."""
        i = self.pos
        self.obs[i], self.next_obs[i], self.actions[i] = obs, next_obs, actions
        self.rewards[i], self.costs[i] = rewards, costs
        self.terminated[i], self.ended[i] = terminated, ended
        self.pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, n_step: int, gamma: float) -> dict[str, np.ndarray]:
        """A batch of n-step transitions: obs, action, discounted reward and cost sums, bootstrap obs."""
        t = (self.pos - 1 - self.rng.integers(0, self.size, batch_size)) % self.capacity
        env = self.rng.integers(0, self.n_envs, batch_size)
        newer = (self.pos - 1 - t) % self.capacity  # entries written after t
        reward = np.zeros(batch_size)
        cost = np.zeros((batch_size, self.costs.shape[-1]))
        last = t.copy()
        alive = np.ones(batch_size, bool)
        for j in range(n_step):
            idx = (t + j) % self.capacity
            take = alive & (j <= newer)
            reward += np.where(take, gamma**j * self.rewards[idx, env], 0.0)
            cost += np.where(take[:, None], gamma**j * self.costs[idx, env], 0.0)
            last = np.where(take, idx, last)
            alive = take & ~self.ended[idx, env]
        steps = np.where(last >= t, last - t, last + self.capacity - t) + 1
        discount = gamma**steps * (1.0 - self.terminated[last, env])
        return {
            "obs": self.obs[t, env],
            "actions": self.actions[t, env],
            "reward": reward.astype(np.float32),
            "cost": cost.astype(np.float32),
            "next_obs": self.next_obs[last, env],
            "discount": discount.astype(np.float32),
        }


# ---------------------------------------------------------------------------------------------------
# 3. E-step: the convex dual over (eta, lambda)
# ---------------------------------------------------------------------------------------------------
def estep_dual(
    params: np.ndarray, q_r: np.ndarray, q_c: np.ndarray, eps: float, thresholds: np.ndarray
) -> tuple[float, np.ndarray]:
    """The dual ``g(eta, lambda)`` and its gradient.

    ``g = eta eps + sum_i lambda_i thr_i + eta mean_s log mean_k exp((Q_r - sum_i lambda_i Q_ci) / eta)``
    with ``q_r`` of shape ``(B, K)`` and ``q_c`` of shape ``(n_costs, B, K)`` (float64).
    """
    eta, lam = params[0], params[1:]
    advantage = q_r - np.tensordot(lam, q_c, axes=1)  # new array: critic outputs are never modified
    z = advantage / eta
    lse = logsumexp(z, axis=1) - np.log(z.shape[1])
    weights = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    value = eta * eps + lam @ thresholds + eta * lse.mean()
    d_eta = eps + lse.mean() - np.mean(np.sum(weights * z, axis=1))
    d_lam = thresholds - np.mean(np.sum(weights[None] * q_c, axis=2), axis=1)
    return float(value), np.concatenate([[d_eta], d_lam])


def solve_estep_dual(
    q_r: np.ndarray,
    q_c: np.ndarray,
    eps: float,
    thresholds: np.ndarray,
    init: np.ndarray,
    dual_max: float = 20.0,
) -> np.ndarray:
    """Minimise :func:`estep_dual` over ``0 < eta <= dual_max, 0 <= lambda <= dual_max``.

    L-BFGS-B with the analytic gradient, bounded and warm-started from ``init``.
    """
    bounds = [(_DUAL_MIN, dual_max)] + [(0.0, dual_max)] * len(thresholds)
    start = np.clip(init, [b[0] for b in bounds], [b[1] for b in bounds])
    result = minimize(
        estep_dual,
        start,
        args=(q_r, q_c, eps, thresholds),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 100},
    )
    return result.x


def centre_cost_q(
    q_c: np.ndarray, running_value: np.ndarray | None, rate: float
) -> tuple[np.ndarray, np.ndarray]:
    """``Q_c - mean_k Q_c + V`` with V the running batch cost value, and the updated V.

    ``q_c`` is ``(n_costs, B, K)``; V moves by ``rate`` towards this batch's mean of ``Q_c`` (it starts
    there). Returns a new array; ``q_c`` is not modified.
    """
    state_value = q_c.mean(axis=2, keepdims=True)
    batch_value = state_value.mean(axis=(1, 2))
    value = batch_value if running_value is None else running_value + rate * (batch_value - running_value)
    return q_c - state_value + value[:, None, None], value


# ---------------------------------------------------------------------------------------------------
# 4. M-step: decoupled KL between diagonal Gaussians
# ---------------------------------------------------------------------------------------------------
def decoupled_kl(
    mean_old: th.Tensor, std_old: th.Tensor, mean: th.Tensor, std: th.Tensor
) -> tuple[th.Tensor, th.Tensor]:
    """Decoupled KL of diagonal Gaussians, averaged over the batch.

    Mean part ``1/2 sum_d (mu - mu_old)^2 / s_old^2``; std part ``KL(N(mu_old, s_old) || N(mu_old, s))``.
    """
    kl_mean = 0.5 * (((mean - mean_old) / std_old) ** 2).sum(-1).mean()
    ratio = (std_old / std) ** 2
    kl_std = 0.5 * (ratio - 1.0 - th.log(ratio)).sum(-1).mean()
    return kl_mean, kl_std


# ---------------------------------------------------------------------------------------------------
# 5. The agent
# ---------------------------------------------------------------------------------------------------
class CVPO:
    """Constrained Variational Policy Optimization with a stable-baselines3-like interface.

    Args:
        env: a Gymnasium env (or an SB3 VecEnv) with ``cost_spec`` and ``info["costs"]``; Box actions.
        config: hyperparameters (:class:`CVPOConfig`).
        cost_limits: per-step limits; default ``env.unwrapped.cost_spec.limits``.
        seed: seed of networks, buffer, exploration and env.
        tensorboard_log: folder for tensorboard logs (``None``: stdout only when ``verbose``).
        verbose: 1 prints the logs every ``log_interval`` episodes.
        device: torch device.
    """

    def __init__(
        self,
        env: gym.Env | VecEnv,
        config: CVPOConfig | None = None,
        cost_limits: Sequence[float] | None = None,
        seed: int | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        device: str = "cpu",
    ) -> None:
        self.config = config or CVPOConfig()
        self.seed, self.verbose, self.device = seed, verbose, th.device(device)
        self.tensorboard_log = tensorboard_log
        self.env = self._wrap(env)
        space = self.env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"CVPO needs a Box action space, got {space}")
        self._act_shape: tuple[int, ...] = space.shape
        self._obs_shape: tuple[int, ...] = tuple(self.env.observation_space.shape or ())
        spec = get_cost_spec(self.env)
        self.cost_spec: CostSpec = spec if cost_limits is None else spec.with_limits(cost_limits)
        if self.config.entity_dims == "env":
            self.config = replace(self.config, entity_dims=_entity_layout(self.env))
        setting = self.config.threshold_horizon
        horizon = (
            math.inf
            if setting == "infinite"
            else _episode_length(self.env)
            if setting == "episode"
            else float(setting)
        )
        self.thresholds = q_threshold(self.cost_spec.limits_array, self.config.gamma, horizon)
        self._build(int(np.prod(self._obs_shape)), int(np.prod(self._act_shape)))
        self.num_timesteps, self.num_updates = 0, 0
        self._logger: Logger | None = None

    # -- construction -------------------------------------------------------------------------------
    def _wrap(self, env: gym.Env | VecEnv) -> VecEnv:
        if isinstance(env, VecEnv):
            return env
        if isinstance(env, gym.vector.VectorEnv):
            raise ValueError("CVPO takes a Gymnasium env or an SB3 VecEnv, not a gymnasium.vector env")
        return DummyVecEnv([lambda: env])

    def _build(self, obs_dim: int, act_dim: int) -> None:
        cfg = self.config
        if self.seed is not None:
            th.manual_seed(self.seed)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        entity_actor: EntityGaussianActor | None = None
        dims = cfg.entity_dims
        assert not isinstance(dims, str)  # "env" is resolved in __init__
        if dims is None:
            actor: GaussianActor = GaussianActor(obs_dim, act_dim, cfg.hidden, cfg.log_std_init)
        else:
            actor = entity_actor = EntityGaussianActor(obs_dim, act_dim, cfg.hidden, cfg.log_std_init, dims)
        if cfg.min_std is not None:
            actor.min_log_std = math.log(cfg.min_std)
        self.actor = actor.to(self.device)
        critics: nn.Module
        if cfg.entity_critic_hidden is None:
            critics = Critics(obs_dim, act_dim, self.cost_spec.num_costs, cfg.hidden)
        else:
            # CVPOConfig checks that entity_critic_hidden comes with entity_dims
            assert entity_actor is not None and dims is not None
            critics = EntityCritics(entity_actor, self.cost_spec.num_costs, cfg.entity_critic_hidden, dims[1])
        self.critics = critics.to(self.device)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizer = th.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr)
        self.critic_optimizer = th.optim.Adam(self.critics.parameters(), lr=cfg.critic_lr)
        self.dual = np.concatenate([[1.0], np.zeros(self.cost_spec.num_costs)])  # (eta, lambda...)
        self.cost_value: np.ndarray | None = None  # running batch cost value (cost_value_baseline)
        self.alpha_mean, self.alpha_std = 0.0, 0.0
        space = self.env.action_space
        assert isinstance(space, gym.spaces.Box)  # checked in __init__
        self._low, self._high = space.low.astype(np.float32), space.high.astype(np.float32)

    # -- acting -------------------------------------------------------------------------------------
    def _to_env(self, action: np.ndarray) -> np.ndarray:
        """Map [-1, 1] (clipped) to the Box."""
        action = np.clip(action, -1.0, 1.0)
        return self._low + (action + 1.0) * 0.5 * (self._high - self._low)

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Action for one observation or a batch (SB3 semantics); deterministic = the policy mean."""
        obs = np.asarray(observation, dtype=np.float32)
        single = obs.shape == self._obs_shape
        batch = th.as_tensor(obs.reshape(-1, self.obs_dim), device=self.device)
        with th.no_grad():
            mean, std = self.actor(batch)
            action = mean if deterministic else mean + std * th.randn_like(mean)
        action = self._to_env(action.cpu().numpy()).reshape(-1, *self._act_shape)
        return (action[0] if single else action), None

    # -- learning -----------------------------------------------------------------------------------
    @property
    def logger(self) -> Logger:
        """The SB3 logger (stdout and/or tensorboard), made on first use."""
        if self._logger is None:
            formats = (["stdout"] if self.verbose else []) + (["tensorboard"] if self.tensorboard_log else [])
            folder = None
            if self.tensorboard_log:
                folder = str(Path(self.tensorboard_log) / f"CVPO_{int(time.time())}")
            self._logger = configure(folder, formats)
        return self._logger

    def get_env(self) -> VecEnv:
        """The (vector) training env, for SB3 callbacks."""
        return self.env

    def learn(
        self: SelfCVPO,
        total_timesteps: int,
        callback: BaseCallback | None = None,
        log_interval: int = 4,
        progress_bar: bool = False,
    ) -> SelfCVPO:
        """Collect ``total_timesteps`` env steps, updating as configured; returns self.

        Args:
            total_timesteps: env steps (summed over envs) to take in this call.
            callback: an SB3 ``BaseCallback`` (``CheckpointCallback``, ``EvalCallback``, ...).
            log_interval: dump logs every this many finished episodes.
            progress_bar: show SB3's progress bar.
        """
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
        cfg, env = self.config, self.env
        n_envs = env.num_envs
        if not hasattr(self, "buffer"):
            self.buffer = NStepReplayBuffer(
                cfg.buffer_size, n_envs, self.obs_dim, self.act_dim, self.cost_spec.num_costs, self.seed
            )
            self._rng = np.random.default_rng(self.seed)
            self.ep_info_buffer: deque[tuple[float, np.ndarray, int]] = deque(maxlen=100)
            if self.seed is not None:
                env.seed(self.seed)
            self._last_obs = env.reset()
            self._ep_reward = np.zeros(n_envs)
            self._ep_cost = np.zeros((n_envs, self.cost_spec.num_costs))
            self._ep_len = np.zeros(n_envs, dtype=np.int64)
        callbacks = [c for c in (callback, ProgressBarCallback() if progress_bar else None) if c is not None]
        cb = CallbackList(callbacks)
        cb.init_callback(self)  # type: ignore[arg-type]
        start, start_steps, update_credit, episodes = time.perf_counter(), self.num_timesteps, 0.0, 0
        end = self.num_timesteps + total_timesteps
        total_timesteps = end  # SB3 callbacks (the progress bar) read the absolute target from locals
        cb.on_training_start(locals(), globals())
        env_name = env_label(env)
        while self.num_timesteps < end:
            # Act: uniform random until learning_starts, then the stochastic policy.
            obs = np.asarray(self._last_obs)
            if self.num_timesteps < cfg.learning_starts:
                raw = self._rng.uniform(-1, 1, (n_envs, self.act_dim)).astype(np.float32)
            else:
                with th.no_grad():
                    mean, std = self.actor(th.as_tensor(obs.reshape(n_envs, -1), device=self.device))
                    raw = (mean + std * th.randn_like(mean)).cpu().numpy()
            actions = np.clip(raw, -1.0, 1.0)
            new_obs, rewards, dones, infos = env.step(self._to_env(actions).reshape(n_envs, *self._act_shape))
            costs = np.array([info["costs"] for info in infos], dtype=np.float32)
            check_transition(env_name, self.num_timesteps, new_obs, rewards, costs, infos)
            next_obs = np.array(new_obs, dtype=np.float32).reshape(n_envs, -1)
            terminated = np.zeros(n_envs, np.float32)
            for i, done in enumerate(dones):
                if done:
                    next_obs[i] = np.asarray(infos[i]["terminal_observation"]).reshape(-1)
                    terminated[i] = float(not infos[i].get("TimeLimit.truncated", False))
            self.buffer.add(
                obs.reshape(n_envs, -1),
                next_obs,
                actions,
                rewards,
                costs,
                terminated,
                dones,
            )
            self._last_obs = new_obs
            self.num_timesteps += n_envs
            episodes += self._track_episodes(rewards, costs, dones)

            # Learn: updates_per_step gradient updates per env step once learning has started.
            if self.num_timesteps >= cfg.learning_starts and self.buffer.size >= cfg.n_step:
                update_credit += cfg.updates_per_step * n_envs
                while update_credit >= 1.0:
                    self._update()
                    update_credit -= 1.0
            cb.update_locals(locals())
            if not cb.on_step():
                break
            if episodes >= log_interval:
                self._dump_logs(start, start_steps)
                episodes = 0
        cb.on_training_end()
        return self

    def _track_episodes(self, rewards: np.ndarray, costs: np.ndarray, dones: np.ndarray) -> int:
        self._ep_reward += rewards
        self._ep_cost += costs
        self._ep_len += 1
        finished = np.flatnonzero(dones)
        for i in finished:
            self.ep_info_buffer.append(
                (float(self._ep_reward[i]), self._ep_cost[i].copy(), int(self._ep_len[i]))
            )
            self._ep_reward[i], self._ep_cost[i], self._ep_len[i] = 0.0, 0.0, 0
        return len(finished)

    def _update(self) -> None:
        """One gradient update: critics, E-step, M-step, targets."""
        cfg = self.config
        batch = {
            k: th.as_tensor(v, device=self.device)
            for k, v in self.buffer.sample(cfg.batch_size, cfg.n_step, cfg.gamma).items()
        }
        obs = batch["obs"]

        # Critics: n-step targets from the target critics at an action of the current policy.
        with th.no_grad():
            mean, std = self.actor(batch["next_obs"])
            next_action = (mean + std * th.randn_like(mean)).clamp(-1.0, 1.0)
            q_r_next, q_c_next = self.critics_target(batch["next_obs"], next_action)
            target_r = batch["reward"] + batch["discount"] * q_r_next.min(0).values
            target_c = batch["cost"].T + batch["discount"] * q_c_next
        q_r, q_c = self.critics(obs, batch["actions"])
        critic_loss = F.mse_loss(q_r, target_r.expand_as(q_r))
        cost_critic_loss = F.mse_loss(q_c, target_c)
        self.critic_optimizer.zero_grad()
        (critic_loss + cost_critic_loss).backward()
        nn.utils.clip_grad_norm_(self.critics.parameters(), cfg.max_grad_norm)
        self.critic_optimizer.step()

        # E-step: K particles per state from the old policy, scored by the target critics.
        k, b = cfg.num_particles, obs.shape[0]
        with th.no_grad():
            mean_old, std_old = self.actor_target(obs)
            # The critics score executed (clipped) actions, so q lives on them and the M-step fits them:
            # fitting unclipped particles lets the std grow without bound where the clip hides actions.
            particles = (mean_old + std_old * th.randn(k, *mean_old.shape, device=self.device)).clamp(
                -1.0, 1.0
            )
            flat_obs = obs.unsqueeze(0).expand(k, *obs.shape).reshape(k * b, -1)
            q_r_p, q_c_p = self.critics_target(flat_obs, particles.reshape(k * b, -1))
        q_r_np = q_r_p.min(0).values.reshape(k, b).T.double().cpu().numpy()  # (B, K)
        q_c_np = q_c_p.reshape(-1, k, b).transpose(1, 2).double().cpu().numpy()  # (n_costs, B, K)
        if cfg.cost_value_baseline is not None:
            q_c_np, self.cost_value = centre_cost_q(q_c_np, self.cost_value, cfg.cost_value_baseline)
        self.dual = solve_estep_dual(
            q_r_np, q_c_np, cfg.estep_kl, self.thresholds, self.dual, cfg.estep_dual_max
        )
        eta, lam = self.dual[0], self.dual[1:]
        combined = (q_r_np - np.tensordot(lam, q_c_np, axes=1)) / eta
        weights = th.as_tensor(
            np.exp(combined - logsumexp(combined, axis=1, keepdims=True)).T,
            dtype=th.float32,
            device=self.device,
        )  # (K, B)

        # M-step: weighted maximum likelihood, mean and std each against the old policy's other half.
        for _ in range(cfg.mstep_iterations):
            mean, std = self.actor(obs)
            log_p_mean = th.distributions.Normal(mean, std_old).log_prob(particles).sum(-1)  # (K, B)
            log_p_std = th.distributions.Normal(mean_old, std).log_prob(particles).sum(-1)
            mle = (weights * (log_p_mean + log_p_std)).sum(0).mean()
            kl_mean, kl_std = decoupled_kl(mean_old, std_old, mean, std)
            self.alpha_mean = float(
                np.clip(
                    self.alpha_mean + cfg.mstep_dual_lr * (kl_mean.item() - cfg.mstep_kl_mean),
                    0.0,
                    cfg.mstep_dual_max,
                )
            )
            self.alpha_std = float(
                np.clip(
                    self.alpha_std + cfg.mstep_dual_lr * (kl_std.item() - cfg.mstep_kl_std),
                    0.0,
                    cfg.mstep_dual_max,
                )
            )
            actor_loss = -mle + self.alpha_mean * kl_mean + self.alpha_std * kl_std
            self.actor_optimizer.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.max_grad_norm)
            self.actor_optimizer.step()

        polyak_update(self.critics, self.critics_target, cfg.tau)
        polyak_update(self.actor, self.actor_target, cfg.tau)
        self.num_updates += 1
        self._last_losses = {
            "train/critic_loss": critic_loss.item(),
            "train/cost_critic_loss": cost_critic_loss.item(),
            "train/actor_loss": actor_loss.item(),
            "train/kl_mean": kl_mean.item(),
            "train/kl_std": kl_std.item(),
            "train/eta": float(eta),
            "train/alpha_mean": self.alpha_mean,
            "train/alpha_std": self.alpha_std,
            "train/std": float(std.detach().mean()),
        }

    def _dump_logs(self, start: float, start_steps: int) -> None:
        log = self.logger
        if self.ep_info_buffer:
            log.record("rollout/ep_rew_mean", float(np.mean([e[0] for e in self.ep_info_buffer])))
            log.record("rollout/ep_len_mean", float(np.mean([e[2] for e in self.ep_info_buffer])))
            sums = np.mean([e[1] for e in self.ep_info_buffer], axis=0)
            per_step = np.mean([e[1] / e[2] for e in self.ep_info_buffer], axis=0)
            for i, name in enumerate(self.cost_spec.names):
                log.record(f"rollout/ep_cost_mean/{name}", float(sums[i]))
                log.record(f"rollout/cost_per_step/{name}", float(per_step[i]))
        for key, value in getattr(self, "_last_losses", {}).items():
            log.record(key, value)
        for i, name in enumerate(self.cost_spec.names):
            log.record(f"train/lambda/{name}", float(self.dual[1 + i]))
        elapsed = max(time.perf_counter() - start, 1e-9)
        log.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        log.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        log.record("train/n_updates", self.num_updates, exclude="tensorboard")
        log.dump(self.num_timesteps)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a zip with the config, dual variables and network weights."""
        meta = {
            "config": asdict(self.config),
            "cost_spec": asdict(self.cost_spec),
            "thresholds": self.thresholds.tolist(),
            "dual": self.dual.tolist(),
            "cost_value": None if self.cost_value is None else self.cost_value.tolist(),
            "alpha": [self.alpha_mean, self.alpha_std],
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "num_timesteps": self.num_timesteps,
            "num_updates": self.num_updates,
            "low": self._low.tolist(),
            "high": self._high.tolist(),
            "observation_shape": list(self._obs_shape),
            "action_shape": list(self._act_shape),
        }
        weights = io.BytesIO()
        th.save({name: getattr(self, name).state_dict() for name in _MODULES}, weights)
        path = Path(path)
        if path.suffix != ".zip":
            path = path.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("cvpo.json", json.dumps(meta, indent=2))
            archive.writestr("weights.pt", weights.getvalue())

    def save_replay_buffer(self, path: str | Path) -> None:
        """Write the replay buffer (arrays and position, npz, no pickles) to resume training later."""
        buffer = getattr(self, "buffer", None)
        if buffer is None:
            raise ValueError("CVPO has no replay buffer yet: call learn() first")
        np.savez(
            path,
            obs=buffer.obs,
            next_obs=buffer.next_obs,
            actions=buffer.actions,
            rewards=buffer.rewards,
            costs=buffer.costs,
            terminated=buffer.terminated,
            ended=buffer.ended,
            position=np.array([buffer.pos, buffer.size]),
        )

    def load_replay_buffer(self, path: str | Path) -> None:
        """Restore a buffer written by :meth:`save_replay_buffer` (``learn`` then continues with it)."""
        with np.load(path, allow_pickle=False) as data:
            obs = data["obs"]
            capacity, n_envs = obs.shape[:2]
            buffer = NStepReplayBuffer(
                capacity, n_envs, self.obs_dim, self.act_dim, self.cost_spec.num_costs, self.seed
            )
            for name in ("obs", "next_obs", "actions", "rewards", "costs", "terminated", "ended"):
                getattr(buffer, name)[...] = data[name]
            buffer.pos, buffer.size = (int(x) for x in data["position"])
        self.buffer = buffer
        self._rng = np.random.default_rng(None if self.seed is None else self.seed + self.num_timesteps)
        self.ep_info_buffer = deque(maxlen=100)
        self._last_obs = self.env.reset()
        n_envs = self.env.num_envs
        self._ep_reward = np.zeros(n_envs)
        self._ep_cost = np.zeros((n_envs, self.cost_spec.num_costs))
        self._ep_len = np.zeros(n_envs, dtype=np.int64)

    @classmethod
    def for_env(
        cls,
        env: gym.Env | VecEnv,
        cost_limits: Sequence[float] | None = None,
        seed: int | None = None,
        **overrides: Any,
    ) -> CVPO:
        """CVPO with the env's recipe (``agents/hyperparams/cvpo.yml``) and ``overrides`` on top.

        The env id comes from ``env.spec.id`` (the first sub-env's for a VecEnv). A recipe's
        ``env_wrapper`` wraps a gymnasium ``env`` (``env_wrapper=None`` turns it off).
        """
        from edgegen.agents.hyperparams import load_hyperparams, split_env_wrapper

        single = env
        env_id = env_label(env if isinstance(env, VecEnv) else DummyVecEnv([lambda: single]))  # type: ignore[list-item,return-value]
        recipe, _ = load_hyperparams("cvpo", env_id)
        settings, wrapper = split_env_wrapper({**recipe, **overrides})
        if wrapper is not None:
            if isinstance(env, VecEnv):
                raise ValueError(
                    f"the {env_id} recipe wraps its env in {wrapper.__name__}: pass a gymnasium env, or "
                    f"a VecEnv of wrapped envs with env_wrapper=None"
                )
            env = wrapper(env)
        return cls(env, CVPOConfig.from_dict(settings), cost_limits=cost_limits, seed=seed)

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu") -> CVPO:
        """Load a saved agent; with ``env`` it can keep learning, without it it can ``predict``."""
        path = Path(path)
        if not path.exists() and path.with_suffix(".zip").exists():
            path = path.with_suffix(".zip")
        if checkpoint_kind(path) == "stable-baselines3":
            raise CheckpointMismatchError(
                f"{path} is a stable-baselines3 checkpoint (PPOLagrangian), not a CVPO one: load it with "
                "PPOLagrangian.load"
            )
        try:
            with zipfile.ZipFile(path) as archive:
                meta = json.loads(archive.read("cvpo.json"))
                state = th.load(
                    io.BytesIO(archive.read("weights.pt")), map_location=device, weights_only=True
                )
        except (FileNotFoundError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a CVPO checkpoint ({type(exc).__name__}: {exc})") from None
        try:
            config = CVPOConfig.from_dict(meta["config"])
        except ValueError as exc:
            raise CheckpointMismatchError(f"{path} cannot be loaded by this version: {exc}") from None
        if env is None:
            env = _PlaceholderEnv(meta)
        else:
            check_env_fits(
                path,
                env.envs[0] if isinstance(env, VecEnv) and hasattr(env, "envs") else env,
                tuple(meta["observation_shape"]),
                tuple(meta["action_shape"]),
                tuple(meta["cost_spec"]["names"]),
            )
        model = cls(env, config, cost_limits=meta["cost_spec"]["limits"], device=device)
        for name in _MODULES:
            getattr(model, name).load_state_dict(state[name])
        model.thresholds = np.array(meta["thresholds"])
        model.dual = np.array(meta["dual"])
        if meta.get("cost_value") is not None:
            model.cost_value = np.array(meta["cost_value"])
        model.alpha_mean, model.alpha_std = meta["alpha"]
        model.num_timesteps, model.num_updates = meta["num_timesteps"], meta["num_updates"]
        return model


_MODULES = ("actor", "critics", "actor_target", "critics_target", "actor_optimizer", "critic_optimizer")


def _episode_length(env: VecEnv) -> int:
    steps = env.get_attr("spec")[0]
    horizon = getattr(steps, "max_episode_steps", None) if steps is not None else None
    if horizon is None:
        raise ValueError(
            "the env has no max_episode_steps: pass CVPOConfig(threshold_horizon=T) for the Q threshold"
        )
    return int(horizon)


def _entity_layout(env: VecEnv) -> tuple[int, int]:
    """The entity layout the (first sub-)env declares, for ``CVPOConfig(entity_dims="env")``."""
    try:
        layout = env.get_attr("entity_layout")[0]
    except AttributeError:
        layout = None
    if layout is None:
        raise ValueError(
            'CVPOConfig(entity_dims="env"): the env declares no entity_layout; give (features, actions) '
            "per entity or None"
        )
    return (int(layout[0]), int(layout[1]))


class _PlaceholderEnv(gym.Env):
    """Spaces and cost spec of a saved agent, so that a loaded model can predict without its env."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, tuple(meta["observation_shape"]), np.float32)
        low, high = np.array(meta["low"], np.float32), np.array(meta["high"], np.float32)
        self.action_space = gym.spaces.Box(
            low.reshape(meta["action_shape"]), high.reshape(meta["action_shape"])
        )
        spec = meta["cost_spec"]
        self.cost_spec = CostSpec(tuple(spec["names"]), tuple(spec["units"]), tuple(spec["limits"]))
        # thresholds come from the checkpoint; the episode length only has to exist
        self.spec = gym.envs.registration.EnvSpec("placeholder", max_episode_steps=1)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        raise RuntimeError("this CVPO was loaded without an env; pass env= to CVPO.load to train it")

    def step(self, action: np.ndarray):
        raise RuntimeError("this CVPO was loaded without an env; pass env= to CVPO.load to train it")
