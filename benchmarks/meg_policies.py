"""MEG-v0: oracle vs best fixed action vs random policy on seeded episodes, and live-backend speed.

Reward is -ln MSE per frame (higher is better); costs are per-frame averages against the limits
(3.8 s, 650 J). The oracle is the dual-decomposition policy of ``solvers.meg_oracle``.

    python benchmarks/meg_policies.py [--episodes 20] [--live-steps 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)

OUT = Path(__file__).resolve().parent / "out"


def evaluate(preset: str, policy: str, episodes: int) -> dict[str, float]:
    env = gym.make("edgegen/MEG-v0", preset=preset).unwrapped
    rng = np.random.default_rng(0)
    rewards, costs, steps, rhos = [], [], [], []
    for seed in range(episodes):
        env.reset(seed=seed)
        for _ in range(env.config.horizon):
            if policy == "oracle":
                action = env.oracle_action()
            elif policy == "best fixed":
                action = env.best_fixed_action()
            else:
                action = rng.uniform(-1, 1, 2).astype(np.float32)
            _, reward, _, _, info = env.step(action)
            rewards.append(reward)
            costs.append(info["costs"])
            steps.append(info["steps"])
            rhos.append(info["merge_ratio"])
    costs_arr = np.asarray(costs)
    return {
        "reward": float(np.mean(rewards)),
        "latency_s": float(costs_arr[:, 0].mean()),
        "energy_j": float(costs_arr[:, 1].mean()),
        "mean_steps": float(np.mean(steps)),
        "mean_rho": float(np.mean(rhos)),
    }


def live_seconds_per_step(steps: int) -> float:
    env = gym.make("edgegen/MEG-v0", backend="live", render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))  # loads the backbone
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.uniform(-1, 1, 2).astype(np.float32))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--live-steps", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    results: dict = {}
    for preset in ("paper", "fading"):
        oracle = gym.make("edgegen/MEG-v0", preset=preset).unwrapped.solved_oracle()
        print(
            f"\npreset {preset!r}: oracle multipliers (lambda_L, lambda_E) = "
            f"({oracle.dual[0]:.3f}, {oracle.dual[1]:.4f}), time-sharing weights "
            f"{[round(w, 3) for w in oracle.weights]}"
        )
        print(
            "| policy | reward (-ln MSE) | latency s (limit 3.8) | energy J (limit 650) | mean N | mean rho |"
        )
        print("|---|---|---|---|---|---|")
        for policy in ("oracle", "best fixed", "random"):
            r = evaluate(preset, policy, args.episodes)
            results[f"{preset}/{policy}"] = r
            print(
                f"| {policy} | {r['reward']:.3f} | {r['latency_s']:.3f} | {r['energy_j']:.1f} | "
                f"{r['mean_steps']:.2f} | {r['mean_rho']:.3f} |"
            )
        o, rand = results[f"{preset}/oracle"]["reward"], results[f"{preset}/random"]["reward"]
        fixed = results[f"{preset}/best fixed"]["reward"]
        print(f"best fixed normalised score (random 0, oracle 1): {(fixed - rand) / (o - rand):.3f}")
    if args.live_steps:
        sec = live_seconds_per_step(args.live_steps)
        results["live_seconds_per_step"] = sec
        print(f"\nlive backend: {sec:.3f} s per step ({args.live_steps} steps, shipped 32^2 backbone)")
    OUT.mkdir(exist_ok=True)
    (OUT / "meg_policies.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    with record("meg_policies", "MEG-v0: oracle, best fixed action, random; live-backend speed"):
        main()
