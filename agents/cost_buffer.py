"""SB3 buffers that also store per-constraint costs.

- :class:`CostRolloutBuffer` (on-policy, PPOLagrangian): costs, cost values and their GAE;
- :class:`CostNStepReplayBuffer` (off-policy, CVPO): SB3's n-step replay buffer with n-step cost sums.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, RolloutBuffer

__all__ = [
    "CostNStepReplayBuffer",
    "CostReplayBufferSamples",
    "CostRolloutBuffer",
    "CostRolloutBufferSamples",
    "costs_from_infos",
]


def costs_from_infos(infos: list[dict[str, Any]], n_costs: int, who: str) -> np.ndarray:
    """``(n_envs, n_costs)`` from the per-env ``info["costs"]`` of one vector step; ``who`` needs them."""
    try:
        costs = np.array([info["costs"] for info in infos], dtype=np.float32)
    except KeyError:
        raise ValueError(
            f"{who} needs info['costs'] from every step (see envs.cmdp); this env does not put it"
        ) from None
    if costs.shape != (len(infos), n_costs):
        raise ValueError(f"info['costs'] must have {n_costs} entries per env, got shape {costs.shape[1:]}")
    return costs


class CostRolloutBufferSamples(NamedTuple):
    """A minibatch: SB3's rollout fields plus cost values, advantages and returns ``(batch, n_costs)``."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    old_cost_values: th.Tensor
    cost_advantages: th.Tensor
    cost_returns: th.Tensor


class CostRolloutBuffer(RolloutBuffer):
    """``RolloutBuffer`` with costs: storage ``(n_steps, n_envs, n_costs)``, GAE per cost.

    Args:
        *args: as ``RolloutBuffer``.
        n_costs: number of constraint costs.
        cost_gamma: discount of the costs (default: the reward's ``gamma``).
        cost_gae_lambda: GAE lambda of the costs (default: the reward's ``gae_lambda``).
        seed: seed of the minibatch shuffling (the buffer never touches numpy's global RNG).
        **kwargs: as ``RolloutBuffer``.
    """

    def __init__(
        self,
        *args: Any,
        n_costs: int = 1,
        cost_gamma: float | None = None,
        cost_gae_lambda: float | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.n_costs = n_costs
        super().__init__(*args, **kwargs)
        self.cost_gamma = self.gamma if cost_gamma is None else cost_gamma
        self.cost_gae_lambda = self.gae_lambda if cost_gae_lambda is None else cost_gae_lambda
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        """Clear the buffer."""
        shape = (self.buffer_size, self.n_envs, self.n_costs)
        self.costs = np.zeros(shape, dtype=np.float32)
        self.cost_values = np.zeros(shape, dtype=np.float32)
        self.cost_advantages = np.zeros(shape, dtype=np.float32)
        self.cost_returns = np.zeros(shape, dtype=np.float32)
        super().reset()

    def add_costs(self, costs: np.ndarray, cost_values: th.Tensor) -> None:
        """Store this step's costs ``(n_envs, n_costs)`` and cost values; call just before ``add``."""
        self.costs[self.pos] = costs
        self.cost_values[self.pos] = cost_values.cpu().numpy().reshape(self.n_envs, self.n_costs)

    def compute_cost_returns_and_advantage(self, last_cost_values: th.Tensor, dones: np.ndarray) -> None:
        """GAE(lambda) of every cost, with the same episode boundaries as the reward."""
        last = last_cost_values.cpu().numpy().reshape(self.n_envs, self.n_costs)
        gae = np.zeros((self.n_envs, self.n_costs), dtype=np.float32)
        for step in reversed(range(self.buffer_size)):
            if step == self.buffer_size - 1:
                next_non_terminal = 1.0 - dones.astype(np.float32)
                next_values = last
            else:
                next_non_terminal = 1.0 - self.episode_starts[step + 1]
                next_values = self.cost_values[step + 1]
            mask = next_non_terminal[:, None]
            delta = self.costs[step] + self.cost_gamma * next_values * mask - self.cost_values[step]
            gae = delta + self.cost_gamma * self.cost_gae_lambda * mask * gae
            self.cost_advantages[step] = gae
        self.cost_returns = self.cost_advantages + self.cost_values

    def get(  # type: ignore[override]
        self, batch_size: int | None = None
    ) -> Generator[CostRolloutBufferSamples, None, None]:
        """Shuffled minibatches of all ``n_steps * n_envs`` samples (seeded generator)."""
        if not self.full:
            raise RuntimeError("CostRolloutBuffer.get() needs a full buffer; collect a rollout first")
        total = self.buffer_size * self.n_envs
        indices = self.rng.permutation(total)
        if not self.generator_ready:
            for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))
            for name in ("cost_values", "cost_advantages", "cost_returns"):
                setattr(self, name, self.swap_and_flatten(getattr(self, name)))
            self.generator_ready = True
        batch_size = total if batch_size is None else batch_size
        for start in range(0, total, batch_size):
            yield self._get_samples(indices[start : start + batch_size])

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> CostRolloutBufferSamples:  # type: ignore[override]
        data = (
            self.observations[batch_inds],
            self.actions[batch_inds],
            self.values[batch_inds].flatten(),
            self.log_probs[batch_inds].flatten(),
            self.advantages[batch_inds].flatten(),
            self.returns[batch_inds].flatten(),
            self.cost_values[batch_inds],
            self.cost_advantages[batch_inds],
            self.cost_returns[batch_inds],
        )
        return CostRolloutBufferSamples(*(self.to_torch(x) for x in data))


