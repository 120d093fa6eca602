"""Cost-aware evaluation: per-episode reward, per-constraint cost and violation rate of any policy."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from edgegen.envs.cmdp import CostSpec, get_cost_spec

__all__ = ["EvaluationResult", "evaluate_oracle_cached", "evaluate_policy_with_cost"]


class Predictor(Protocol):
    """Anything with stable-baselines3's ``predict``: SB3 models, our agents, ``OraclePolicy``."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]: ...  # fmt: skip


@dataclass(frozen=True)
class EvaluationResult:
    """Per-episode statistics of one policy on one env.

    Args:
        rewards: episode returns, shape ``(n,)``.
        lengths: episode lengths, shape ``(n,)``.
        costs: episode sums of every cost, shape ``(n, n_costs)``.
        cost_spec: names, units and per-step limits of the costs.
        metrics: episode sums of scalar info entries (e.g. ``energy_j``), each shape ``(n,)``.
    """

    rewards: np.ndarray
    lengths: np.ndarray
    costs: np.ndarray
    cost_spec: CostSpec
    metrics: dict[str, np.ndarray]

    @property
    def cost_per_step(self) -> np.ndarray:
        """Average cost per step of every episode, ``(n, n_costs)``: compare with the limits."""
        return self.costs / self.lengths[:, None]

    @property
    def violations(self) -> np.ndarray:
        """Per episode: whether any cost's per-step average exceeds its limit."""
        return np.any(self.cost_per_step > self.cost_spec.limits_array * (1 + 1e-9), axis=1)

    @property
    def violation_rate(self) -> float:
        """Fraction of episodes that violate a constraint."""
        return float(np.mean(self.violations))

    def summary(self) -> dict[str, float]:
        """Means over episodes, keyed for tables and JSON."""
        out = {"reward": float(np.mean(self.rewards)), "reward_std": float(np.std(self.rewards))}
        for i, name in enumerate(self.cost_spec.names):
            out[f"cost_per_step/{name}"] = float(np.mean(self.cost_per_step[:, i]))
            out[f"limit/{name}"] = self.cost_spec.limits[i]
        out["violation_rate"] = self.violation_rate
        for key, values in self.metrics.items():
            out[key] = float(np.mean(values))
        return out


def evaluate_policy_with_cost(
    policy: Predictor,
    env: gym.Env,
    n_episodes: int = 10,
    seed: int = 0,
    deterministic: bool = True,
    metric_keys: tuple[str, ...] = ("energy_j",),
    progress_bar: bool = False,
) -> EvaluationResult:
    """Run ``n_episodes`` episodes (seeds ``seed``, ``seed + 1``, ...) and collect reward and costs.

    Args:
        policy: an object with ``predict(obs, deterministic=...)``; an ``OraclePolicy`` must be bound
            to this very ``env``.
        env: a single (non-vector) Gymnasium env with ``cost_spec`` and ``info["costs"]``.
        n_episodes: number of episodes (>= 1).
        seed: seed of the first episode.
        deterministic: passed to ``predict``.
        metric_keys: scalar info entries to sum over each episode when the env reports them.
        progress_bar: show a tqdm bar over the episodes (an oracle's episodes can take minutes).

    Returns:
        An :class:`EvaluationResult`.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    if isinstance(env, gym.vector.VectorEnv) or hasattr(env, "num_envs"):
        raise ValueError("evaluate_policy_with_cost takes a single env, not a vector env")
    spec = get_cost_spec(env)
    rewards, lengths, costs = [], [], []
    metrics: dict[str, list[float]] = {}
    episodes: Any = range(n_episodes)
    if progress_bar:
        from tqdm.auto import tqdm

        label = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
        episodes = tqdm(episodes, desc=f"evaluating on {label}", unit="episode")
    for episode in episodes:
        obs, _ = env.reset(seed=seed + episode)
        total_reward, total_cost, length = 0.0, np.zeros(spec.num_costs), 0
        sums: dict[str, float] = {}
        done = False
        while not done:
            action, _ = policy.predict(obs, deterministic=deterministic)
            obs, reward, terminated, truncated, info = env.step(action)
            total_reward += float(reward)
            total_cost += info["costs"]
            length += 1
            for key in metric_keys:
                if key in info:
                    sums[key] = sums.get(key, 0.0) + float(info[key])
            done = terminated or truncated
        rewards.append(total_reward)
        lengths.append(length)
        costs.append(total_cost)
        for key, value in sums.items():
            metrics.setdefault(key, []).append(value)
    return EvaluationResult(
        rewards=np.array(rewards),
        lengths=np.array(lengths),
        costs=np.array(costs),
        cost_spec=spec,
        metrics={k: np.array(v) for k, v in metrics.items()},
    )


# ---------------------------------------------------------------------------------------------------
# The oracle's evaluation, computed once per env config and episode block (it takes minutes on
# SFLAM-v0) and read back afterwards.
# ---------------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$EDGEGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/edgegen``, else ``~/.cache/edgegen``."""
    explicit = os.environ.get("EDGEGEN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgegen"


def oracle_cache_key(env: gym.Env, n_episodes: int, seed: int, metric_keys: tuple[str, ...]) -> str:
    """Key of an oracle evaluation: env id, its whole config, the episodes, the metrics, the version.

    The config's repr covers every field (presets and overrides alike); the version covers the
    oracle's code and the shipped assets.
    """
    import edgegen

    unwrapped = env.unwrapped
    blob = json.dumps(
        [
            getattr(unwrapped.spec, "id", type(unwrapped).__name__),
            repr(getattr(unwrapped, "config", None)),
            repr(get_cost_spec(env)),
            n_episodes,
            seed,
            list(metric_keys),
            edgegen.__version__,
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def evaluate_oracle_cached(
    oracle: Predictor,
    env: gym.Env,
    n_episodes: int,
    seed: int,
    metric_keys: tuple[str, ...] = ("energy_j",),
    progress_bar: bool = False,
    cache: Path | None = None,
) -> EvaluationResult:
    """:func:`evaluate_policy_with_cost` of the env's oracle, read from the cache when it is there.

    A missing or unreadable cache file means evaluating (and writing it, atomically); the oracle is
    deterministic given the env config and the episode seeds, which the key holds.
    """
    folder = cache_dir() / "oracle_evaluations" if cache is None else cache
    path = folder / f"{oracle_cache_key(env, n_episodes, seed, metric_keys)}.json"
    spec = get_cost_spec(env)
    try:
        data = json.loads(path.read_text())
        return EvaluationResult(
            rewards=np.asarray(data["rewards"], dtype=np.float64),
            lengths=np.asarray(data["lengths"]),
            costs=np.asarray(data["costs"], dtype=np.float64).reshape(n_episodes, spec.num_costs),
            cost_spec=spec,
            metrics={k: np.asarray(v, dtype=np.float64) for k, v in data["metrics"].items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not cached yet, or a damaged file: evaluate again
    result = evaluate_policy_with_cost(
        oracle, env, n_episodes, seed=seed, metric_keys=metric_keys, progress_bar=progress_bar
    )
    record = {
        "rewards": result.rewards.tolist(),
        "lengths": result.lengths.tolist(),
        "costs": result.costs.tolist(),
        "metrics": {k: v.tolist() for k, v in result.metrics.items()},
    }
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next run the evaluation
    return result
