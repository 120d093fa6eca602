"""A small CMDP whose constrained optimum is known in closed form (a test fixture).

Each step the agent picks ``u = (a + 1) / 2`` in [0, 1]^2; reward ``u_0 + u_1``, cost ``u_0`` with a
per-step limit ``limit``. The best feasible stationary policy plays ``u* = (limit, 1)``, with reward
``limit + 1`` per step: the constraint binds on one coordinate and not on the other. Episodes last
``horizon`` steps (truncation).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from edgegen.envs.cmdp import CostSpec


class ToyCMDP(gym.Env):
    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(self, limit: float = 0.3, horizon: int = 10) -> None:
        self.cost_spec = CostSpec(("u0",), ("1",), (limit,))
        self.horizon = horizon
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self._t / self.horizon], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {"costs": np.zeros(1), "cost": 0.0}

    def step(self, action):
        u = np.clip((np.asarray(action, dtype=np.float64).reshape(2) + 1.0) / 2.0, 0.0, 1.0)
        self._t += 1
        info = {"costs": u[:1].copy(), "cost": u[0] / self.cost_spec.limits[0]}
        return self._obs(), float(u.sum()), False, self._t >= self.horizon, info


def deterministic_cost_per_step(model, episodes: int, limit: float = 0.3) -> float:
    """The toy's cost per step (``u0``) of ``model``'s deterministic policy over ``episodes`` episodes.

    Played by hand, to check what an agent's cost feedback measured (the toy's episodes do not
    depend on the seed). ``limit`` only sets the env; the cost does not depend on it.
    """
    env, costs = ToyCMDP(limit=limit), []
    for _ in range(episodes):
        obs, _ = env.reset()
        total, done = 0.0, False
        while not done:
            obs, _, terminated, truncated, info = env.step(model.predict(obs, deterministic=True)[0])
            total += info["costs"][0]
            done = terminated or truncated
        costs.append(total / env.horizon)
    return float(np.mean(costs))
