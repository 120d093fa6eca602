"""FedDiffusion-v0: round energy of the quantization schemes at the oracle, and of the policy baselines.

Quantization schemes (each at its own per-round oracle allocation, same channels and data): no
quantization (32 bit), fixed 8-bit (below the 16-bit devices' demand), fixed at the highest demanded
bit-width (16: meets every demand), on-demand (each device's demanded bits); at the default T = 60 s
and at a T valid for the 32-bit scheme. Policies on the default env: the per-round and CMDP oracles,
equal time split, uniformly random. Energies are per round, averaged over seeded episodes.

    python benchmarks/fed_baselines.py [--episodes 20]
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.quantization import payload_bits
from edgegen.solvers.fed_energy import solve_round_energy, with_payload

SCHEMES = ("none (32-bit)", "fixed 8-bit", "fixed at the highest demand (16-bit)", "on-demand")


def scheme_energies(episodes: int, round_time_s: float) -> dict[str, tuple[float, float, float, float]]:
    """Per scheme at round time T: (energy per round, upload Mbit per device, fraction of devices that
    cannot finish, fraction of devices given fewer bits than they demand)."""
    env = gym.make("edgegen/FedDiffusion-v0")
    cfg = env.unwrapped.config
    d = cfg.num_params
    highest = max(cfg.demanded_bits_choices)
    rows: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in SCHEMES}
    for seed in range(episodes):
        env.reset(seed=seed)
        problem = dataclasses.replace(env.unwrapped.episode_problem(), round_time_s=round_time_s)
        demanded = env.unwrapped.episode_constants()["demanded_bits"]
        for name, bits in zip(SCHEMES, (32, 8, highest, demanded), strict=True):
            bits = np.broadcast_to(bits, demanded.shape)
            size = payload_bits(d, bits)
            result = solve_round_energy(with_payload(problem, size))
            rows[name].append(
                (
                    float(result.total_energy_j.mean()),
                    float(np.mean(size)) / 1e6,
                    float(np.mean(~result.feasible)),
                    float(np.mean(bits < demanded)),
                )
            )
    return {n: tuple(float(x) for x in np.mean(rows[n], axis=0)) for n in SCHEMES}  # type: ignore[misc]


def policy_energies(episodes: int) -> dict[str, tuple[float, float]]:
    results = {}
    for name in ("oracle", "oracle (cmdp)", "equal split", "random"):
        env = gym.make("edgegen/FedDiffusion-v0")
        env.action_space.seed(0)
        energy, miss = [], []
        for seed in range(episodes):
            env.reset(seed=seed)
            done = False
            while not done:
                u = env.unwrapped
                action = {
                    "oracle": lambda u=u: u.oracle_action("per_round"),
                    "oracle (cmdp)": lambda u=u: u.oracle_action("cmdp"),
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
    cfg = gym.make("edgegen/FedDiffusion-v0").unwrapped.config
    # The 32-bit scheme's own shortest valid T (the config rejects T = 60 s for it): the worst device's
    # time at f_max and p_max on its mean channel, plus 25 %.
    t32 = 1.25 * dataclasses.replace(cfg, quantization="none", round_time_s=1e5).nominal_min_round_time_s
    for round_time_s in (cfg.round_time_s, round(t32, 1)):
        schemes = scheme_energies(args.episodes, round_time_s)
        ref = schemes["none (32-bit)"][0]
        print(f"T = {round_time_s:g} s")
        print(
            "| quantization scheme (oracle allocation) | energy per round (J) | vs 32-bit "
            "| upload per device (Mbit) | devices that cannot meet T | devices below their demand |"
        )
        print("|---|---|---|---|---|---|")
        for name, (e, size, late, under) in schemes.items():
            print(
                f"| {name} | {e:.3f} | {100 * (e / ref - 1):+.1f} % | {size:.0f} | {late:.3f} | {under:.3f} |"
            )
        print()
    print("| policy (on-demand bits) | energy per round (J) | deadline-miss fraction (limit 0.05) |")
    print("|---|---|---|")
    for name, (e, m) in policy_energies(args.episodes).items():
        print(f"| {name} | {e:.3f} | {m:.4f} |")


if __name__ == "__main__":
    with record("fed_baselines", "FedDiffusion-v0: quantization schemes and policy baselines"):
        main()
