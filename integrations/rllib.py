"""RLlib: the env ids in every worker, and each episode's cost sums in the training results.

RLlib's workers are fresh processes that never ran ``import edgegen``, so a bare
``config.environment("edgegen/MEG-v0")`` fails there with ``NamespaceNotFound``, and RLlib keeps only
rewards, so the costs in ``info`` are dropped. Two lines fix both::

    from ray.rllib.algorithms.ppo import PPOConfig
    from edgegen.integrations.rllib import EpisodeCostCallback, register_envs

    register_envs()  # once in the driver, after ray.init() or before building the algorithm
    config = PPOConfig().environment("edgegen/MEG-v0").callbacks(EpisodeCostCallback)

``register_envs`` puts an env creator for every ``edgegen/...`` id into Ray Tune's registry, which
Ray ships to every worker; the creator imports ``edgegen`` in the worker and passes ``env_config``
on as keyword arguments of ``gym.make``. :class:`EpisodeCostCallback` logs, per finished episode,
``episode_cost/<name>`` (the cost's sum over the episode, raw units) and ``episode_cost_steps`` (the
number of steps summed, which equals the episode's length) under ``result["env_runners"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from ray.rllib.callbacks.callbacks import RLlibCallback
    from ray.tune.registry import register_env
except ImportError as err:  # pragma: no cover - depends on the user's install
    raise ImportError(f"edgegen.integrations.rllib needs RLlib: pip install 'ray[rllib]' ({err})") from err

__all__ = ["EpisodeCostCallback", "make_env", "register_envs"]

_COST_SUMS = "edgegen_cost_sums"
_COST_STEPS = "edgegen_cost_steps"


def edgegen_ids() -> list[str]:
    """Every registered ``edgegen/...`` id."""
    import edgegen  # noqa: F401  (registers the ids)

    return sorted(env_id for env_id in gym.registry if env_id.startswith("edgegen/"))


def make_env(env_id: str, env_config: dict[str, Any] | None = None) -> gym.Env:
    """``gym.make(env_id, **env_config)`` after ``import edgegen``, in whatever process runs it.

    RLlib adds ``num_envs`` to the config when it asks for a vector env; that returns
    ``gym.make_vec(env_id, num_envs, **rest)``.
    """
    import edgegen  # noqa: F401  (registers the ids in this process)

    kwargs = dict(env_config or {})
    num_envs = kwargs.pop("num_envs", None)
    if num_envs is not None:
        return gym.make_vec(env_id, num_envs=int(num_envs), **kwargs)  # type: ignore[return-value]
    return gym.make(env_id, **kwargs)


class _Creator:
    """A picklable env creator for one id (a closure over a loop variable would not pickle by name)."""

    def __init__(self, env_id: str) -> None:
        self.env_id = env_id

    def __call__(self, env_config: dict[str, Any] | None = None) -> gym.Env:
        return make_env(self.env_id, env_config)


def register_envs(env_ids: Iterable[str] | None = None) -> list[str]:
    """Register ``env_ids`` (default: every ``edgegen/...`` id) with Ray Tune; return the ids.

    After this, ``config.environment("edgegen/SFLAM-v0", env_config={"preset": "small"})`` works in
    every RLlib worker.
    """
    ids = list(env_ids) if env_ids is not None else edgegen_ids()
    known = set(edgegen_ids())
    unknown = [env_id for env_id in ids if env_id not in known]
    if unknown:
        raise ValueError(f"env_ids: unknown ids {unknown}; the edgegen ids are {sorted(known)}")
    for env_id in ids:
        register_env(env_id, _Creator(env_id))
    return ids


class EpisodeCostCallback(RLlibCallback):
    """Log each finished episode's cost sums (``episode_cost/<name>``) and summed steps.

    Sums ``info["costs"]`` of every step (the env's raw units, ``cost_spec`` order); names come from
    ``info["cost_names"]`` when present, else from the env's ``cost_spec``. The metrics are averaged
    over the episodes of an iteration, like RLlib's ``episode_return_mean``.
    """

    def on_episode_step(self, *, episode: Any, env: Any = None, env_index: int = 0, **kwargs: Any) -> None:
        """Add the step's costs to the episode's running sums."""
        info = episode.get_infos(-1)
        if not isinstance(info, dict) or "costs" not in info:
            return  # the reset's info: no step yet
        costs = np.asarray(info["costs"], dtype=np.float64)
        data = episode.custom_data
        data[_COST_SUMS] = data.get(_COST_SUMS, np.zeros_like(costs)) + costs
        data[_COST_STEPS] = data.get(_COST_STEPS, 0) + 1

    def on_episode_end(
        self, *, episode: Any, metrics_logger: Any = None, env: Any = None, env_index: int = 0, **kwargs: Any
    ) -> None:
        """Log the finished episode's sums."""
        data = episode.custom_data
        if metrics_logger is None or _COST_SUMS not in data:
            return
        names = _cost_names(env, len(data[_COST_SUMS]))
        for name, total in zip(names, data[_COST_SUMS], strict=True):
            metrics_logger.log_value(f"episode_cost/{name}", float(total), reduce="mean")
        metrics_logger.log_value("episode_cost_steps", float(data[_COST_STEPS]), reduce="mean")


def _cost_names(env: Any, n_costs: int) -> tuple[str, ...]:
    """The cost names of the (possibly vectorised) env RLlib hands the callback."""
    candidates = [env]
    envs = getattr(env, "envs", None)
    if envs:
        candidates.insert(0, envs[0])
    for candidate in candidates:
        spec = getattr(getattr(candidate, "unwrapped", candidate), "cost_spec", None)
        if spec is not None and len(spec.names) == n_costs:
            return tuple(spec.names)
    return tuple(f"cost_{i}" for i in range(n_costs))
