"""CVPO: Constrained Variational Policy Optimization (Liu et al., ICML 2022, arXiv 2201.11927).

Off-policy, continuous actions, any number of constraints, built on stable-baselines3's
``OffPolicyAlgorithm`` (its rollout collection, replay buffer, logger, callbacks, ``save``/``load``,
``learn``/``predict``). Reads top to bottom:

1. networks: a diagonal Gaussian actor (tanh-bounded mean, clipped samples), a reward critic with two
   heads (min for targets) and one cost head per constraint (or ``n_cost_critics``, max for targets),
   all with Polyak-averaged targets; per-entity ("per-device") variants of both;
2. the policy (:class:`CVPOPolicy`, SB3's ``BasePolicy``) that holds them; ``policy_kwargs`` set the
   network layout;
3. the E-step: K particles per state from the old (target) policy, the convex dual over
   (eta, lambda) solved with scipy (bounded, warm-started), non-parametric weights
   ``q = softmax_k((Q_r - sum_i lambda_i Q_ci) / eta)``;
4. the M-step: weighted maximum likelihood with decoupled KL trust regions for mean and std
   (MPO, Abdolmaleki et al. 2018), multipliers by dual ascent, gradient clipping;
5. the ``CVPO`` algorithm: ``train`` runs those updates on n-step batches of SB3's replay buffer
   extended with costs (:class:`~edgegen.agents.cost_buffer.CostNStepReplayBuffer`).

The episodic cost limit of constraint i, given per step as ``d_i`` over an episode of T steps, becomes
the Q threshold ``thr_i = d_i (1 - gamma^T) / (1 - gamma)``: the discounted value of paying exactly the
per-step limit for T steps (:func:`q_threshold`; ``CVPOConfig.threshold_horizon`` picks T). Costs in
units of their limits (``d_i = 1``) come from wrapping the env in ``envs.cmdp.NormalizeCosts``.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar, cast

import gymnasium as gym
import numpy as np
import torch as th
from scipy.optimize import minimize
from scipy.special import logsumexp
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv
from torch import nn
from torch.nn import functional as F

from edgegen.agents.checkpoints import CheckpointMismatchError, check_env_fits, checkpoint_kind
from edgegen.agents.cost_buffer import CostNStepReplayBuffer, CostReplayBufferSamples
from edgegen.agents.deployed import add_action_offset, deployed_policy_costs
from edgegen.agents.entities import entity_count, entity_inputs, resolve_entity_layout
from edgegen.agents.finite import check_transition, env_label
from edgegen.agents.selection import KeepBest, with_selection
from edgegen.envs.cmdp import CostSpec, get_cost_spec

__all__ = [
    "CVPO",
    "CVPOConfig",
    "CVPOPolicy",
    "centre_cost_q",
    "cvpo_settings",
    "estep_dual",
    "q_threshold",
    "solve_estep_dual",
]

SelfCVPO = TypeVar("SelfCVPO", bound="CVPO")
_DUAL_MIN = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def q_threshold(limit_per_step: float | np.ndarray, gamma: float, horizon: float) -> np.ndarray:
    """Q-value threshold of a per-step cost limit over an episode of ``horizon`` steps.

    ``limit (1 - gamma^T) / (1 - gamma)`` = ``sum_{t<T} gamma^t limit``; ``horizon=math.inf`` gives the
    infinite-horizon ``limit / (1 - gamma)``.
    """
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return np.asarray(limit_per_step, dtype=np.float64) * (1 - gamma**horizon) / (1 - gamma)


@dataclass(frozen=True)
class CVPOConfig:
    """Hyperparameters of :class:`CVPO` (defaults after FSRL's CVPO and the MEG authors' settings).

    The network layout is not here: it is the policy's (``policy_kwargs``, :class:`CVPOPolicy`).
    """

    gamma: float = 0.97
    """discount of reward and costs. In MEG-v0 and FedDiffusion-v0 no action changes a later state, so
    a small gamma (0.5) loses nothing and shrinks the action-independent part of Q that the critics
    must fit around the small action-dependent part. It raised MEG-v0's mean score at 60k steps from
    0.86 to 0.94 (BENCHMARKS.md)"""
    n_step: int = 2
    """n of the n-step returns"""
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
    buffer_size: int = 1_000_000
    """replay capacity in transitions over all envs (SB3's meaning)"""
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
    cost_value_baseline: float | None = None
    """replace each state's cost Qs in the E-step dual by their deviation from the state's particle
    mean plus a running mean (this Polyak rate per update) of the batch's cost value. Each state's
    softmax weights are unchanged (a per-state constant cancels), but the constraint no longer moves
    with which states the batch happened to draw: without it the batch mean of Q_c jitters by more
    than the KL-bounded q can correct, and lambda flips between 0 and its cap from batch to batch.
    ``None``: the batch's own Q_c, as in the paper"""
    cost_feedback: str = "none"
    """``"deterministic"``: every ``feedback_every`` env steps the deterministic policy plays
    ``feedback_episodes`` episodes on a copy of the first training env (a ``DummyVecEnv``; the steps
    count in ``num_timesteps``), and each Q threshold is rescaled by ``exp(-feedback_gain e)`` with
    ``e = cost / limit - 1`` of those episodes (the scale kept in [1/4, 4]): the E-step's constraint
    on the stochastic policy moves until the deployed, deterministic policy meets the limits
    (``agents.deployed``). ``"none"``: the thresholds stay as ``threshold_horizon`` sets them"""
    feedback_every: int = 1_000
    """env steps between two cost feedbacks (``cost_feedback="deterministic"``)"""
    feedback_episodes: int = 2
    """episodes of the deterministic policy per cost feedback"""
    feedback_gain: float = 0.5
    """step of the log threshold scale per unit of relative cost error"""
    keep_best: KeepBest | None = None
    """if set (a ``KeepBest`` or a mapping of ``every_steps``, ``episodes``, ``margin``, ``shift_dims``,
    ...), the deterministic policy is played on fixed selection episodes every ``every_steps`` env steps
    and the best feasible snapshot is loaded at the end of ``learn``; with ``shift_dims`` its
    deterministic action is then calibrated on those episodes (``agents.selection``; the steps count in
    ``num_timesteps``)"""

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> CVPOConfig:
        """A config from plain data (YAML, JSON): lists become the tuples the fields hold.

        Network settings belong to ``policy_kwargs`` (:func:`cvpo_settings` splits a flat dict).
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
        object.__setattr__(self, "keep_best", KeepBest.from_value(self.keep_best))
        # name: (ok, the allowed range in words)
        checks = {
            "gamma": (0 <= self.gamma < 1, "in [0, 1): 0 makes the critics one-step (contextual-bandit) Qs"),
            "n_step": (self.n_step >= 1, ">= 1"),
            "actor_lr": (self.actor_lr > 0, "> 0"),
            "critic_lr": (self.critic_lr > 0, "> 0"),
            "tau": (0 < self.tau <= 1, "in (0, 1]"),
            "batch_size": (self.batch_size >= 2, ">= 2"),
            "num_particles": (self.num_particles >= 2, ">= 2"),
            "estep_kl": (self.estep_kl > 0, "> 0"),
            "estep_dual_max": (self.estep_dual_max > 0, "> 0"),
            "mstep_kl_mean": (self.mstep_kl_mean > 0, "> 0"),
            "mstep_kl_std": (self.mstep_kl_std > 0, "> 0"),
            "mstep_iterations": (self.mstep_iterations >= 1, ">= 1"),
            "buffer_size": (self.buffer_size >= self.n_step, f">= n_step ({self.n_step})"),
            "learning_starts": (self.learning_starts >= 0, ">= 0"),
            "updates_per_step": (self.updates_per_step > 0, "> 0"),
            "max_grad_norm": (self.max_grad_norm > 0, "> 0"),
            "threshold_horizon": (
                self.threshold_horizon in ("episode", "infinite")
                or (isinstance(self.threshold_horizon, int) and self.threshold_horizon >= 1),
                "'episode', 'infinite' or an integer >= 1",
            ),
            "cost_value_baseline": (
                self.cost_value_baseline is None or 0 < self.cost_value_baseline <= 1,
                "None or in (0, 1]",
            ),
            "cost_feedback": (self.cost_feedback in ("none", "deterministic"), "'none' or 'deterministic'"),
            "feedback_every": (type(self.feedback_every) is int and self.feedback_every >= 1, "an int >= 1"),
            "feedback_episodes": (
                type(self.feedback_episodes) is int and self.feedback_episodes >= 1,
                "an int >= 1",
            ),
            "feedback_gain": (self.feedback_gain > 0, "> 0"),
        }
        for name, (ok, allowed) in checks.items():
            if not ok:
                raise ValueError(
                    f"CVPOConfig.{name} is out of range: {getattr(self, name)!r} (allowed: {allowed})"
                )


# Network settings that live in ``policy_kwargs``, under their names of edgegen-gym 0.1 (flat in a
# CVPOConfig) and their names now; :func:`cvpo_settings` moves either into ``policy_kwargs``.
_POLICY_KEYS = {
    "hidden": "net_arch",
    "net_arch": "net_arch",
    "entity_dims": "entity_layout",
    "entity_layout": "entity_layout",
    "entity_critic_hidden": "entity_critic_arch",
    "entity_critic_arch": "entity_critic_arch",
    "entity_critic": "entity_critic",
    "log_std_init": "log_std_init",
    "min_std": "min_std",
    "n_cost_critics": "n_cost_critics",
}


def cvpo_settings(settings: dict[str, Any]) -> tuple[CVPOConfig, dict[str, Any]]:
    """Split plain settings (a recipe, ``--algo-kwargs``, a run's config.json) into config and policy.

    Network keys may come flat (``min_std: 0.2``, or edgegen-gym 0.1's ``hidden``, ``entity_dims``,
    ``entity_critic_hidden``) or inside ``policy_kwargs``; flat ones win. Lists become tuples.
    Raises ``TypeError`` for an unknown key and ``ValueError`` for a bad value, naming it.
    """
    settings = dict(settings)
    nested = settings.pop("policy_kwargs", None) or {}
    if not isinstance(nested, dict):
        raise TypeError(f"policy_kwargs must be a mapping, got {nested!r}")
    flat = {_POLICY_KEYS[k]: settings.pop(k) for k in list(settings) if k in _POLICY_KEYS}
    policy_kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in {**nested, **flat}.items()}
    check_policy_kwargs(policy_kwargs)
    return CVPOConfig.from_dict(settings), policy_kwargs


# ---------------------------------------------------------------------------------------------------
# 1. Networks
# ---------------------------------------------------------------------------------------------------
def mlp(n_in: int, n_out: int, hidden: Sequence[int], leak: float = 0.0) -> nn.Sequential:
    """ReLU MLP (leaky with slope ``leak`` below zero when ``leak > 0``)."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(n_in, width), nn.LeakyReLU(leak) if leak else nn.ReLU()]
        n_in = width
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class GaussianActor(nn.Module):
    """Diagonal Gaussian with a tanh-bounded mean in [-1, 1] and a state-independent log std."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: Sequence[int], log_std_init: float, min_std: float | None
    ) -> None:
        super().__init__()
        self.mean_net = mlp(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(th.full((act_dim,), float(log_std_init)))
        self.min_log_std = -10.0 if min_std is None else math.log(min_std)

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std, each ``(batch, act_dim)``."""
        mean = th.tanh(self.mean_net(obs))
        std = self.log_std.clamp(self.min_log_std, 2.0).exp().expand_as(mean)
        return mean, std


class EntityGaussianActor(GaussianActor):
    """:class:`GaussianActor` whose mean is one MLP applied to every entity (``entity_layout``).

    The std is one per entity action dimension, shared by the entities.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: Sequence[int],
        log_std_init: float,
        min_std: float | None,
        entity_layout: tuple[int, int],
    ) -> None:
        entity_obs, entity_act = entity_layout
        self.entities = entity_count(obs_dim, act_dim, entity_layout)
        self.entity_obs, self.global_obs = entity_obs, obs_dim - self.entities * entity_obs
        super().__init__(entity_obs + self.global_obs, entity_act, hidden, log_std_init, min_std)

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Mean and std, each ``(batch, act_dim)``."""
        lead = obs.shape[:-1]
        mean = th.tanh(self.mean_net(entity_inputs(obs, self.entities, self.entity_obs))).reshape(*lead, -1)
        std = self.log_std.clamp(self.min_log_std, 2.0).exp().repeat(self.entities).expand_as(mean)
        return mean, std


class HeadStack(nn.Module):
    """``heads`` ReLU MLPs of one shape with scalar outputs on one input, stacked: ``(heads, ...)``.

    One MLP per head (``nn.Linear`` layers): on CPU, one batched ``baddbmm`` per layer for all heads
    measured 2.5x slower than a matmul per head at the E-step's shape (81920 rows, (32, 32) heads).
    """

    def __init__(self, n_in: int, hidden: Sequence[int], heads: int) -> None:
        super().__init__()
        self.nets = nn.ModuleList([mlp(n_in, 1, hidden) for _ in range(heads)])
        self._buffers_scratch: dict[int, th.Tensor] = {}  # over_particles' activations (not state)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """``x`` ``(..., n_in)`` -> ``(heads, ...)``."""
        return th.stack([net(x).squeeze(-1) for net in self.nets])

    @th.no_grad()
    def over_particles(self, state_in: th.Tensor, act: th.Tensor) -> th.Tensor:
        """``forward(cat([state_in, act[k]], -1))`` for every particle k, without gradients.

        ``state_in`` ``(..., n_state)`` and ``act`` ``(K, ..., n_act)`` -> ``(heads, K, ...)``. The first
        layer is split, ``W [s; a] + b = (W_s s + b) + W_a a``, so its state half runs once per state
        instead of once per particle and no ``(K, ..., n_in)`` input is built. The hidden activations
        live in scratch tensors kept between calls: the E-step scores K = 32 particles per state
        (FedDiffusion-v0: 81,920 device rows, 10 MB per hidden layer), and fresh tensors of that size
        came from new pages on every update (~11,000 page faults, a third of the E-step's time).
        Equal to ``forward`` up to float round-off.
        """
        n_state, rows = state_in.shape[-1], act.shape[:-1]
        scores = []
        for net in self.nets:
            first, *rest = (layer for layer in net.children() if isinstance(layer, nn.Linear))
            state_part = F.linear(state_in, first.weight[:, :n_state], first.bias)
            h = self._scratch(0, (*rows, first.out_features))
            if act.shape[-1] == 1:  # an outer product: one fused pass, 1.8x faster than a K=1 matmul
                th.addcmul(state_part, act, first.weight[:, n_state].contiguous(), out=h)
            else:
                th.matmul(act, first.weight[:, n_state:].T, out=h)
                h += state_part
            if not rest:  # a linear head: the first layer is the output
                scores.append(h.squeeze(-1).clone())
                continue
            *hidden, last = rest
            h.relu_()
            for i, layer in enumerate(hidden, start=1):
                out = self._scratch(i % 2, (*rows, layer.out_features))
                th.addmm(
                    layer.bias,
                    h.view(-1, layer.in_features),
                    layer.weight.T,
                    out=out.view(-1, layer.out_features),
                )
                h = out.relu_()
            scores.append(F.linear(h, last.weight, last.bias).squeeze(-1))
        return th.stack(scores)

    def _scratch(self, slot: int, shape: tuple[int, ...]) -> th.Tensor:
        """A reusable tensor of ``shape`` (contents undefined) for scratch ``slot``."""
        numel, weight = math.prod(shape), next(self.parameters())
        buffer = self._buffers_scratch.get(slot)
        if (
            buffer is None
            or buffer.numel() < numel
            or (buffer.dtype, buffer.device) != (weight.dtype, weight.device)
        ):
            buffer = self._buffers_scratch[slot] = th.empty(numel, dtype=weight.dtype, device=weight.device)
        return buffer[:numel].view(shape)


class Critics(nn.Module):
    """Two reward Q heads and one Q head per cost, on (obs, action)."""

    def __init__(self, obs_dim: int, act_dim: int, n_costs: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.heads = HeadStack(obs_dim + act_dim, hidden, 2 + n_costs)

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reward Q of both heads ``(2, batch)`` and cost Qs ``(n_costs, batch)``."""
        q = self.heads(th.cat([obs, act], dim=-1))
        return q[:2], q[2:]

    def over_particles(self, obs: th.Tensor, particles: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``forward`` of ``(B, obs_dim)`` states at each of ``(K, B, act_dim)`` particles, no gradients.

        Reward Qs ``(2, K, B)`` and cost Qs ``(n_costs, K, B)`` (:meth:`HeadStack.over_particles`).
        """
        q = self.heads.over_particles(obs, particles)
        return q[:2], q[2:]


def _entity_rows(
    obs: th.Tensor, act: th.Tensor, entities: int, entity_obs: int, entity_act: int
) -> th.Tensor:
    """``(..., E, entity_obs + global + entity_act)``: each entity's features, then its actions.

    ``act`` may carry leading (particle) dimensions that ``obs`` broadcasts over.
    """
    per_entity_obs = entity_inputs(obs, entities, entity_obs)
    per_entity_act = act.reshape(*act.shape[:-1], entities, entity_act)
    per_entity_obs = per_entity_obs.expand(*per_entity_act.shape[:-1], per_entity_obs.shape[-1])
    return th.cat([per_entity_obs, per_entity_act], dim=-1)


class EntityCritics(nn.Module):
    """:class:`Critics` whose heads are sums over entities, ``sum_e q(s_e, g, a_e)``."""

    def __init__(self, actor: EntityGaussianActor, n_costs: int, hidden: Sequence[int], entity_act: int):
        super().__init__()
        self.entities, self.entity_obs, self.entity_act = actor.entities, actor.entity_obs, entity_act
        self.heads = HeadStack(self.entity_obs + actor.global_obs + entity_act, hidden, 2 + n_costs)

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reward Q of both heads ``(2, batch)`` and cost Qs ``(n_costs, batch)``."""
        q = self.heads(_entity_rows(obs, act, self.entities, self.entity_obs, self.entity_act)).sum(-1)
        return q[:2], q[2:]

    def over_particles(self, obs: th.Tensor, particles: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``forward`` of ``(B, obs_dim)`` states at each of ``(K, B, act_dim)`` particles, no gradients.

        Reward Qs ``(2, K, B)`` and cost Qs ``(n_costs, K, B)`` (:meth:`HeadStack.over_particles`).
        """
        per_entity_act = particles.reshape(*particles.shape[:-1], self.entities, self.entity_act)
        q = self.heads.over_particles(entity_inputs(obs, self.entities, self.entity_obs), per_entity_act)
        q = q.sum(-1)
        return q[:2], q[2:]


class SetHead(nn.Module):
    """One scalar Q over a set of entities, invariant to their order (a two-stage Deep Set).

    ``x`` ``(..., E, n_in)`` (each entity's features and actions) -> ``(...)``. Stage 1 encodes every
    entity and averages the codes into a context; stage 2 encodes every entity again beside that
    context, and the mean and the max of those codes feed the output MLP. The context is what a
    per-entity term may depend on (SFLAM-v0: a device's share ``w_e / sum w`` needs the others'
    weights); the max is what a round's latency is (its slowest device). A sum over entities (the
    ``"sum"`` critic) represents neither.

    The activations are leaky ReLUs (slope ``LEAK`` below zero): with plain ReLUs the SFLAM-v0 cost
    head went flat around the policy's actions by 50k steps (Q_c's std over the E-step's particles
    5e-7 s against 0.28 s of true latency), every unit of the pooled codes off there, so the E-step
    saw no cost difference between particles (benchmarks/sflam_cost_critic.py).
    """

    LEAK = 0.1

    def __init__(self, n_in: int, hidden: Sequence[int]) -> None:
        super().__init__()
        *inner, width = hidden
        self.encode = nn.Sequential(mlp(n_in, width, inner, self.LEAK), nn.LeakyReLU(self.LEAK))
        self.encode_in_context = nn.Sequential(
            mlp(n_in + width, width, inner, self.LEAK), nn.LeakyReLU(self.LEAK)
        )
        self.out = mlp(2 * width, 1, (width,), self.LEAK)

    def forward(self, x: th.Tensor) -> th.Tensor:
        """``(..., E, n_in)`` -> ``(...)``."""
        context = self.encode(x).mean(-2, keepdim=True).expand(*x.shape[:-1], -1)
        codes = self.encode_in_context(th.cat([x, context], dim=-1))
        return self.out(th.cat([codes.mean(-2), codes.amax(-2)], dim=-1)).squeeze(-1)

    @th.no_grad()
    def evaluate(self, x: th.Tensor) -> th.Tensor:
        """``forward`` without gradients, its activations in place."""
        context = _run_inplace(self.encode, x).mean(-2, keepdim=True).expand(*x.shape[:-1], -1)
        codes = _run_inplace(self.encode_in_context, th.cat([x, context], dim=-1))
        return _run_inplace(self.out, th.cat([codes.mean(-2), codes.amax(-2)], dim=-1)).squeeze(-1)


def _run_inplace(net: nn.Sequential, x: th.Tensor) -> th.Tensor:
    """An MLP of :func:`mlp` (possibly nested ``nn.Sequential``) on ``x``, activations in place."""
    for layer in net:
        if isinstance(layer, nn.Sequential):
            x = _run_inplace(layer, x)
        elif isinstance(layer, nn.Linear):
            x = F.linear(x, layer.weight, layer.bias)
        elif isinstance(layer, nn.LeakyReLU):
            x = F.leaky_relu_(x, layer.negative_slope)
        else:  # nn.ReLU
            x = x.relu_()
    return x


class SetCritics(nn.Module):
    """:class:`Critics` whose heads are :class:`SetHead` s over the entities ``(s_e, g, a_e)``."""

    def __init__(self, actor: EntityGaussianActor, n_costs: int, hidden: Sequence[int], entity_act: int):
        super().__init__()
        self.entities, self.entity_obs, self.entity_act = actor.entities, actor.entity_obs, entity_act
        n_in = self.entity_obs + actor.global_obs + entity_act
        self.heads = nn.ModuleList([SetHead(n_in, hidden) for _ in range(2 + n_costs)])

    def forward(self, obs: th.Tensor, act: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Reward Q of both heads ``(2, ...)`` and cost Qs ``(n_costs, ...)``.

        ``act`` may carry leading particle dimensions that ``obs`` broadcasts over.
        """
        x = _entity_rows(obs, act, self.entities, self.entity_obs, self.entity_act)
        q = th.stack([head(x) for head in self.heads])
        return q[:2], q[2:]

    @th.no_grad()
    def over_particles(self, obs: th.Tensor, particles: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``forward`` of ``(B, obs_dim)`` states at each of ``(K, B, act_dim)`` particles, no gradients.

        Reward Qs ``(2, K, B)`` and cost Qs ``(n_costs, K, B)``; the activations run in place (the
        E-step's K x B x entities rows make them memory-bound).
        """
        x = _entity_rows(obs, particles, self.entities, self.entity_obs, self.entity_act)
        q = th.stack([cast(SetHead, head).evaluate(x) for head in self.heads])
        return q[:2], q[2:]


def polyak_update(net: nn.Module, target: nn.Module, tau: float) -> None:
    """``target <- (1 - tau) target + tau net``."""
    with th.no_grad():
        for p, p_t in zip(net.parameters(), target.parameters(), strict=True):
            p_t.mul_(1 - tau).add_(p, alpha=tau)


# ---------------------------------------------------------------------------------------------------
# 2. The policy: actor, critics, their targets and optimisers
# ---------------------------------------------------------------------------------------------------
def check_policy_kwargs(policy_kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError`` for an unknown network key, ``ValueError`` for a bad value (before building)."""
    known = {
        "net_arch",
        "entity_layout",
        "entity_critic_arch",
        "entity_critic",
        "log_std_init",
        "min_std",
        "n_cost_critics",
    }
    unknown = sorted(set(policy_kwargs) - known)
    if unknown:
        raise TypeError(f"unknown CVPO policy_kwargs {unknown}; it takes {sorted(known)}")
    get = policy_kwargs.get
    arch, layout, critic = get("net_arch", (1,)), get("entity_layout"), get("entity_critic_arch")
    min_std = get("min_std")
    # name: (ok, the allowed values in words)
    checks = {
        "net_arch": (
            isinstance(arch, tuple | list) and all(isinstance(w, int) and w >= 1 for w in arch),
            "a list of layer widths >= 1",
        ),
        "entity_layout": (
            layout in (None, "env")
            or (
                isinstance(layout, tuple | list)
                and len(layout) == 2
                and all(isinstance(d, int) and d >= 1 for d in layout)
            ),
            "None, 'env' or (features, actions) per entity, both >= 1",
        ),
        "entity_critic_arch": (
            critic is None
            or (isinstance(critic, tuple | list) and all(isinstance(w, int) and w >= 1 for w in critic)),
            "None or a list of layer widths >= 1",
        ),
        "entity_critic": (get("entity_critic", "sum") in ("sum", "set"), "'sum' or 'set'"),
        "log_std_init": (isinstance(get("log_std_init", 0.0), int | float), "a number"),
        "min_std": (
            min_std is None or (isinstance(min_std, int | float) and 0 < min_std < 1),
            "None or in (0, 1)",
        ),
        "n_cost_critics": (
            isinstance(get("n_cost_critics", 1), int) and get("n_cost_critics", 1) >= 1,
            "an integer >= 1",
        ),
    }
    for name, (ok, allowed) in checks.items():
        if not ok:
            raise ValueError(f"CVPO policy_kwargs {name} is out of range: {get(name)!r} (allowed: {allowed})")
    if critic is not None and layout is None:
        raise ValueError(
            "CVPO policy_kwargs entity_critic_arch needs entity_layout (the entities to sum over)"
        )
    if get("entity_critic", "sum") != "sum" and not critic:
        raise ValueError(
            "CVPO policy_kwargs entity_critic='set' needs entity_critic_arch with at least one layer"
        )


class CVPOPolicy(BasePolicy):
    """Actor, reward and cost critics, and their Polyak targets (``policy_kwargs`` of :class:`CVPO`).

    Args:
        observation_space: flat Box observations.
        action_space: Box actions (the actor works in [-1, 1]; SB3 rescales).
        lr_schedule: SB3's schedule; the optimisers use ``actor_lr`` and ``critic_lr``.
        n_costs: constraint costs (set by CVPO).
        actor_lr: learning rate of the actor (set by CVPO from its config).
        critic_lr: learning rate of the critics (set by CVPO from its config).
        net_arch: hidden layers of the actor and of whole-state critics.
        entity_layout: ``(observation features, action dims)`` of one entity (a device) for an actor
            shared by all entities: the observation is the entities' features one after the other, then
            global features; the action is the entities' actions one after the other. One MLP maps each
            entity's features plus the global ones to its actions, so every entity's sample trains it
            and its policy is the same whatever the entity's index. ``"env"``: the layout the env
            declares (``entity_layout``: FedDiffusion-v0 ``(3, 1)``, SFLAM-v0 ``(2, 3)``; CVPO resolves
            it). ``None``: one MLP on the whole observation.
        entity_critic_arch: hidden layers of critics that are sums over the entities:
            ``Q(s, a) = sum_e q(s_e, g, a_e)``, one MLP q shared by the entities, so Q is invariant to
            their order. Exact where reward and costs are sums of per-entity terms (FedDiffusion-v0:
            energy and late devices), and each transition then trains q once per entity. ``None``:
            whole-state critics of ``net_arch``.
        entity_critic: how the entity critics (``entity_critic_arch``) combine the entities: ``"sum"``
            (above) or ``"set"``, an order-invariant Deep Set per head (:class:`SetHead`) that sees the
            entities' mean code as context and pools them by mean and max: for costs that are a max
            over entities of terms coupled through a shared budget (SFLAM-v0's round latency: the
            slowest device, each device's share a fraction of all weights).
        log_std_init: initial log std of the (state-independent) policy.
        min_std: floor of the policy's std during training (``None``: e^-10). Where the reward's
            dependence on an action is small next to its spread over states (FedDiffusion-v0: ~0.02 per
            0.1 of a device's share, against a reward std of 3.6), the std collapses to ~0.06 before
            the critics have resolved that dependence, and the policy stops where it is; a floor keeps
            the critics' data wide. Deterministic predictions use the mean, so the floor costs nothing
            there. 0.2 with per-device critics took FedDiffusion-v0 from 1.15-1.17x the oracle's energy
            to 0.98x; 0.15 on MEG-v0 met the score and cost targets on every seed (docs/experiments.md).
        n_cost_critics: Q heads per cost, each trained on the largest of the target heads' values; the
            E-step uses that largest value too (a pessimistic cost, as the reward's heads take the
            smallest). 1: one head, as in the paper.
    """

    action_offset: th.Tensor  # a buffer (agents.deployed.add_action_offset)

    def __init__(
        self,
        observation_space: gym.spaces.Space,
        action_space: gym.spaces.Space,
        lr_schedule: Schedule,
        n_costs: int = 1,
        actor_lr: float = 5e-4,
        critic_lr: float = 1e-3,
        net_arch: Sequence[int] = (128, 128),
        entity_layout: Sequence[int] | None = None,
        entity_critic_arch: Sequence[int] | None = None,
        entity_critic: str = "sum",
        log_std_init: float = -0.5,
        min_std: float | None = None,
        n_cost_critics: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, squash_output=True)
        check_policy_kwargs(
            {
                "net_arch": tuple(net_arch),
                "entity_layout": entity_layout,
                "entity_critic_arch": entity_critic_arch,
                "entity_critic": entity_critic,
                "log_std_init": log_std_init,
                "min_std": min_std,
                "n_cost_critics": n_cost_critics,
            }
        )
        self.n_costs, self.n_cost_critics = n_costs, n_cost_critics
        cost_heads = n_costs * n_cost_critics
        if entity_layout == "env":
            raise ValueError('entity_layout="env" is resolved by CVPO from its env; pass the layout here')
        obs_dim = int(np.prod(observation_space.shape or (1,)))
        act_dim = int(np.prod(action_space.shape or (1,)))
        self.actor: GaussianActor
        self.critics: nn.Module
        if entity_layout is None:
            self.actor = GaussianActor(obs_dim, act_dim, net_arch, log_std_init, min_std)
        else:
            layout = (int(entity_layout[0]), int(entity_layout[1]))
            self.actor = EntityGaussianActor(obs_dim, act_dim, net_arch, log_std_init, min_std, layout)
        if entity_critic_arch is None:
            self.critics = Critics(obs_dim, act_dim, cost_heads, net_arch)
        else:
            # check_policy_kwargs: entity critics need a layout
            assert isinstance(self.actor, EntityGaussianActor) and entity_layout is not None
            critic_class = SetCritics if entity_critic == "set" else EntityCritics
            self.critics = critic_class(self.actor, cost_heads, entity_critic_arch, int(entity_layout[1]))
        add_action_offset(self, act_dim)  # a calibrated shift of the deterministic action (keep_best)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizer = th.optim.Adam(self.actor.parameters(), lr=actor_lr, fused=True)
        self.critic_optimizer = th.optim.Adam(self.critics.parameters(), lr=critic_lr, fused=True)

    def pessimistic_cost(self, q_c: th.Tensor) -> th.Tensor:
        """Each cost's largest Q over its ``n_cost_critics`` heads.

        ``(n_cost_critics * n_costs, ...)`` -> ``(n_costs, ...)``; head ``j * n_costs + i`` is critic j of
        cost i.
        """
        return q_c.reshape(self.n_cost_critics, self.n_costs, *q_c.shape[1:]).amax(0)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Actions in [-1, 1] (``_predict``)."""
        return self._predict(obs, deterministic)

    def _predict(
        self, observation: th.Tensor | dict[str, th.Tensor], deterministic: bool = False
    ) -> th.Tensor:
        """The mean plus ``action_offset`` (deterministic) or a Gaussian sample, clipped to [-1, 1]."""
        if isinstance(observation, dict):
            raise ValueError("CVPOPolicy takes flat Box observations, not a Dict")
        mean, std = self.actor(observation.reshape(observation.shape[0], -1).float())
        if deterministic:
            return (mean + self.action_offset).clamp(-1.0, 1.0)
        return (mean + std * th.randn_like(mean)).clamp(-1.0, 1.0)


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
    advantage = q_r - _weighted_sum(lam, q_c)  # new array: critic outputs are never modified
    z = advantage / eta
    lse = logsumexp(z, axis=1) - np.log(z.shape[1])
    weights = np.exp(z - logsumexp(z, axis=1, keepdims=True))
    value = eta * eps + float(np.sum(lam * thresholds)) + eta * lse.mean()
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


def particle_statistics(particles: th.Tensor, weights: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """The particles' weight sum ``(B, 1)``, weighted mean and weighted squared spread about it ``(B, A)``.

    ``(K, B, A)`` particles under ``(K, B)`` weights, for :func:`weighted_log_likelihood`.
    """
    w = weights.unsqueeze(-1)
    w_sum = w.sum(0)
    mean = (w * particles).sum(0) / w_sum
    spread = (w * (particles - mean) ** 2).sum(0)
    return w_sum, mean, spread


def weighted_log_likelihood(
    statistics: tuple[th.Tensor, th.Tensor, th.Tensor], mean: th.Tensor, std: th.Tensor
) -> th.Tensor:
    """``sum_k w_k log N(x_k; mean, std)``, summed over action dims, from :func:`particle_statistics`.

    ``sum_k w_k (x_k - mu)^2 = spread + w_sum (xbar - mu)^2``, so each M-step iteration costs one pass
    over the states instead of one over all K particles of every state. ``(B,)``.
    """
    w_sum, particle_mean, spread = statistics
    squared = spread + w_sum * (particle_mean - mean) ** 2
    return (-0.5 * squared / std**2 - w_sum * (th.log(std) + _HALF_LOG_2PI)).sum(-1)


# ---------------------------------------------------------------------------------------------------
# 5. The algorithm
# ---------------------------------------------------------------------------------------------------
class CVPO(OffPolicyAlgorithm):
    """Constrained Variational Policy Optimization on stable-baselines3's ``OffPolicyAlgorithm``.

    Args:
        policy: ``"MlpPolicy"`` (:class:`CVPOPolicy`) or a subclass of it.
        env: a Gymnasium env (or an SB3 VecEnv) with ``cost_spec`` and ``info["costs"]``; Box actions.
        config: hyperparameters (:class:`CVPOConfig`); ``**settings`` override single fields.
        cost_limits: per-step limits; default ``env.unwrapped.cost_spec.limits``.
        policy_kwargs: the network layout (:class:`CVPOPolicy`); ``entity_layout="env"`` takes the
            env's declared ``entity_layout``.
        tensorboard_log: folder for tensorboard logs.
        verbose: 1 prints SB3's log table every ``log_interval`` episodes.
        seed: seed of networks, buffer sampling, exploration and env.
        device: torch device.
        **settings: fields of :class:`CVPOConfig` (``TypeError`` for an unknown one).

    >>> import gymnasium as gym, edgegen
    >>> model = CVPO("MlpPolicy", gym.make("edgegen/MEG-v0"), learning_starts=8, batch_size=8,
    ...              num_particles=4, policy_kwargs={"net_arch": (16,)}, seed=0)
    >>> model.learn(24).num_timesteps
    24
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"MlpPolicy": CVPOPolicy}
    policy: CVPOPolicy

    def __init__(
        self,
        policy: str | type[CVPOPolicy],
        env: GymEnv | str | None,
        config: CVPOConfig | None = None,
        *,
        cost_limits: Sequence[float] | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        tensorboard_log: str | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
        **settings: Any,
    ) -> None:
        self.config = replace(config or CVPOConfig(), **settings)
        cfg = self.config
        self.selected_step: int | None = None  # set by keep_best's selection at the end of learn
        self.selected_shift: float | None = None  # keep_best's calibrated shift (with shift_dims)
        policy_kwargs = dict(policy_kwargs or {})
        check_policy_kwargs(policy_kwargs)
        if isinstance(env, gym.vector.VectorEnv):
            raise ValueError("CVPO takes a Gymnasium env or an SB3 VecEnv, not a gymnasium.vector env")
        space = getattr(env, "action_space", None)
        if space is not None and not isinstance(space, gym.spaces.Box):
            raise ValueError(f"CVPO needs a Box action space, got {space}")
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=cfg.critic_lr,
            buffer_size=cfg.buffer_size,
            learning_starts=cfg.learning_starts,
            batch_size=cfg.batch_size,
            tau=cfg.tau,
            gamma=cfg.gamma,
            train_freq=1,
            gradient_steps=-1,  # train() gets the env steps just taken and does updates_per_step each
            replay_buffer_class=CostNStepReplayBuffer,
            replay_buffer_kwargs={"n_steps": cfg.n_step, "gamma": cfg.gamma},
            policy_kwargs=policy_kwargs,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            supported_action_spaces=(gym.spaces.Box,),
            sde_support=False,
            support_multi_env=True,
        )
        # load() builds with _init_setup_model=False and restores what follows from the file (where the
        # config that set the thresholds is restored too: an env without max_episode_steps loads)
        if self.env is not None and _init_setup_model:
            spec = get_cost_spec(self.env)
            self.cost_spec: CostSpec = spec if cost_limits is None else spec.with_limits(cost_limits)
            resolve_entity_layout(self.policy_kwargs, self.env, "CVPO")
            setting = cfg.threshold_horizon
            horizon = (
                math.inf
                if setting == "infinite"
                else _episode_length(self.env)
                if setting == "episode"
                else float(setting)
            )
            self.thresholds = q_threshold(self.cost_spec.limits_array, cfg.gamma, horizon)
            self.dual = np.concatenate([[1.0], np.zeros(self.cost_spec.num_costs)])  # (eta, lambda...)
            self.cost_value: np.ndarray | None = None  # running batch cost value (cost_value_baseline)
            self.alpha_mean, self.alpha_std = 0.0, 0.0
            self._update_credit = 0.0
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        n_costs = self.cost_spec.num_costs
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "n_costs": n_costs}
        self.policy_kwargs = {  # a loaded file's JSON holds lists where the layout keeps tuples
            **{k: tuple(v) if isinstance(v, list) else v for k, v in self.policy_kwargs.items()},
            "n_costs": n_costs,
            "actor_lr": self.config.actor_lr,
            "critic_lr": self.config.critic_lr,
        }
        super()._setup_model()
        self.ep_cost_buffer: deque[tuple[np.ndarray, int]] = deque(maxlen=self._stats_window_size)
        self._ep_cost_sums = np.zeros((self.n_envs, n_costs))
        self._ep_lengths = np.zeros(self.n_envs, dtype=np.int64)
        self._env_label = env_label(self.env) if self.env is not None else "env"
        self._feedback_env: gym.Env | None = None  # built at the first cost feedback
        if not hasattr(self, "threshold_scale"):  # a new model (a loaded one has its own), or an old file
            self.threshold_scale = np.ones(n_costs)  # moved by cost_feedback only
            self._next_feedback = self.config.feedback_every

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_feedback_env"]

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
        ``env_wrapper`` wraps a gymnasium ``env`` (``env_wrapper=None`` turns it off). Network keys
        may be given flat (``min_std=0.3``) or as ``policy_kwargs``.
        """
        from edgegen.agents.hyperparams import load_hyperparams, split_env_wrapper

        single = env
        env_id = env_label(env if isinstance(env, VecEnv) else DummyVecEnv([lambda: single]))  # type: ignore[list-item,return-value]
        recipe, _ = load_hyperparams("cvpo", env_id)
        policy_kwargs = {**recipe.pop("policy_kwargs", {}), **overrides.pop("policy_kwargs", {})}
        settings, wrapper = split_env_wrapper({**recipe, **overrides, "policy_kwargs": policy_kwargs})
        if wrapper is not None:
            if isinstance(env, VecEnv):
                raise ValueError(
                    f"the {env_id} recipe wraps its env in {wrapper.__name__}: pass a gymnasium env, or "
                    f"a VecEnv of wrapped envs with env_wrapper=None"
                )
            env = wrapper(env)
        config, policy_kwargs = cvpo_settings(settings)
        return cls("MlpPolicy", env, config, cost_limits=cost_limits, policy_kwargs=policy_kwargs, seed=seed)

    # -- collecting: SB3's loop; each step's costs are checked, stored and summed per episode --------
    def _store_transition(
        self,
        replay_buffer: Any,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        # the buffer parsed this step's costs once; the check runs before any update can read them
        costs = replay_buffer.costs[(replay_buffer.pos - 1) % replay_buffer.buffer_size]
        check_transition(self._env_label, self.num_timesteps, new_obs, reward, costs, infos)
        self._ep_cost_sums += costs
        self._ep_lengths += 1
        for i in np.flatnonzero(dones):
            self.ep_cost_buffer.append((self._ep_cost_sums[i].copy(), int(self._ep_lengths[i])))
            self._ep_cost_sums[i], self._ep_lengths[i] = 0.0, 0

    def dump_logs(self) -> None:
        """SB3's log table plus each cost's episode sum and mean per step, and the multipliers."""
        if self.ep_cost_buffer:
            sums = np.mean([s for s, _ in self.ep_cost_buffer], axis=0)
            per_step = np.mean([s / n for s, n in self.ep_cost_buffer], axis=0)
            for i, name in enumerate(self.cost_spec.names):
                self.logger.record(f"rollout/ep_cost_mean/{name}", float(sums[i]))
                self.logger.record(f"rollout/cost_per_step/{name}", float(per_step[i]))
        for i, name in enumerate(self.cost_spec.names):
            self.logger.record(f"train/lambda/{name}", float(self.dual[1 + i]))
        super().dump_logs()

    # -- learning -----------------------------------------------------------------------------------
    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """``updates_per_step`` updates per env step just collected (``gradient_steps`` of them)."""
        if self.config.cost_feedback == "deterministic" and self.num_timesteps >= self._next_feedback:
            self._feed_thresholds()
        self.policy.set_training_mode(True)
        self._update_credit += self.config.updates_per_step * gradient_steps
        losses: dict[str, float] = {}
        while self._update_credit >= 1.0:
            losses = self._update(self.replay_buffer.sample(batch_size))  # type: ignore[union-attr,arg-type]
            self._update_credit -= 1.0
        for key, value in losses.items():
            self.logger.record(key, value)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _feed_thresholds(self) -> None:
        """Rescale the Q thresholds by the deployed policy's costs (``CVPOConfig.cost_feedback``)."""
        cfg = self.config
        cost = deployed_policy_costs(self, cfg.feedback_episodes, "CVPO")
        self._next_feedback = self.num_timesteps + cfg.feedback_every
        error = cost / self.cost_spec.limits_array - 1.0
        self.threshold_scale = np.clip(self.threshold_scale * np.exp(-cfg.feedback_gain * error), 0.25, 4.0)
        for i, name in enumerate(self.cost_spec.names):
            self.logger.record(f"rollout/deterministic_cost_per_step/{name}", float(cost[i]))
            self.logger.record(f"train/threshold_scale/{name}", float(self.threshold_scale[i]))

    def _update(self, batch: CostReplayBufferSamples) -> dict[str, float]:
        """One gradient update: critics, E-step, M-step, targets."""
        cfg, policy = self.config, self.policy
        obs = batch.observations

        # Critics: n-step targets from the target critics at an action of the current policy.
        with th.no_grad():
            mean, std = policy.actor(batch.next_observations)
            next_action = (mean + std * th.randn_like(mean)).clamp(-1.0, 1.0)
            q_r_next, q_c_next = policy.critics_target(batch.next_observations, next_action)
            bootstrap = (batch.discounts * (1.0 - batch.dones)).squeeze(-1)
            target_r = batch.rewards.squeeze(-1) + bootstrap * q_r_next.min(0).values
            target_c = batch.costs.T + bootstrap * policy.pessimistic_cost(q_c_next)
        q_r, q_c = policy.critics(obs, batch.actions)
        critic_loss = F.mse_loss(q_r, target_r.expand_as(q_r))
        cost_critic_loss = F.mse_loss(q_c, target_c.repeat(policy.n_cost_critics, 1))
        policy.critic_optimizer.zero_grad()
        (critic_loss + cost_critic_loss).backward()
        nn.utils.clip_grad_norm_(policy.critics.parameters(), cfg.max_grad_norm)
        policy.critic_optimizer.step()

        # E-step: K particles per state from the old policy, scored by the target critics.
        k = cfg.num_particles
        with th.no_grad():
            mean_old, std_old = policy.actor_target(obs)
            # The critics score executed (clipped) actions, so q lives on them and the M-step fits them:
            # fitting unclipped particles lets the std grow without bound where the clip hides actions.
            particles = (mean_old + std_old * th.randn(k, *mean_old.shape, device=self.device)).clamp(
                -1.0, 1.0
            )
            q_r_p, q_c_p = policy.critics_target.over_particles(obs, particles)  # (2 | cost heads, K, B)
        q_r_np = q_r_p.min(0).values.T.double().cpu().numpy()  # (B, K)
        q_c_np = policy.pessimistic_cost(q_c_p).transpose(1, 2).double().cpu().numpy()  # (n_costs, B, K)
        if cfg.cost_value_baseline is not None:
            q_c_np, self.cost_value = centre_cost_q(q_c_np, self.cost_value, cfg.cost_value_baseline)
        self.dual = solve_estep_dual(
            q_r_np,
            q_c_np,
            cfg.estep_kl,
            self.thresholds * self.threshold_scale,
            self.dual,
            cfg.estep_dual_max,
        )
        eta, lam = self.dual[0], self.dual[1:]
        combined = (q_r_np - _weighted_sum(lam, q_c_np)) / eta
        weights = th.as_tensor(
            np.exp(combined - logsumexp(combined, axis=1, keepdims=True)).T,
            dtype=th.float32,
            device=self.device,
        )  # (K, B)

        # M-step: weighted maximum likelihood, mean and std each against the old policy's other half.
        statistics = particle_statistics(particles, weights)
        for _ in range(cfg.mstep_iterations):
            mean, std = policy.actor(obs)
            log_p_mean = weighted_log_likelihood(statistics, mean, std_old)  # (B,)
            log_p_std = weighted_log_likelihood(statistics, mean_old, std)
            mle = (log_p_mean + log_p_std).mean()
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
            policy.actor_optimizer.zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(policy.actor.parameters(), cfg.max_grad_norm)
            policy.actor_optimizer.step()

        polyak_update(policy.critics, policy.critics_target, cfg.tau)
        polyak_update(policy.actor, policy.actor_target, cfg.tau)
        self._n_updates += 1
        return {
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

    def learn(
        self: SelfCVPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "CVPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfCVPO:
        """SB3's ``learn``: ``total_timesteps`` env steps, updating as configured; returns self."""
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be >= 1, got {total_timesteps}")
        return super().learn(
            total_timesteps,
            callback=with_selection(callback, self.config.keep_best),
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @property
    def num_updates(self) -> int:
        """Gradient updates so far."""
        return self._n_updates

    # -- persistence: SB3's zip; the optimisers sit in the policy ---------------------------------
    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "policy.actor_optimizer", "policy.critic_optimizer"], []

    @classmethod
    def load(  # type: ignore[override]
        cls,
        path: str | Path,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> CVPO:
        """SB3's ``load``, with one-sentence errors for another algorithm's checkpoint or another env.

        With ``env`` it can keep learning (``load_replay_buffer`` restores its data); without, it can
        ``predict``. SB3's loader unpickles parts of the zip: load only files you trust.
        """
        file = Path(path)
        if not file.exists() and file.with_suffix(".zip").exists():
            file = file.with_suffix(".zip")
        kind = checkpoint_kind(file)
        if kind == "CVPO (edgegen-gym 0.1)":
            raise CheckpointMismatchError(
                f"{file} was written by the CVPO of edgegen-gym 0.1 (cvpo.json + weights.pt); this CVPO "
                "is a stable-baselines3 algorithm and reads SB3 zips: retrain it (edgegen-train train "
                "--algo cvpo ...)"
            )
        if kind == "stable-baselines3":
            raise CheckpointMismatchError(
                f"{file} is a stable-baselines3 checkpoint (PPOLagrangian), not a CVPO one: load it with "
                "PPOLagrangian.load"
            )
        if kind != "CVPO":
            raise ValueError(f"{file} is not a CVPO checkpoint (not a stable-baselines3 zip of a CVPO)")
        if env is not None:
            bare = super().load(file, env=None, device=device, custom_objects=custom_objects, **kwargs)
            first = env.envs[0] if isinstance(env, VecEnv) and hasattr(env, "envs") else env
            check_env_fits(
                file,
                first,
                tuple(bare.observation_space.shape or ()),
                tuple(bare.action_space.shape or ()),
                bare.cost_spec.names,
            )
        model = super().load(
            file,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        if env is not None:  # per-env episode tallies restart with the new env
            model._ep_cost_sums = np.zeros((model.n_envs, model.cost_spec.num_costs))
            model._ep_lengths = np.zeros(model.n_envs, dtype=np.int64)
        return model


def _weighted_sum(lam: np.ndarray, q_c: np.ndarray) -> np.ndarray:
    """``sum_i lam_i q_c[i]`` without BLAS (whose idle threads spin and double the CPU time)."""
    return (lam[:, None, None] * q_c).sum(axis=0)


def _episode_length(env: VecEnv) -> int:
    steps = env.get_attr("spec")[0]
    horizon = getattr(steps, "max_episode_steps", None) if steps is not None else None
    if horizon is None:
        raise ValueError(
            "the env has no max_episode_steps: pass CVPOConfig(threshold_horizon=T) for the Q threshold"
        )
    return int(horizon)
