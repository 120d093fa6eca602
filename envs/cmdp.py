"""The cost contract of every edgegen env, and adapters for constrained-RL codebases.

Each env declares ``env.unwrapped.cost_spec``: names, units and per-step average limits. Every
``step`` puts ``info["costs"]`` (float64, raw units, in ``cost_spec`` order) and ``info["cost"]``
(the scalar ``max_i costs[i] / limits[i]``, so a one-constraint agent uses a per-step budget of 1).
``reset`` puts zero costs.

Vector envs: with Gymnasium's default NEXT_STEP autoreset, ``info["costs"]`` of a vector step is that
step's costs for every sub-env (the reset step after an episode's end has zero costs). With SAME_STEP
autoreset, a sub-env whose episode ended in the step has already reset: its row of
``info["costs"]`` holds the reset's zeros, and the step's real costs are in
``info["final_info"]["costs"]`` (where ``info["_final_info"]`` is True). A loop that reads
``info["costs"]`` alone undercounts one step per episode there; ``vector_step_costs(info)`` reads
the right row in both modes.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ClipCosts",
    "CostSpec",
    "NormalizeCosts",
    "RecordEpisodeCostStatistics",
    "SafetyGymnasiumAdapter",
    "SingleCostWrapper",
    "get_cost_spec",
    "vector_step_costs",
    "zero_cost_info",
]


@dataclass(frozen=True)
class CostSpec:
    """Names, units and per-step average limits of an env's constraint costs.

    Args:
        names: one name per cost, e.g. ``("latency_s", "energy_j")``.
        units: SI unit of each cost, e.g. ``("s", "J")``.
        limits: per-step average limit of each cost (> 0), in its unit.
    """

    names: tuple[str, ...]
    units: tuple[str, ...]
    limits: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "limits", tuple(float(x) for x in self.limits))
        if not self.names:
            raise ValueError("CostSpec.names must name at least one cost")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"CostSpec.names must be unique, got {self.names}")
        if not len(self.names) == len(self.units) == len(self.limits):
            raise ValueError(
                "CostSpec.names, units and limits must have the same length, got "
                f"{len(self.names)}, {len(self.units)} and {len(self.limits)}"
            )
        for name, limit in zip(self.names, self.limits, strict=True):
            if not np.isfinite(limit) or limit <= 0:
                raise ValueError(f"CostSpec limit of {name!r} must be finite and > 0, got {limit}")

    @property
    def num_costs(self) -> int:
        """Number of constraints."""
        return len(self.names)

    @property
    def limits_array(self) -> np.ndarray:
        """Limits as a float64 array."""
        return np.asarray(self.limits, dtype=np.float64)

    def index(self, name: str) -> int:
        """Position of the cost called ``name``."""
        if name not in self.names:
            raise ValueError(f"unknown cost {name!r}; this env's costs are {list(self.names)}")
        return self.names.index(name)

    def with_limits(self, limits: ArrayLike | dict[str, float]) -> CostSpec:
        """A copy with new limits, given in order or as ``{name: limit}`` (others unchanged)."""
        if isinstance(limits, dict):
            new = list(self.limits)
            for name, value in limits.items():
                new[self.index(name)] = float(value)
            return CostSpec(self.names, self.units, tuple(new))
        values = np.asarray(limits, dtype=np.float64).reshape(-1)
        if values.size != self.num_costs:
            raise ValueError(f"expected {self.num_costs} limits for {self.names}, got {values.size}")
        return CostSpec(self.names, self.units, tuple(values.tolist()))


def zero_cost_info(spec: CostSpec) -> dict[str, Any]:
    """The cost entries that ``reset`` returns: zero costs, so vector envs stay aligned."""
    return {"costs": np.zeros(spec.num_costs, dtype=np.float64), "cost": np.float64(0.0)}


def vector_step_costs(info: dict[str, Any]) -> np.ndarray:
    """The costs of one Gymnasium vector step, ``(num_envs, num_costs)``, in either autoreset mode.

    Under SAME_STEP autoreset the rows of sub-envs that finished an episode in this step come from
    ``info["final_info"]`` (their ``info["costs"]`` rows are the reset's zeros); otherwise
    ``info["costs"]`` as it is.
    """
    costs = np.array(info["costs"], dtype=np.float64)
    final, mask = info.get("final_info"), info.get("_final_info")
    if final is not None and mask is not None and "costs" in final:
        mask = np.asarray(mask, dtype=bool)
        costs[mask] = np.asarray(final["costs"], dtype=np.float64)[mask]
    return costs


def get_cost_spec(env: Any) -> CostSpec:
    """Find the ``cost_spec`` of a Gymnasium env (through wrappers) or of a vector env."""
    for getter in (
        lambda e: e.get_wrapper_attr("cost_spec"),  # gymnasium.Env and wrappers
        lambda e: e.get_attr("cost_spec")[0],  # SB3 VecEnv and gymnasium.vector.VectorEnv
        lambda e: e.unwrapped.cost_spec,
    ):
        try:
            spec = getter(env)
        except (AttributeError, IndexError, TypeError):
            continue
        if isinstance(spec, CostSpec):
            return spec
    raise ValueError(
        f"{type(env).__name__} declares no cost_spec: edgegen agents need an env whose "
        "unwrapped env has a `cost_spec` (see envs.cmdp.CostSpec) and puts `costs` in info"
    )


class _CostInfoWrapper(gym.Wrapper):
    """A wrapper that rewrites the cost entries of every reset's and step's info (``_rewrite``)."""

    def _rewrite(self, info: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # each cost wrapper says how it rewrites

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env and rewrite its costs."""
        obs, info = self.env.reset(**kwargs)
        return obs, self._rewrite(info)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env and rewrite its costs."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._rewrite(info)


class SingleCostWrapper(_CostInfoWrapper):
    """Reduce a multi-cost env to one constraint, for agents that handle a single cost.

    With ``cost=None`` the single cost is the normalised ``info["cost"] = max_i c_i / limit_i`` with
    limit 1 (meeting it meets every constraint); with a name it is that raw cost and its own limit.
    ``info["costs"]`` is replaced by the one-entry array and ``cost_spec`` describes it.
    ``info["cost"]`` is the kept cost over its limit (budget 1 per step) by default; with
    ``normalize=False`` it is the raw cost in its own unit, for single-constraint libraries whose budget
    is a sum of raw costs per episode (e.g. ``limit x horizon`` seconds).

    Args:
        env: an edgegen env (or any env with ``cost_spec`` and ``info["costs"]``).
        cost: name of the cost to keep, or ``None`` for the normalised maximum.
        normalize: divide ``info["cost"]`` by the kept cost's limit (default) or leave it raw.
    """

    def __init__(self, env: gym.Env, cost: str | None = None, normalize: bool = True) -> None:
        super().__init__(env)
        self._normalize = bool(normalize)
        inner = get_cost_spec(env)
        if cost is None:
            self._index = None
            self.cost_spec = CostSpec(("max_cost_ratio",), ("1",), (1.0,))
        else:
            self._index = inner.index(cost)
            self.cost_spec = CostSpec((cost,), (inner.units[self._index],), (inner.limits[self._index],))

    def _rewrite(self, info: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        info["costs_all"] = info["costs"]
        value = np.float64(info["cost"] if self._index is None else info["costs"][self._index])
        info["costs"] = np.array([value], dtype=np.float64)
        info["cost"] = value / self.cost_spec.limits[0] if self._normalize else value
        return info


class NormalizeCosts(_CostInfoWrapper):
    """Costs in units of their limits, for any agent: ``info["costs"] / limits`` and limits of 1.

    Costs of very different scales (MEG-v0: seconds and hundreds of joules) then weigh alike in a
    learner's cost critics and multipliers. ``cost_spec`` keeps the names, with unit ``"1"`` (a
    fraction of the limit) and limit 1; ``info["costs_raw"]`` keeps the raw costs and
    ``info["cost"]`` (already ``max_i c_i / l_i``) is unchanged. Evaluate a policy on the plain env:
    the protocol scores raw costs.

    Args:
        env: an edgegen env (or any env with ``cost_spec`` and ``info["costs"]``).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        inner = get_cost_spec(env)
        self._limits = inner.limits_array
        self.cost_spec = CostSpec(inner.names, ("1",) * inner.num_costs, (1.0,) * inner.num_costs)

    def _rewrite(self, info: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        info["costs_raw"] = info["costs"]
        info["costs"] = np.asarray(info["costs"], dtype=np.float64) / self._limits
        return info


class ClipCosts(_CostInfoWrapper):
    """Each cost capped at ``max_multiple`` times its limit, for training any agent.

    A learner's cost critic fits every transition in its replay, and a first policy's costs can lie
    two orders of magnitude above the limit (SFLAM-v0: rounds of 40-100 s against 2.5 s); those
    samples then dominate a squared loss while the policy works near the limit. A cap of a few
    limits leaves every cost near the limit as it is and bounds the rest. The capped average is
    below the true one only when some steps pass the cap, so evaluate on the plain env: the protocol
    scores raw costs. ``info["costs_raw"]`` keeps the raw costs; ``info["cost"]`` (``max_i c_i / l_i``)
    is capped at ``max_multiple`` alike, so agents that read it see the same cap; ``cost_spec`` is
    unchanged.

    Args:
        env: an edgegen env (or any env with ``cost_spec`` and ``info["costs"]``).
        max_multiple: the cap in units of each cost's limit, > 1.
    """

    def __init__(self, env: gym.Env, max_multiple: float = 4.0) -> None:
        super().__init__(env)
        if not max_multiple > 1:
            raise ValueError(f"max_multiple must be > 1 (a cap above the limit), got {max_multiple}")
        self.cost_spec = get_cost_spec(env)
        self._max_multiple = float(max_multiple)
        self._caps = self._max_multiple * self.cost_spec.limits_array

    def _rewrite(self, info: dict[str, Any]) -> dict[str, Any]:
        info = dict(info)
        info["costs_raw"] = info["costs"]
        info["costs"] = np.minimum(np.asarray(info["costs"], dtype=np.float64), self._caps)
        if "cost" in info:  # max_i min(c_i / l_i, m) = min(max_i c_i / l_i, m)
            info["cost"] = min(float(info["cost"]), self._max_multiple)
        return info


class SafetyGymnasiumAdapter(gym.Wrapper):
    """Safety-Gymnasium step API: ``step`` returns ``(obs, reward, cost, terminated, truncated, info)``.

    ``cost`` is ``info["cost"]`` (the normalised maximum, budget 1 per step) by default, or the raw
    value of the named cost. Loops written for Safety-Gymnasium / OmniSafe consume it directly.

    Args:
        env: an edgegen env.
        cost: name of a raw cost to return, or ``None`` for the normalised maximum.
    """

    def __init__(self, env: gym.Env, cost: str | None = None) -> None:
        super().__init__(env)
        spec = get_cost_spec(env)
        self._index = None if cost is None else spec.index(cost)

    def step(self, action: Any) -> tuple[Any, float, float, bool, bool, dict[str, Any]]:  # type: ignore[override]
        """Step the inner env and lift the cost out of info."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        cost = info["cost"] if self._index is None else info["costs"][self._index]
        return obs, float(reward), float(cost), terminated, truncated, info


class RecordEpisodeCostStatistics(gym.Wrapper):
    """Episode sums of every cost, as ``RecordEpisodeStatistics`` does for the reward.

    At the end of an episode ``info["episode_cost"]`` holds ``{"sum": per-cost sums (float64),
    "mean": per-cost averages per step, "violation": whether any average exceeds its limit}``;
    ``cost_queue`` keeps the last ``buffer_length`` per-cost sums.

    Args:
        env: an env with ``cost_spec`` and ``info["costs"]``.
        buffer_length: how many finished episodes ``cost_queue`` keeps.
    """

    def __init__(self, env: gym.Env, buffer_length: int = 100) -> None:
        super().__init__(env)
        if buffer_length < 1:
            raise ValueError(f"buffer_length must be >= 1, got {buffer_length}")
        self._limits = get_cost_spec(env).limits_array
        self._sums = np.zeros_like(self._limits)
        self._length = 0
        self._start = time.perf_counter()
        self.cost_queue: deque[np.ndarray] = deque(maxlen=buffer_length)

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset the inner env and the running sums."""
        obs, info = self.env.reset(**kwargs)
        self._sums = np.zeros_like(self._limits)
        self._length = 0
        self._start = time.perf_counter()
        return obs, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the inner env and add this step's costs to the episode sums."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._sums = self._sums + np.asarray(info["costs"], dtype=np.float64)
        self._length += 1
        if terminated or truncated:
            mean = self._sums / self._length
            info = dict(info)
            info["episode_cost"] = {
                "sum": self._sums.copy(),
                "mean": mean,
                "violation": bool(np.any(mean > self._limits)),
                "l": self._length,
                "t": round(time.perf_counter() - self._start, 6),
            }
            self.cost_queue.append(self._sums.copy())
        return obs, reward, terminated, truncated, info
