"""Actor-critic policy with one extra value head per constraint cost (for PPO-Lagrangian).

With ``entity_layout`` its actor is one MLP shared by every device (``agents.entities``).
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from edgegen.agents.deployed import add_action_offset
from edgegen.agents.entities import EntityActionHead, EntityMlpExtractor, entity_count

__all__ = ["CostActorCriticPolicy"]


class CostActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` plus ``cost_value_net``: a linear head per cost on the critic latent.

    Args:
        *args: as ``ActorCriticPolicy``.
        n_costs: number of constraint costs (one value head each).
        entity_layout: ``(features, actions)`` per device: the actor's mean is then one MLP (``net_arch``'s
            ``pi`` layers) applied to every device's features plus the global ones, and one linear
            layer shared by the devices maps its latent to the device's actions; the critics stay MLPs of
            the whole observation. ``"env"`` is resolved by the algorithm (the env's declared layout).
            ``None`` (default): SB3's MLP actor.
        entity_context: with ``entity_layout``, the width of a context code (0: none): every device
            is encoded by one shared two-layer MLP and the mean of the codes joins every device's input
            (``agents.entities.EntityMlpExtractor``).
        action_mean_init: the initial mean action (the action head's bias; its weights start near 0,
            so the mean starts there on every state): one value per action, or with ``entity_layout``
            one per device action, shared by the devices. ``None`` (default): 0, as SB3.
        **kwargs: as ``ActorCriticPolicy``.
    """

    action_offset: th.Tensor  # a buffer (agents.deployed.add_action_offset)

    def __init__(
        self,
        *args: Any,
        n_costs: int = 1,
        entity_layout: tuple[int, int] | None = None,
        entity_context: int = 0,
        action_mean_init: list[float] | tuple[float, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        if n_costs < 1:
            raise ValueError(f"n_costs must be >= 1, got {n_costs}")
        if entity_layout == "env":
            raise ValueError(
                'entity_layout="env" is resolved by the algorithm (PPOLagrangian); pass (features, actions)'
            )
        if entity_context and entity_layout is None:
            raise ValueError("policy_kwargs entity_context needs an entity_layout (the devices to pool)")
        self.n_costs, self.entity_context = n_costs, entity_context
        self.entity_layout = None if entity_layout is None else (int(entity_layout[0]), int(entity_layout[1]))
        self.action_mean_init = None if action_mean_init is None else [float(v) for v in action_mean_init]
        super().__init__(*args, **kwargs)
        # a calibrated shift of the deterministic action (keep_best's calibration sets it)
        add_action_offset(self, int(np.prod(self.action_space.shape or (1,))))

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """SB3's action; the deterministic one (the mode) shifted by ``action_offset``."""
        actions = self.get_distribution(observation).get_actions(deterministic=deterministic)
        return actions + self.action_offset if deterministic else actions

    def _build_mlp_extractor(self) -> None:
        # Built here so that the parent's _build includes the heads in the optimizer.
        if self.entity_layout is None:
            super()._build_mlp_extractor()
        else:
            obs_dim = int(self.features_dim)
            act_dim = int(self.action_space.shape[0])  # type: ignore[index]
            self._entities = entity_count(obs_dim, act_dim, self.entity_layout)
            self.mlp_extractor = EntityMlpExtractor(  # type: ignore[assignment]
                obs_dim,
                self._entities,
                self.entity_layout[0],
                self.net_arch,
                self.activation_fn,
                context=self.entity_context,
            )
        self.cost_value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, self.n_costs)
        if self.ortho_init:
            self.cost_value_net.apply(lambda m: self.init_weights(m, gain=1.0))

    def _build(self, lr_schedule: Schedule) -> None:
        super()._build(lr_schedule)
        if self.entity_layout is not None:
            # SB3 built one linear layer from all devices' latents to all actions; share one per device.
            width = self.mlp_extractor.latent_dim_pi // self._entities
            self.action_net = EntityActionHead(self._entities, width, self.entity_layout[1])
            if self.ortho_init:
                self.action_net.apply(lambda m: self.init_weights(m, gain=0.01))
            self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
                self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs
            )
        if self.action_mean_init is not None:
            self._init_action_mean(self.action_mean_init)

    def _init_action_mean(self, values: list[float]) -> None:
        head = self.action_net.linear if isinstance(self.action_net, EntityActionHead) else self.action_net
        bias = cast(nn.Linear, head).bias
        where = "per device action (entity_layout)" if self.entity_layout is not None else "per action"
        if len(values) != bias.numel() or not all(np.isfinite(values)):
            raise ValueError(
                f"policy_kwargs action_mean_init must hold {bias.numel()} finite values ({where}), "
                f"got {values}"
            )
        with th.no_grad():
            bias.copy_(th.as_tensor(values, dtype=bias.dtype))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["n_costs"] = self.n_costs
        data["entity_layout"] = self.entity_layout
        data["entity_context"] = self.entity_context
        data["action_mean_init"] = self.action_mean_init
        return data

    def _critic_latent(self, obs: th.Tensor) -> th.Tensor:
        features = super().extract_features(obs, self.vf_features_extractor)
        return self.mlp_extractor.forward_critic(cast(th.Tensor, features))

    def predict_cost_values(self, obs: th.Tensor) -> th.Tensor:
        """Cost values ``V_c(s)``, shape ``(batch, n_costs)``."""
        return self.cost_value_net(self._critic_latent(obs))

    def evaluate_actions_and_costs(
        self, obs: th.Tensor, actions: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, th.Tensor | None]:
        """One pass for ``(values, cost_values, log_prob, entropy)`` of the given actions."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            pi_features, vf_features = features
            latent_pi = self.mlp_extractor.forward_actor(pi_features)
            latent_vf = self.mlp_extractor.forward_critic(vf_features)
        distribution = self._get_action_dist_from_latent(latent_pi)
        return (
            self.value_net(latent_vf),
            self.cost_value_net(latent_vf),
            distribution.log_prob(actions),
            distribution.entropy(),
        )
