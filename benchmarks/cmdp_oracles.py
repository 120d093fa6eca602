"""The oracles' two kinds on fresh episodes: the CMDP policy (the yardstick) against the per-round one.

Per env and kind: the mean objective per step and mean cost per step over evaluation episodes (seeds
90000.., which no test and no fit uses), each with a 95 % interval over episodes (the independent
units), against the oracle's own stated objective and the limits. First-call (fit) time of each kind.

    python benchmarks/cmdp_oracles.py [--episodes 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)

OUT = Path(__file__).resolve().parent / "out"
ENVS = {"edgegen/FedDiffusion-v0": {}, "edgegen/MEG-v0": {}, "edgegen/SFLAM-v0": {}}


def interval(x: np.ndarray) -> tuple[float, float]:
    """Mean and 95 % half-width (normal approximation over episodes)."""
    return float(x.mean()), float(1.96 * x.std(ddof=1) / np.sqrt(x.size))


def run(env_id: str, kind: str, episodes: int) -> dict:
    env = gym.make(env_id, **ENVS[env_id])
    u = env.unwrapped
    env.reset(seed=90000)
    start = time.perf_counter()
    stated = u.oracle(kind)
    first_call_s = time.perf_counter() - start
    objectives, costs = [], []
    for episode in range(episodes):
        env.reset(seed=90000 + episode)
        obj, cost = [], []
        for _ in range(u.horizon):
            _, _, _, _, info = env.step(u.oracle_action(kind))
            obj.append(info[u.objective_key])
            cost.append(info["costs"])
        objectives.append(np.mean(obj))
        costs.append(np.mean(cost, axis=0))
    objective = interval(np.array(objectives))
    cost_rows = np.array(costs)
    return {
        "env": env_id,
        "kind": kind,
        "episodes": episodes,
        "first_call_s": first_call_s,
        "stated_objective": float(stated.objective),
        "lower_bound": float(stated.lower_bound),
        "status": stated.status,
        "objective_per_episode": [float(x) for x in objectives],
        "objective_mean": objective[0],
        "objective_ci95": objective[1],
        "costs": {
            name: {
                "mean": interval(cost_rows[:, i])[0],
                "ci95": interval(cost_rows[:, i])[1],
                "limit": float(u.cost_spec.limits[i]),
            }
            for i, name in enumerate(u.cost_spec.names)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    args = parser.parse_args()
    rows = []
    print(
        "| env | kind | stated objective | measured objective (95 %) | cost mean (95 %) | limit "
        "| first call s |"
    )
    print("|---|---|---|---|---|---|---|")
    for env_id in args.envs:
        kinds = gym.make(env_id).unwrapped.oracle_kinds
        for kind in kinds:
            episodes = args.episodes if env_id != "edgegen/SFLAM-v0" else max(args.episodes // 4, 4)
            row = run(env_id, kind, episodes)
            rows.append(row)
            for name, c in row["costs"].items():
                print(
                    f"| {env_id[8:]} | {kind} | {row['stated_objective']:.4f} | "
                    f"{row['objective_mean']:.4f} +- {row['objective_ci95']:.4f} | "
                    f"{name} {c['mean']:.4f} +- {c['ci95']:.4f} | {c['limit']:g} | "
                    f"{row['first_call_s']:.2f} |",
                    flush=True,
                )
    # Paired over the same episodes: CMDP minus per-round objective (the CMDP policy may use the
    # average constraint's slack; it must never be worse beyond noise).
    print("\n| env | CMDP - per-round objective per episode (95 %) |")
    print("|---|---|")
    for env_id in ENVS:
        kinds = {r["kind"]: r for r in rows if r["env"] == env_id}
        if {"cmdp", "per_round"} <= set(kinds):
            diff = np.subtract(
                kinds["cmdp"]["objective_per_episode"], kinds["per_round"]["objective_per_episode"]
            )
            mean, half = interval(diff)
            print(f"| {env_id[8:]} | {mean:+.4f} +- {half:.4f} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "cmdp_oracles.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    with record(
        "cmdp_oracles", "The oracles' two kinds on fresh episodes (CMDP yardstick against per-round)"
    ):
        main()
