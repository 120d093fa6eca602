"""OmniSafe's ``CMDP`` interface over an edgegen env (torch tensors in and out, one scalar cost).

OmniSafe 0.5.0 cannot be imported beside gymnasium 1.x today (docs/integrations.md says why), so the
adapter is written against the interface of ``omnisafe.envs.core.CMDP`` and tested without it:
:class:`EdgeGenCMDP` implements every method OmniSafe calls. Where OmniSafe imports,
``OmniSafeEdgeGenCMDP`` is the same class registered with ``omnisafe.envs.env_register``, so
``omnisafe.Agent("PPOLag", "edgegen/MEG-v0", custom_cfgs=...)`` finds the ids.

OmniSafe's algorithms take one cost with one limit. ``cost="cost"`` (the default) passes
``info["cost"] = max_i costs[i] / limits[i]``, whose limit is 1 (``cost_limit``); its average is at
least the largest of the normalised average costs, so meeting it meets every constraint (it can be
stricter than the CMDP). ``cost="<name>"`` passes one named cost in its own units, with the env's limit.

>>> import torch
>>> env = EdgeGenCMDP("edgegen/MEG-v0", cost="latency_s")
>>> obs, info = env.reset(seed=0)
>>> obs.dtype, env.cost_limit
(torch.float32, 3.8)
>>> _, reward, cost, terminated, truncated, _ = env.step(torch.zeros(2))
>>> cost.dtype, bool(terminated), bool(truncated)
(torch.float32, False, False)
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from edgegen.envs.extras import require_extra

require_extra("agents", "torch")
import torch  # noqa: E402  (after the check that names the extra)

import edgegen  # noqa: E402  (registers the ids)

__all__ = ["EdgeGenCMDP"]

_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("edgegen/"))
assert edgegen


class EdgeGenCMDP:
    """An edgegen env behind OmniSafe's ``CMDP`` methods.

    Args:
        env_id: an ``edgegen/...`` id.
        cost: ``"cost"`` (the normalised scalar, limit 1) or one of the env's cost names.
        device: where the returned tensors live.
        **env_kwargs: passed to ``gym.make`` (``preset=...``, config fields).

    Episodes end by the env's own horizon (``truncated``), so OmniSafe's time-limit wrapper is not
    needed; its auto-reset wrapper is (the env does not reset itself).
    """

    _support_envs: ClassVar[list[str]] = _IDS
    need_auto_reset_wrapper = True
    need_time_limit_wrapper = False
    _num_envs = 1

    def __init__(
        self, env_id: str, cost: str = "cost", device: str | torch.device = "cpu", **env_kwargs: Any
    ):
        if env_id not in self._support_envs:
            raise ValueError(f"env_id: {env_id!r} is not an edgegen id; supported: {self._support_envs}")
        self._env = gym.make(env_id, **env_kwargs)
        spec = self._env.unwrapped.cost_spec  # type: ignore[attr-defined]
        if cost != "cost" and cost not in spec.names:
            raise ValueError(f"cost must be 'cost' or one of {list(spec.names)}, got {cost!r}")
        self._cost_index = None if cost == "cost" else spec.names.index(cost)
        self.cost_limit = 1.0 if cost == "cost" else float(spec.limits[self._cost_index])
        self._device = torch.device(device)
        self._seed: int | None = None
        self._action_space = self._env.action_space
        self._observation_space = self._env.observation_space
        self._metadata = dict(self._env.metadata)
        self.env_spec_log: dict[str, Any] = {}

    @classmethod
    def support_envs(cls) -> list[str]:
        """The ids this adapter serves."""
        return list(cls._support_envs)

    @property
    def action_space(self) -> gym.Space:
        """The env's action space."""
        return self._action_space

    @property
    def observation_space(self) -> gym.Space:
        """The env's observation space."""
        return self._observation_space

    @property
    def metadata(self) -> dict[str, Any]:
        """The env's metadata."""
        return self._metadata

    @property
    def num_envs(self) -> int:
        """One env (OmniSafe vectorises by itself)."""
        return self._num_envs

    @property
    def max_episode_steps(self) -> int:
        """The env's horizon."""
        return int(self._env.unwrapped.horizon)  # type: ignore[attr-defined]

    @property
    def time_limit(self) -> int:
        """The env's horizon (OmniSafe's name)."""
        return self.max_episode_steps

    def _tensor(self, value: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, dtype=np.float32), device=self._device)

    def step(
        self, action: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """One step: ``(obs, reward, cost, terminated, truncated, info)`` as tensors (info as the env's)."""
        act = action.detach().cpu().numpy().astype(self._action_space.dtype)
        obs, reward, terminated, truncated, info = self._env.step(act)
        cost = info["cost"] if self._cost_index is None else info["costs"][self._cost_index]
        return (
            self._tensor(obs),
            self._tensor(reward),
            self._tensor(cost),
            self._tensor(terminated),
            self._tensor(truncated),
            info,
        )

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reset (with ``seed``, else the one :meth:`set_seed` left, else continuing the stream)."""
        if seed is None:
            seed, self._seed = self._seed, None
        obs, info = self._env.reset(seed=seed, options=options)
        return self._tensor(obs), info

    def set_seed(self, seed: int) -> None:
        """Seed the next reset."""
        self._seed = int(seed)

    def spec_log(self, logger: Any) -> None:
        """Nothing env-specific to log (OmniSafe logs the episode cost itself)."""

    def render(self) -> Any:
        """The env's render."""
        return self._env.render()

    def close(self) -> None:
        """Close the env."""
        self._env.close()


def _register_with_omnisafe() -> type | None:
    """``EdgeGenCMDP`` as an OmniSafe ``CMDP`` subclass, registered, where OmniSafe imports."""
    try:
        from omnisafe.envs.core import CMDP, env_register
    except Exception:  # not installed, or its safety-gymnasium import fails (gymnasium 1.x)
        return None
    return env_register(type("OmniSafeEdgeGenCMDP", (EdgeGenCMDP, CMDP), {}))


OmniSafeEdgeGenCMDP = _register_with_omnisafe()
