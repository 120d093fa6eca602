"""SFLAM-v0's certified dual oracle against the BCD, on env rounds no test uses.

1. M = 10 (the default env, its scheduler's matching): for every round the dual solver's certified
   gap ``(objective - lower_bound) / objective``, its objective against BCD's, and both solve times
   (same process, same rounds, one after the other).
2. M = 50 with T_max = 5 s (at 2.5 s no round is feasible: the server alone takes ~3.6 s): the dual
   solver's gap and time (BCD on every 10th round for the time ratio).
3. 3-device rounds with the matching free: the dual solver against the zoomed-grid reference
   (``tests/sflam_reference.py``) and BCD.

    python benchmarks/sflam_certified.py [--episodes 10] [--m50-rounds 20] [--small 30]

Seeds: episodes 71000.. of the env (10 x 20 rounds = 200 rounds), small instances 81000..
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
from edgegen.solvers.sflam_dual import solve_sflam_dual

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import record
from sflam_reference import reference_optimum
from test_sflam import _instance

OUT = Path(__file__).resolve().parent / "out"


def env_rounds(
    episodes: int, selected: int, bcd_every: int = 1, seed0: int = 71000, limit_s: float = 2.5
) -> dict:
    env = gym.make(
        "edgegen/SFLAM-v0",
        num_devices=max(50, selected),
        selected_devices=selected,
        round_latency_s_limit=limit_s,
    ).unwrapped
    cfg = env._oracle_config  # the limit the env's oracle solves against (tightened by 1e-6)
    rows = []
    for episode in range(episodes):
        env.reset(seed=seed0 + episode)
        for r in range(env.config.num_rounds):
            gain, fixed, block = env.round_data()
            dual = solve_sflam_dual(cfg, gain, fixed, assignment=block)
            row = {
                "round": f"{seed0 + episode}/{r}",
                "gap": dual.gap,
                "status": dual.status,
                "dual_objective": dual.objective,
                "lower_bound": dual.lower_bound,
                "dual_s": dual.solve_time_s,
            }
            if (episode * env.config.num_rounds + r) % bcd_every == 0:
                start = time.perf_counter()
                bcd = solve_sflam_bcd(cfg, gain, fixed, assignment=block)
                row["bcd_s"] = time.perf_counter() - start
                row["bcd_objective"] = bcd.objective
                row["dual_over_bcd"] = dual.objective / bcd.objective - 1.0
            rows.append(row)
            env.step(env.action_space.sample())
        print(f"M={selected} episode {episode}: {len(rows)} rounds", file=sys.stderr, flush=True)
    gaps = np.array([r["gap"] for r in rows])
    with_bcd = [r for r in rows if "bcd_s" in r]
    rel = np.array([r["dual_over_bcd"] for r in with_bcd])
    return {
        "rounds": len(rows),
        "gap_within_0.5pct": float(np.mean(gaps <= 0.005)),
        "gap_median": float(np.median(gaps)),
        "gap_p95": float(np.quantile(gaps, 0.95)),
        "gap_worst": float(gaps.max()),
        "statuses": {
            s: int(sum(r["status"] == s for r in rows)) for s in ("optimal", "feasible", "infeasible")
        },
        "dual_median_s": float(np.median([r["dual_s"] for r in rows])),
        "bcd_rounds": len(with_bcd),
        "bcd_median_s": float(np.median([r["bcd_s"] for r in with_bcd])),
        "dual_worse_than_bcd_by_over_0.01pct": int(np.sum(rel > 1e-4)),
        "dual_vs_bcd_worst": float(rel.max()),
        "dual_vs_bcd_best": float(rel.min()),
        "dual_better_than_bcd_by_over_0.01pct": int(np.sum(rel < -1e-4)),
        "rows": rows,
    }


def small_against_reference(instances: int, seed0: int = 81000) -> dict:
    cfg = make_config("small")
    rows = []
    for seed in range(seed0, seed0 + instances):
        gain, fixed = _instance(cfg, seed)
        reference = reference_optimum(cfg, gain, fixed)
        if not np.isfinite(reference):
            continue
        dual = solve_sflam_dual(cfg, gain, fixed)
        bcd = solve_sflam_bcd(cfg, gain, fixed)
        rows.append(
            {
                "seed": seed,
                "dual_over_reference": dual.objective / reference - 1.0,
                "bound_over_reference": dual.lower_bound / reference - 1.0,
                "bcd_over_reference": bcd.objective / reference - 1.0,
            }
        )
    d = np.array([r["dual_over_reference"] for r in rows])
    b = np.array([r["bcd_over_reference"] for r in rows])
    lb = np.array([r["bound_over_reference"] for r in rows])
    return {
        "instances": len(rows),
        "dual_over_reference_worst": float(d.max()),
        "bound_over_reference_worst": float(lb.max()),
        "bcd_over_reference_worst": float(b.max()),
        "bcd_over_0.1pct": int(np.sum(b > 1e-3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--m50-episodes", type=int, default=1)
    parser.add_argument("--small", type=int, default=30)
    args = parser.parse_args()
    result = {"m10": env_rounds(args.episodes, 10)}
    summary = {k: v for k, v in result["m10"].items() if k != "rows"}
    print("M = 10:", json.dumps(summary, indent=1), flush=True)
    # At M = 50 the server's share alone takes ~3.6 s: T_max = 5 s makes the rounds feasible.
    result["m50"] = env_rounds(args.m50_episodes, 50, bcd_every=10, seed0=72000, limit_s=5.0)
    print(
        "M = 50:", json.dumps({k: v for k, v in result["m50"].items() if k != "rows"}, indent=1), flush=True
    )
    result["small"] = small_against_reference(args.small)
    print("3 devices, free matching:", json.dumps(result["small"], indent=1), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "sflam_certified.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    with record("sflam_certified", "SFLAM-v0: the certified per-round oracle against BCD"):
        main()
