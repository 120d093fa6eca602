"""How noisy is one Frechet distance of the federated DDPM? Sample noise against the training spread.

Trains the federated DDPM of ``envs.backends.federated_ddpm`` once at 32 bits and once at the
devices' demanded bits (FedDiffusion-v0's episode of the same seed), then computes the Frechet
distance of each trained model with several sample seeds, at 200 samples (the backend's default)
and at 1000. If the spread over sample seeds is small against the spread between training runs
(benchmarks/fed_ddpm_quantization.py), more samples cannot narrow the "same quality" interval; only
more training seeds can.

    python benchmarks/fed_ddpm_fd_noise.py [--seed 0] [--rounds 30] [--sample-seeds 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import gymnasium as gym
import numpy as np
import torch

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.federated_ddpm import FederatedDDPM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--sample-seeds", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = gym.make("edgegen/FedDiffusion-v0")
    env.reset(seed=args.seed)
    demanded = env.unwrapped.episode_constants()["demanded_bits"]
    start = time.perf_counter()
    print("| model | samples | FD per sample seed | mean +- std |\n|---|---|---|---|")
    for name, bits in (("32-bit", np.full(10, 32)), ("on-demand", demanded)):
        fl = FederatedDDPM(seed=args.seed)
        for _ in range(args.rounds):
            fl.run_round(bits)
        for n in (200, 1000):
            fl.config = dataclasses.replace(fl.config, fd_samples=n)
            fds = np.array([fl.frechet_distance(seed=777 + k) for k in range(args.sample_seeds)])
            print(
                f"| {name} | {n} | {', '.join(f'{v:.0f}' for v in fds)} | "
                f"{fds.mean():.0f} +- {fds.std(ddof=1):.0f} |",
                flush=True,
            )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
