"""A stable-baselines3 ``VecEnv`` over a Gymnasium vector env (e.g. the edgegen batched envs).

``SB3VecEnv(gym.make_vec("edgegen/FedDiffusion-v0", num_envs=64,
vectorization_mode="vector_entry_point", autoreset_mode="SameStep"))`` trains ``PPOLagrangian`` on the
batched env: each step's infos carry ``costs`` / ``cost`` per sub-env (what the cost buffer reads),
``terminal_observation`` and ``TimeLimit.truncated`` at episode ends, and ``episode`` statistics
(reward sum and length), as SB3's ``Monitor`` would add.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvObs, VecEnvStepReturn

__all__ = ["SB3VecEnv"]


class SB3VecEnv(VecEnv):
    """Present a Gymnasium ``VectorEnv`` in SAME_STEP autoreset mode as an SB3 ``VecEnv``.

    Args:
        env: the vector env; its ``autoreset_mode`` must be SAME_STEP (SB3 resets on the done step).
    """

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise ValueError(
                f"SB3VecEnv needs a vector env with autoreset_mode=SAME_STEP, got {mode}; pass "
                "autoreset_mode='SameStep' to gym.make_vec"
            )
        self.env = env  # before VecEnv.__init__, which reads render_mode through get_attr
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
        self.cost_spec = getattr(env, "cost_spec", None)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._seed: int | None = None

    def reset(self) -> VecEnvObs:
        """Reset every sub-env (seeded once by ``seed()``, as SB3 does)."""
        obs, _ = self.env.reset(seed=self._seed)
        self._seed = None
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return obs

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: sub-env i gets ``seed + i``."""
        self._seed = seed
        return [None if seed is None else seed + i for i in range(self.num_envs)]

    def step_async(self, actions: np.ndarray) -> None:
        """Store the actions for :meth:`step_wait`."""
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        """Step every sub-env; SB3's info list with costs, terminal observations and episode stats."""
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        dones = terminated | truncated
        self._returns += rewards
        self._lengths += 1
        final = info.get("final_info", {})
        infos: list[dict[str, Any]] = []
        for i in range(self.num_envs):
            source = final if dones[i] else info
            item = {"costs": source["costs"][i], "cost": source["cost"][i]}
            if dones[i]:
                item["terminal_observation"] = info["final_obs"][i]
                item["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                item["episode"] = {"r": float(self._returns[i]), "l": int(self._lengths[i])}
                self._returns[i], self._lengths[i] = 0.0, 0
            infos.append(item)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        """Close the vector env."""
        self.env.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        """The vector env's attribute, once per requested sub-env (``cost_spec`` and the like)."""
        value = getattr(self.env, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        """Set an attribute of the vector env (shared by its sub-envs)."""
        setattr(self.env, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any
    ) -> list:
        """Call a method of the vector env; a batched result (e.g. ``oracle_action``) is split by sub-env."""
        result = getattr(self.env, method_name)(*method_args, **method_kwargs)
        rows = list(self._indices(indices))
        if isinstance(result, np.ndarray | list) and len(result) == self.num_envs:
            return [result[i] for i in rows]
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        """The sub-envs are not Gymnasium-wrapped."""
        return [False for _ in self._indices(indices)]

    def _indices(self, indices: Any) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices
