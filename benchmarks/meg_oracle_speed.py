"""MEG-v0's CMDP oracle: time of the first ``oracle()`` call (the fit on 10,000 sampled frames).

With ``feature_noise="snr"`` the rewards depend on the frame, so the dual works on the (frames x
actions) table; with "fixed" an upper envelope per action serves every frame. Median of repeats, each
in a fresh process (the fit is cached per config and process), and the fitted objective and bound.

    python benchmarks/meg_oracle_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)


def first_call(feature_noise: str) -> tuple[float, float, float]:
    env = gym.make("edgegen/MEG-v0", feature_noise=feature_noise).unwrapped
    env.reset(seed=0)
    start = time.perf_counter()
    result = env.oracle()
    return time.perf_counter() - start, float(result.objective), float(result.lower_bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", choices=("fixed", "snr"), help=argparse.SUPPRESS)  # a single timing
    args = parser.parse_args()
    if args.one:
        print(json.dumps(first_call(args.one)))
        return
    print("| feature_noise | first oracle() s (median of repeats) | objective | lower bound |")
    print("|---|---|---|---|")
    for noise in ("fixed", "snr"):
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--one", noise], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(args.repeats)
        ]
        seconds = float(np.median([r[0] for r in runs]))
        print(f"| {noise} | {seconds:.2f} | {runs[0][1]:.12f} | {runs[0][2]:.12f} |", flush=True)


if __name__ == "__main__":
    with record("meg_oracle_speed", "MEG oracle: first-call time"):
        main()
