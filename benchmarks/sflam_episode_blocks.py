"""How much a 20-episode evaluation block decides SFLAM-v0's feasibility: saved policies on many episodes.

The protocol judges a policy on 20 evaluation episodes (the upper end of the 95 % t-interval of its
mean round latency within the limit + 2 %). SFLAM-v0's episodes differ in how long their rounds are
(the channel draws), and the differences are common to every policy, so a block of easy episodes
passes policies that run over the limit on average. For each saved policy (a suite job's folder, or
a checkpoint inside a run folder), on ``--episodes`` tuning episodes from ``--seed`` (by default
10100-10199, disjoint from the 20 that the tuning suites evaluate on, 10000-10019, and from the
reporting block): the mean round latency and the upper end of its interval over all the episodes,
the mean objective, and every consecutive 20-episode block's mean latency and whether that block
would pass the protocol's rule. No oracle is run (minutes per 20 episodes): the objectives compare
the policies on the same episodes.

    python benchmarks/sflam_episode_blocks.py suite_runs/<run>/jobs/<job> [...]
    python benchmarks/sflam_episode_blocks.py --episodes 200 --seed 10100 suite_runs/<run>/jobs/*
"""

from __future__ import annotations

import argparse
from pathlib import Path

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen import train_agent as ta
from edgegen.agents import evaluate_policy_with_cost
from edgegen.agents.protocol import TUNING_EVAL_SEED, cost_checks

BLOCK = 20  # the protocol's evaluation episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="suite job folders or checkpoints")
    parser.add_argument("--episodes", type=int, default=100, help="a multiple of 20 (default 100)")
    parser.add_argument(
        "--seed", type=int, default=TUNING_EVAL_SEED + 100, help="first episode (default 10100)"
    )
    args = parser.parse_args()
    if args.episodes < BLOCK or args.episodes % BLOCK:
        parser.error(f"--episodes must be a positive multiple of {BLOCK}, got {args.episodes}")
    if not 0 <= args.seed < 50_000 or args.seed + args.episodes > 50_000:
        parser.error(f"--seed must keep the episodes in the tuning block (below 50000), got {args.seed}")
    print(f"episodes {args.seed}-{args.seed + args.episodes - 1}; blocks of {BLOCK}: mean round [s] (pass)")
    for run in args.runs:
        checkpoint = run / "model.zip" if run.is_dir() else run
        model, config = ta.load_model(checkpoint)
        if config["env"] != "edgegen/SFLAM-v0":
            raise SystemExit(f"{checkpoint} was trained on {config['env']}, not edgegen/SFLAM-v0")
        env = ta.make_env(config["env"], config["env_kwargs"])
        result = evaluate_policy_with_cost(
            model, env, n_episodes=args.episodes, seed=args.seed, metric_keys=("objective",)
        )
        spec = result.cost_spec
        objective = result.metrics["objective"] / result.lengths
        # the protocol's own rule (agents/protocol.py), on all the episodes and on each block
        overall = cost_checks(result.cost_per_step, spec.names, spec.limits)[spec.names[0]]
        blocks = [
            cost_checks(result.cost_per_step[lo : lo + BLOCK], spec.names, spec.limits)[spec.names[0]]
            for lo in range(0, args.episodes, BLOCK)
        ]
        passes = sum(block["feasible"] for block in blocks)
        cells = " ".join(f"{b['mean']:.3f} ({'ok' if b['feasible'] else 'X'})" for b in blocks)
        print(
            f"{run}: T {overall['mean']:.3f} s (upper {overall['ci_high']:.3f}), objective "
            f"{objective.mean():.4f} | {cells} | {passes}/{len(blocks)} blocks pass"
        )


if __name__ == "__main__":
    main()
