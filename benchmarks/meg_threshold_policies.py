"""MEG-v0: how far one SNR threshold gets, and why an agent's score is a matter of a few joules.

The default preset's best fixed action is (N, rho) = (5, 0) and its CMDP oracle mixes N = 5 and
N = 6 (rho 0, a little merging at the lowest SNRs). This script evaluates, on the same seeded
episodes, the oracle, the best fixed action and the deterministic one-threshold rules "N = 6 where the
frame's SNR is below x dB, else N = 5" (rho = 0) for a grid of x, and prints each rule's costs and
normalised score (random 0, oracle 1, from the episodes' summed rewards). It shows that a
deterministic policy can reach the oracle's score, and how steeply the score rises with the energy the
policy spends, which is what decides the agents' MEG-v0 scores (docs/experiments.md, eighth session).

    python benchmarks/meg_threshold_policies.py [--episodes 20] [--first-seed 10000]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)

Policy = Callable[[np.ndarray, gym.Env], np.ndarray]


def evaluate(policy: Policy, episodes: int, first_seed: int) -> tuple[float, np.ndarray, float]:
    """Mean summed reward, mean cost per step (latency_s, energy_j) and the fraction of N = 6 frames."""
    env = gym.make("edgegen/MEG-v0")
    rewards, costs, six = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=first_seed + episode)
        total, cost, done = 0.0, np.zeros(2), False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs, env))
            total += float(reward)
            cost += info["costs"]
            six.append(info["steps"] == 6)
            done = terminated or truncated
        rewards.append(total)
        costs.append(cost / env.unwrapped.config.horizon)
    return float(np.mean(rewards)), np.mean(costs, axis=0), float(np.mean(six))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=10_000)
    args = parser.parse_args()
    episodes, seed = args.episodes, args.first_seed
    meg = gym.make("edgegen/MEG-v0").unwrapped
    five, six = meg.physical_to_action(5, 0.0), meg.physical_to_action(6, 0.0)
    rng = np.random.default_rng(0)

    def oracle(obs: np.ndarray, env: gym.Env) -> np.ndarray:
        return np.asarray(env.unwrapped.oracle().action, dtype=np.float32)

    def random(obs: np.ndarray, env: gym.Env) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, 2).astype(np.float32)

    def threshold(x_db: float) -> Policy:
        # observation 0 is the frame's SNR in dB / 10
        return lambda obs, env: six if obs[0] * 10.0 < x_db else five

    with record("meg_threshold_policies", "MEG-v0: the oracle against one-threshold rules"):
        r_oracle, c_oracle, f_oracle = evaluate(oracle, episodes, seed)
        r_random, _, _ = evaluate(random, episodes, seed)

        def score(reward: float) -> float:
            return (reward - r_random) / (r_oracle - r_random)

        print(f"{episodes} episodes from seed {seed}; limits 3.8 s / 650 J; score: random 0, oracle 1\n")
        print("| policy | N = 6 frames | latency_s per step | energy_j per step | normalised score |")
        print("|---|---|---|---|---|")
        print(f"| oracle | {f_oracle:.2f} | {c_oracle[0]:.3f} | {c_oracle[1]:.1f} | 1.000 |")
        fixed = meg.best_fixed_action()
        r_fixed, c_fixed, f_fixed = evaluate(lambda obs, env: fixed, episodes, seed)
        print(
            f"| best fixed (5, 0) | {f_fixed:.2f} | {c_fixed[0]:.3f} | {c_fixed[1]:.1f} "
            f"| {score(r_fixed):.3f} |"
        )
        for x_db in np.arange(-5.0, 1.01, 0.5):
            reward, cost, frac = evaluate(threshold(float(x_db)), episodes, seed)
            print(
                f"| N = 6 if SNR < {x_db:+.1f} dB, else 5 | {frac:.2f} | {cost[0]:.3f} | {cost[1]:.1f} "
                f"| {score(reward):.3f} |"
            )


if __name__ == "__main__":
    main()
