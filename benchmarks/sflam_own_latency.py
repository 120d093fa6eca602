"""SFLAM-v0 agents against the CMDP oracle at the limit and at the agent's own round latency.

A policy that spends more round latency than the limit can look close to the limit's oracle only
because it overspends. For each saved PPOLagrangian model (a suite job's ``model.zip``), on the
tuning block's 20 evaluation episodes (10000-10019), this prints the deterministic policy's mean round
latency and objective per round, and the CMDP oracle's mean round and objective, with its ratio to
the agent's, at the env's limit (2.5 s) and with the limit set to the agent's own mean round.

    python benchmarks/sflam_own_latency.py suite_runs/<run>/jobs/<job> [...]
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy, PPOLagrangian, evaluate_policy_with_cost
from edgegen.agents.protocol import TUNING_EVAL_SEED

EPISODES = 20


def per_round(policy, env: gym.Env) -> tuple[float, float]:
    """(mean round latency s, mean objective per round) of ``policy`` on the tuning episodes."""
    result = evaluate_policy_with_cost(
        policy, env, EPISODES, seed=TUNING_EVAL_SEED, metric_keys=("objective",)
    )
    return float(result.cost_per_step[:, 0].mean()), float(
        (result.metrics["objective"] / result.lengths).mean()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="+", help="suite job folders holding model.zip")
    args = parser.parse_args()
    print(
        "| job | agent round [s] | agent objective | limit [s] | oracle round [s] | oracle objective "
        "| agent / oracle |"
    )
    print("|---|---|---|---|---|---|---|")
    for job in args.jobs:
        model = PPOLagrangian.load(f"{job}/model.zip", device="cpu")
        latency, objective = per_round(model, gym.make("edgegen/SFLAM-v0"))
        for limit in (2.5, round(latency, 3)):
            env = gym.make("edgegen/SFLAM-v0", round_latency_s_limit=limit)
            oracle_latency, oracle_objective = per_round(OraclePolicy(env), env)
            print(
                f"| {job.rstrip('/').split('/')[-1]} | {latency:.3f} | {objective:.4f} | {limit:g} | "
                f"{oracle_latency:.3f} | {oracle_objective:.4f} | {objective / oracle_objective:.3f} |"
            )


if __name__ == "__main__":
    main()
