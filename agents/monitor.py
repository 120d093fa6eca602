"""SB3's ``Monitor`` with each episode's cost sums.

``Monitor(info_keywords=("cost",))`` keeps only the last step's cost, so a constrained run would log
one step per episode.

>>> import gymnasium as gym, edgegen
>>> env = cost_monitor(gym.make("edgegen/FedDiffusion-v0"))
>>> env.info_keywords
('episode_cost/deadline_miss_fraction',)
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
from stable_baselines3.common.monitor import Monitor

from edgegen.envs.cmdp import RecordEpisodeCostStatistics, get_cost_spec

__all__ = ["EpisodeCostSums", "cost_monitor"]


class EpisodeCostSums(RecordEpisodeCostStatistics):
    """On an episode's last step, ``info["episode_cost/<name>"]`` holds that cost's sum over the episode.

    The flat keys SB3's ``Monitor(info_keywords=...)`` can read, from the sums that
    ``RecordEpisodeCostStatistics`` keeps in ``info["episode_cost"]``.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.keys = tuple(f"episode_cost/{name}" for name in get_cost_spec(env).names)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step; at the episode's end add the flat per-cost sums to info."""
        obs, reward, terminated, truncated, info = super().step(action)
        if "episode_cost" in info:
            sums = info["episode_cost"]["sum"]
            info = {**info, **{key: float(v) for key, v in zip(self.keys, sums, strict=True)}}
        return obs, reward, terminated, truncated, info


def cost_monitor(env: gym.Env, filename: str | None = None, **monitor_kwargs: Any) -> Monitor:
    """``Monitor`` over :class:`EpisodeCostSums`, with each cost's episode sum logged.

    ``monitor.csv`` and ``info["episode"]`` (hence SB3's ``ep_info_buffer``) carry
    ``episode_cost/<name>`` beside ``r``, ``l`` and ``t``.

    Use as ``make_vec_env(env_id, wrapper_class=cost_monitor)`` or around a single env.
    """
    sums = EpisodeCostSums(env)
    extra = tuple(monitor_kwargs.pop("info_keywords", ()))
    return Monitor(sums, filename, info_keywords=sums.keys + extra, **monitor_kwargs)
