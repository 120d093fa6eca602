"""Per-entity ("per-device") networks: one MLP shared by every device, for CVPO and PPO alike.

The envs with devices declare ``entity_layout = (features, actions)`` per device: the observation
holds each device's ``features`` values, device after device, then global values; the action holds
``actions`` values per device, device after device (``tests/test_env_contract.py`` checks it). A
network that applies one MLP to every device's features (plus the global ones) learns one rule for
all devices instead of a separate one per action entry, and does not care which device sits in which
slot. ``entity_layout="env"`` in ``policy_kwargs`` takes the env's declared layout.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

__all__ = [
    "EntityActionHead",
    "EntityMlpExtractor",
    "entity_count",
    "entity_inputs",
    "env_entity_layout",
    "resolve_entity_layout",
]


def entity_inputs(obs: th.Tensor, entities: int, entity_obs: int) -> th.Tensor:
    """``(..., entities, entity_obs + global)``: each entity's features followed by the global ones."""
    lead, split = obs.shape[:-1], entities * entity_obs
    per_entity = obs[..., :split].reshape(*lead, entities, entity_obs)
    shared = obs[..., split:].unsqueeze(-2).expand(*lead, entities, obs.shape[-1] - split)
    return th.cat([per_entity, shared], dim=-1)


def entity_count(obs_dim: int, act_dim: int, entity_layout: tuple[int, int]) -> int:
    """How many entities ``entity_layout`` makes of these spaces; ValueError if they do not fit."""
    entity_obs, entity_act = entity_layout
    entities = act_dim // entity_act if entity_act > 0 else 0
    if entity_act < 1 or act_dim % entity_act or entities < 1 or obs_dim < entities * entity_obs:
        raise ValueError(
            f"policy_kwargs entity_layout={tuple(entity_layout)} does not fit observations of {obs_dim} "
            f"and actions of {act_dim} values: the actions must be whole entities of {entity_act}, and "
            f"the observation at least {entity_obs} features per entity"
        )
    return entities


def env_entity_layout(env: gym.Env | VecEnv, algo: str) -> tuple[int, int]:
    """The entity layout ``env`` (or a VecEnv's first sub-env) declares, for ``entity_layout="env"``."""
    try:
        layout = env.get_attr("entity_layout")[0] if isinstance(env, VecEnv) else env.unwrapped.entity_layout  # type: ignore[attr-defined]
    except AttributeError:
        layout = None
    if layout is None:
        raise ValueError(
            f'{algo} policy_kwargs entity_layout="env": the env declares no entity_layout; give (features, '
            "actions) per entity or None"
        )
    return (int(layout[0]), int(layout[1]))


class EntityMlpExtractor(nn.Module):
    """SB3 ``mlp_extractor`` whose actor latent is one MLP per entity (shared weights), flattened.

    ``forward_actor`` returns ``(batch, entities * pi[-1])``; pair it with :class:`EntityActionHead`.
    The critic is a plain MLP on the whole observation (a value is a property of the whole state).

    With ``context > 0`` each entity also sees the round it is in: one more shared MLP (two layers of
    ``context`` units) encodes every entity into ``context`` values, and their mean over the entities
    joins each entity's input (a Deep Set: the actor stays equivariant to the order of the devices).
    Without it a device cannot tell whether it is the slowest of its round, which decides SFLAM-v0's
    round latency.
    """

    def __init__(
        self,
        feature_dim: int,
        entities: int,
        entity_obs: int,
        net_arch: Sequence[int] | Mapping[str, Sequence[int]],
        activation_fn: type[nn.Module],
        context: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(context, bool) or not (isinstance(context, int) and context >= 0):
            raise ValueError(
                f"policy_kwargs entity_context must be an int >= 0 (0: no context), got {context!r}"
            )
        pi_arch, vf_arch = (
            (list(net_arch.get("pi", [64, 64])), list(net_arch.get("vf", [64, 64])))
            if isinstance(net_arch, Mapping)
            else (list(net_arch), list(net_arch))
        )
        if not pi_arch:
            raise ValueError("an entity policy needs at least one hidden layer in net_arch's pi")
        self.entities, self.entity_obs = entities, entity_obs
        global_obs = feature_dim - entities * entity_obs
        self.context = context
        encoder = create_mlp(entity_obs + global_obs, context, [context], activation_fn) if context else []
        self.context_net = nn.Sequential(*encoder, activation_fn()) if context else None
        # SB3's own MLP builder (hidden layers only: output_dim -1), as its MlpExtractor builds them
        self.policy_net = nn.Sequential(
            *create_mlp(entity_obs + global_obs + context, -1, pi_arch, activation_fn)
        )
        self.value_net = nn.Sequential(*create_mlp(feature_dim, -1, vf_arch, activation_fn))
        self.latent_dim_pi = entities * pi_arch[-1]
        self.latent_dim_vf = vf_arch[-1] if vf_arch else feature_dim

    def forward(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(actor latent, critic latent)``."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: th.Tensor) -> th.Tensor:
        """``(batch, entities * width)``: every entity's latent, entity after entity."""
        inputs = entity_inputs(features, self.entities, self.entity_obs)
        if self.context_net is not None:
            pooled = self.context_net(inputs).mean(dim=-2, keepdim=True).expand(*inputs.shape[:-1], -1)
            inputs = th.cat([inputs, pooled], dim=-1)
        return self.policy_net(inputs).flatten(start_dim=-2)

    def forward_critic(self, features: th.Tensor) -> th.Tensor:
        """The critic latent of the whole observation."""
        return self.value_net(features)


class EntityActionHead(nn.Module):
    """One linear layer mapping each entity's latent to its action values (weights shared)."""

    def __init__(self, entities: int, width: int, entity_act: int) -> None:
        super().__init__()
        self.entities, self.width = entities, width
        self.linear = nn.Linear(width, entity_act)

    def forward(self, latent: th.Tensor) -> th.Tensor:
        """``(batch, entities * width)`` -> ``(batch, entities * entity_act)``."""
        lead = latent.shape[:-1]
        return self.linear(latent.reshape(*lead, self.entities, self.width)).reshape(*lead, -1)


def resolve_entity_layout(policy_kwargs: dict[str, Any], env: gym.Env | VecEnv | None, algo: str) -> None:
    """Replace ``entity_layout="env"`` in ``policy_kwargs`` by the env's declared layout, in place."""
    if policy_kwargs.get("entity_layout") == "env" and env is not None:
        policy_kwargs["entity_layout"] = env_entity_layout(env, algo)
