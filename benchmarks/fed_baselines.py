"""FedDiffusion-v0: round energy of the quantization schemes at the oracle, and of the policy baselines.

Quantization schemes (each at its own oracle allocation, same channels and data): no quantization
(32 bit), fixed 8-bit, on-demand (each device's demanded bits). Policies on the default env:
oracle, equal time split, uniformly random. Energies are per round, averaged over seeded episodes.

    python benchmarks/fed_baselines.py [--episodes 20]
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import envs  # noqa: F401
from envs.quantization import payload_bits
from solvers.fed_energy import solve_round_energy, with_payload


def scheme_energies(episodes: int) -> dict[str, tuple[float, float, float]]:
    """Per scheme: (energy per round, upload Mbit per device, fraction of devices that cannot finish)."""
    env = gym.make("edgegen/FedDiffusion-v0")
    d = env.unwrapped.config.num_params
    names = ("none (32-bit)", "fixed 8-bit", "on-demand")
    totals: dict[str, list[float]] = {n: [] for n in names}
    sizes: dict[str, list[float]] = {n: [] for n in names}
    late: dict[str, list[float]] = {n: [] for n in names}
    for seed in range(episodes):
        env.reset(seed=seed)
        problem = env.unwrapped._episode
        for name, bits in (
            ("none (32-bit)", 32),
            ("fixed 8-bit", 8),
            ("on-demand", env.unwrapped.episode_constants()["demanded_bits"]),
        ):
            size = payload_bits(d, bits)
            result = solve_round_energy(with_payload(problem, size))
            totals[name].append(float(result.total_energy_j.mean()))
            sizes[name].append(float(np.mean(size)) / 1e6)
            late[name].append(float(np.mean(~result.feasible)))
    return {n: (float(np.mean(totals[n])), float(np.mean(sizes[n])), float(np.mean(late[n]))) for n in names}


def policy_energies(episodes: int) -> dict[str, tuple[float, float]]:
    results = {}
    for name in ("oracle", "equal split", "random"):
        env = gym.make("edgegen/FedDiffusion-v0")
        env.action_space.seed(0)
        energy, miss = [], []
        for seed in range(episodes):
            env.reset(seed=seed)
            done = False
            while not done:
                u = env.unwrapped
                action = {
                    "oracle": u.oracle_action,
                    "equal split": u.equal_split_action,
                    "random": env.action_space.sample,
                }[name]()
                _, _, terminated, truncated, info = env.step(action)
                energy.append(info["energy_j"])
                miss.append(info["costs"][0])
                done = terminated or truncated
        results[name] = (float(np.mean(energy)), float(np.mean(miss)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    schemes = scheme_energies(args.episodes)
    ref = schemes["none (32-bit)"][0]
    print(
        "| quantization scheme (oracle allocation) | energy per round (J) | vs 32-bit "
        "| upload per device (Mbit) | devices that cannot meet T |"
    )
    print("|---|---|---|---|---|")
    for name, (e, size, late) in schemes.items():
        print(f"| {name} | {e:.3f} | {100 * (e / ref - 1):+.1f} % | {size:.0f} | {late:.3f} |")
    print()
    print("| policy (on-demand bits) | energy per round (J) | deadline-miss fraction (limit 0.05) |")
    print("|---|---|---|")
    for name, (e, m) in policy_energies(args.episodes).items():
        print(f"| {name} | {e:.3f} | {m:.4f} |")


if __name__ == "__main__":
    main()
