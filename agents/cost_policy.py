"""Actor-critic policy with one extra value head per constraint cost (for PPO-Lagrangian)."""

from __future__ import annotations

from typing import Any, cast

import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn

__all__ = ["CostActorCriticPolicy"]


class CostActorCriticPolicy(ActorCriticPolicy):
    """SB3's ``ActorCriticPolicy`` plus ``cost_value_net``: a linear head per cost on the critic latent.

    Args:
        *args: as ``ActorCriticPolicy``.
        n_costs: number of constraint costs (one value head each).
        **kwargs: as ``ActorCriticPolicy``.
    """

    def __init__(self, *args: Any, n_costs: int = 1, **kwargs: Any) -> None:
        if n_costs < 1:
            raise ValueError(f"n_costs must be >= 1, got {n_costs}")
        self.n_costs = n_costs
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        # Built here so that the parent's _build includes the heads in the optimizer.
        super()._build_mlp_extractor()
        self.cost_value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, self.n_costs)
        if self.ortho_init:
            self.cost_value_net.apply(lambda m: self.init_weights(m, gain=1.0))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["n_costs"] = self.n_costs
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
