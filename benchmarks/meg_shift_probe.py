"""A MEG-v0 CVPO policy with its deterministic N shifted: costs and score against the shift.

``keep_best``'s ``shift_dims`` (agents/selection.py) calibrates the kept policy's deterministic action
on the selection episodes. This script replays a trained policy (a suite job's folder or a
``model.zip``) with the N dimension's ``action_offset`` set to each given shift (the model's own
calibrated shift and 0, "unshifted", are always included) and prints, per shift, the mean latency and
energy per frame as fractions of the limits on the run's selection episodes (``training seed +
104_729 + i``) and on the evaluation episodes, the objective (mean ln MSE per frame) and, with
``--results`` (a suite's results.csv on the same episodes), the score ``1 - gap / gap_random``.

    python benchmarks/meg_shift_probe.py suite_runs/<run>/jobs/MEG-v0__cvpo__<seed> [...] \\
        --results suite_runs/<run>/results.csv [--eval-seed 50000] [--shifts -0.02 0.02 0.1]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import CVPO
from edgegen.agents.deployed import play_deterministic
from edgegen.agents.protocol import TUNING_EVAL_SEED
from edgegen.agents.selection import SELECTION_SEED_OFFSET


def baselines(results: Path) -> tuple[float, float]:
    """The oracle's objective and random's gap on MEG-v0 from a suite's results.csv."""
    rows = {r["policy"]: r for r in csv.DictReader(results.open()) if r["env"] == "edgegen/MEG-v0"}
    return float(rows["oracle"]["objective"]), float(rows["random"]["optimality_gap"])


def probe(job: Path, shifts: list[float], args: argparse.Namespace) -> None:
    """Print one row per shift for the policy of ``job`` (a folder with model.zip and result.json)."""
    folder = job if job.is_dir() else job.parent
    seed = args.seed if args.seed is not None else json.loads((folder / "result.json").read_text())["seed"]
    model = CVPO.load(folder / "model.zip" if job.is_dir() else job, env=None, device="cpu")
    env = gym.make("edgegen/MEG-v0")
    limits = np.asarray(env.get_wrapper_attr("cost_spec").limits)
    own = float(model.policy.action_offset[0])
    selection = [seed + SELECTION_SEED_OFFSET + i for i in range(args.selection_episodes)]
    evaluation = [args.eval_seed + i for i in range(args.episodes)]
    scores = baselines(args.results) if args.results else None
    print(f"\n{folder.name} (training seed {seed}; calibrated shift {own:.5f})")
    print("shift     | selection lat / en | evaluation lat / en | objective | score")
    for shift in sorted({*shifts, own, 0.0}):
        with th.no_grad():
            model.policy.action_offset[0] = shift
        act = lambda obs: model.predict(obs, deterministic=True)[0]  # noqa: E731
        _, sel_cost, _ = play_deterministic(act, env, list(selection), 2, "probe")
        reward, eval_cost, _ = play_deterministic(act, env, list(evaluation), 2, "probe")
        objective = -reward  # MEG-v0's reward per frame is -ln MSE
        score = "" if scores is None else f"{1 - (objective - scores[0]) / scores[1]:.3f}"
        sel, ev = sel_cost / limits, eval_cost / limits
        mark = " (calibrated)" if shift == own else ""
        print(
            f"{shift:+.5f} | {sel[0]:.4f} / {sel[1]:.4f}    | {ev[0]:.4f} / {ev[1]:.4f}     | "
            f"{objective:.4f}   | {score}{mark}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("jobs", nargs="+", type=Path, help="suite job folders or model.zip files")
    parser.add_argument("--shifts", nargs="*", type=float, default=[], help="more shifts of N to play")
    parser.add_argument("--eval-seed", type=int, default=TUNING_EVAL_SEED)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--selection-episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the job's)")
    parser.add_argument("--results", type=Path, default=None, help="a suite's results.csv (for the score)")
    args = parser.parse_args()
    for job in args.jobs:
        probe(job, args.shifts, args)


if __name__ == "__main__":
    main()