class CostReplayBufferSamples(NamedTuple):
    """An n-step minibatch: SB3's replay fields plus the n-step discounted cost sums ``(batch, n_costs)``.

    ``rewards`` and ``costs`` are sums over the n steps, ``discounts`` is gamma to the number of
    steps summed, and ``dones`` is 1 where the last of them terminated (no bootstrap).
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    costs: th.Tensor


class CostNStepReplayBuffer(NStepReplayBuffer):
    """SB3's ``NStepReplayBuffer`` that also stores ``info["costs"]`` and sums them like the reward.

    An n-step sum stops at the first step that ends an episode (terminated or truncated) and before
    the write head; it bootstraps from the next observation of its last step unless that step
    terminated (a time-limit truncation bootstraps). Reward and costs share one mask, so they always
    cover the same steps.

    Args:
        *args: as ``NStepReplayBuffer`` (buffer_size is in transitions over all envs, as in SB3).
        n_costs: number of constraint costs.
        **kwargs: as ``NStepReplayBuffer`` (``n_steps``, ``gamma``, ...).
    """

    def __init__(self, *args: Any, n_costs: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n_costs = n_costs
        self.costs = np.zeros((self.buffer_size, self.n_envs, n_costs), dtype=np.float32)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """Store one vector step; the costs come from ``infos``."""
        self.costs[self.pos] = costs_from_infos(infos, self.n_costs, "CostNStepReplayBuffer")
        super().add(obs, next_obs, action, reward, done, infos)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> CostReplayBufferSamples:  # type: ignore[override]
        if env is not None:
            raise ValueError("CostNStepReplayBuffer does not support VecNormalize")
        envs = np.random.randint(0, self.n_envs, size=batch_inds.shape)
        steps = np.arange(self.n_steps)
        rows = (batch_inds[:, None] + steps) % self.buffer_size  # (batch, n)
        cols = envs[:, None]
        ends = np.logical_or(self.dones[rows, cols], self.timeouts[rows, cols])
        # the newest entry is a cut too: the next slot holds an old (overwritten) or no transition
        ends |= rows == (self.pos - 1) % self.buffer_size
        last = np.where(ends.any(axis=1), ends.argmax(axis=1), self.n_steps - 1)  # offset of the last step
        mask = steps <= last[:, None]
        weights = (self.gamma**steps * mask).astype(np.float32)  # (batch, n)
        rewards = (weights * self.rewards[rows, cols]).sum(axis=1, keepdims=True)
        costs = np.einsum("bn,bnc->bc", weights, self.costs[rows, cols])
        end = (batch_inds + last) % self.buffer_size
        terminated = self.dones[end, envs] * (1.0 - self.timeouts[end, envs])
        data = (
            self.observations[batch_inds, envs],
            self.actions[batch_inds, envs],
            self.next_observations[end, envs],
            terminated[:, None],
            rewards,
            (self.gamma ** (last + 1.0))[:, None].astype(np.float32),
            costs,
        )
        return CostReplayBufferSamples(*(self.to_torch(x) for x in data))
