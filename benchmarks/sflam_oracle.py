"""SFLAM-v0 oracle: BCD against brute force, solve time, and the objective against the baselines.

1. BCD (with matching) against the zoomed-grid reference (``tests/sflam_reference.py``: every matching
   and bits, shares and latency on grids refined until the value moves < 0.01 %) on random 3-device
   instances of the "small" preset: ratio of objectives, worst case.
2. BCD solve time for M = 10 and M = 50 selected devices (env matching).
3. On 100 seeded rounds of the default env: the objective (= -reward) of the oracle, fixed 8-bit,
   full precision and random actions, and each one's round latency against T_max.

    python benchmarks/sflam_oracle.py [--instances 100] [--rounds 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.sflam.config import make_config
from edgegen.solvers.sflam_bcd import solve_sflam_bcd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import record
from sflam_reference import reference_optimum
from test_sflam import _instance

OUT = Path(__file__).resolve().parent / "out"


def bcd_vs_brute_force(instances: int) -> dict:
    cfg = make_config("small")
    ratios = []
    for seed in range(instances):
        gain, fixed = _instance(cfg, seed)
        reference = reference_optimum(cfg, gain, fixed)
        if np.isfinite(reference):
            ratios.append(solve_sflam_bcd(cfg, gain, fixed).objective / reference)
    r = np.array(ratios)
    return {
        "instances": int(r.size),
        "within_1pct": float(np.mean(r <= 1.01)),
        "worst": float(r.max()),
        "median": float(np.median(r)),
        "best": float(r.min()),
    }


def solve_times(sizes=(10, 50), repeats: int = 3) -> dict:
    out = {}
    for m in sizes:
        env = gym.make("edgegen/SFLAM-v0", num_devices=max(50, m), selected_devices=m).unwrapped
        times = []
        for seed in range(repeats):
            env.reset(seed=seed)
            start = time.perf_counter()
            env.oracle_action()
            times.append(time.perf_counter() - start)
        out[m] = float(np.median(times))
    return out


def policies(rounds: int) -> dict:
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    rng = np.random.default_rng(0)
    results = {
        p: {"objective": [], "latency": []} for p in ("oracle", "fixed_8bit", "full_precision", "random")
    }
    episodes = (rounds + env.config.num_rounds - 1) // env.config.num_rounds
    for episode in range(episodes):
        for policy, store in results.items():
            env.reset(seed=episode)
            for _ in range(min(env.config.num_rounds, rounds - episode * env.config.num_rounds)):
                if policy == "oracle":
                    action = env.oracle_action()
                elif policy == "random":
                    action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
                else:
                    action = env.baseline_action(policy)
                _, reward, _, _, info = env.step(action)
                store["objective"].append(-reward)
                store["latency"].append(info["costs"][0])
    return {
        p: {
            "objective": float(np.mean(v["objective"])),
            "latency_s": float(np.mean(v["latency"])),
            "over_limit": float(np.mean(np.array(v["latency"]) > 2.5 * (1 + 1e-4))),
        }
        for p, v in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    result = {"bcd_vs_brute_force": bcd_vs_brute_force(args.instances)}
    print("BCD / reference:", result["bcd_vs_brute_force"], flush=True)
    result["solve_seconds"] = solve_times()
    print("BCD solve time (median of 3, s):", result["solve_seconds"], flush=True)
    result["policies"] = policies(args.rounds)
    print("| policy | objective (= -reward) | round latency s (T_max 2.5) | rounds over T_max |")
    print("|---|---|---|---|")
    for name, r in result["policies"].items():
        print(f"| {name} | {r['objective']:.3f} | {r['latency_s']:.3f} | {r['over_limit']:.2f} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "sflam_oracle.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    with record("sflam_oracle", "SFLAM-v0: BCD oracle against the reference, solve time, baselines"):
        main()
