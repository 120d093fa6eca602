"""Env steps per second through ``gymnasium.make``, against CartPole-v1 measured in the same run.

Actions are drawn once up front from a seeded generator and cycled, so the figure is the env's
cost, not ``Box.sample()``'s (about 19 us for a 10-dim Box here, three times CartPole's whole step).
Env and reference alternate over several repeats; the median of each is reported.

    python benchmarks/env_throughput.py [--envs ID ...] [--steps 20000] [--repeats 5]

An env is an id, optionally followed by ``:key=value,...`` keyword arguments for ``gymnasium.make``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)


def steps_per_second(env_id: str, steps: int, seed: int = 0, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(seed)
    pool = [env.action_space.sample() for _ in range(1024)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for i in range(steps):
        _, _, terminated, truncated, _ = env.step(pool[i & 1023])
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def parse_env(spec: str) -> tuple[str, dict]:
    env_id, _, rest = spec.partition(":")
    kwargs = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=")
        kwargs[key] = {"True": True, "False": False}.get(value, value)
    return env_id, kwargs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [i for i in gym.registry if i.startswith("edgegen/")] + [
        "edgegen/FedDiffusion-v0:oracle_in_info=True",
        "edgegen/MEG-v0:preset=fading",
        "edgegen/MEG-v0:feature_noise=snr",
    ]
    parser.add_argument("--envs", nargs="+", default=default)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"numpy {np.__version__}, gymnasium {gym.__version__}"
    )
    print("| env | steps/s (median) | CartPole-v1 steps/s (median, same run) | ratio |")
    print("|---|---|---|---|")
    for spec in args.envs:
        env_id, kwargs = parse_env(spec)
        ours, ref = [], []
        for _ in range(args.repeats):
            ref.append(steps_per_second("CartPole-v1", args.steps))
            ours.append(steps_per_second(env_id, args.steps, **kwargs))
        a, b = statistics.median(ours), statistics.median(ref)
        print(f"| {spec} | {a:,.0f} | {b:,.0f} | {a / b:.2f} |")


if __name__ == "__main__":
    with record("env_throughput", "Env throughput against CartPole-v1"):
        main()
