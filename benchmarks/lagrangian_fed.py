"""PPO-Lagrangian (gradient) against PID-Lagrangian on FedDiffusion-v0: constraint violations, seeds.

Each (variant, seed) trains with train_agent.py's settings (4 envs, the ppo-lag recipe) for --timesteps steps,
then is evaluated deterministically on 20 seeded episodes beside the oracle. Also reported: the
fraction of training rollouts whose episodes broke the limit (the stochastic policy's violations).

    python benchmarks/lagrangian_fed.py [--timesteps 200000] [--seeds 0 1 2] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy, PPOLagrangian, evaluate_policy_with_cost, load_hyperparams

ENV = "edgegen/FedDiffusion-v0"
RECIPE = load_hyperparams("ppo-lag", ENV)[0]  # the PPO family's recipe (agents/hyperparams)


class RolloutCosts(BaseCallback):
    """Cost per step of each rollout's finished episodes and the multiplier, over training."""

    def __init__(self) -> None:
        super().__init__()
        self.trace: list[tuple[int, float, float]] = []

    def _on_rollout_end(self) -> None:
        if self.model._finished_costs:
            cost = float(np.mean(self.model._finished_costs))
            self.trace.append((self.num_timesteps, cost, float(self.model.lambdas[0])))

    def _on_step(self) -> bool:
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = gym.make(ENV)
    oracle = evaluate_policy_with_cost(OraclePolicy(env), env, 20, seed=10_000)
    oracle_energy = float(np.mean(oracle.metrics["energy_j"]))
    limit = env.unwrapped.cost_spec.limits[0]
    rows, traces = [], {}
    for variant in ("gradient", "pid"):
        for seed in args.seeds:
            start = time.perf_counter()
            vec = make_vec_env(ENV, n_envs=4, seed=seed)
            model = PPOLagrangian("MlpPolicy", vec, lagrangian=variant, seed=seed, **RECIPE)
            trace = RolloutCosts()
            model.learn(args.timesteps, callback=trace)
            result = evaluate_policy_with_cost(model, env, 20, seed=10_000)
            steps, costs, lambdas = np.array(trace.trace).T
            late_half = costs[len(costs) // 2 :]
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "time_s": time.perf_counter() - start,
                    "eval_miss_per_step": float(result.cost_per_step.mean()),
                    "eval_violation_rate": result.violation_rate,
                    "energy_ratio": float(np.mean(result.metrics["energy_j"])) / oracle_energy,
                    "train_rollouts_over_limit_2nd_half": float(np.mean(late_half > limit)),
                    "train_max_overshoot_2nd_half": float(late_half.max() / limit),
                    "final_lambda": float(lambdas[-1]),
                }
            )
            traces[f"{variant}-{seed}"] = {
                "steps": steps.tolist(),
                "cost": costs.tolist(),
                "lambda": lambdas.tolist(),
            }
            print(rows[-1], flush=True)
    (args.out / "lagrangian_fed.json").write_text(json.dumps({"rows": rows, "traces": traces}, indent=2))
    plot(traces, limit, args.out / "lagrangian_fed.png")
    print(
        f"\noracle: miss per step {oracle.cost_per_step.mean():.4f}, "
        f"energy per episode {oracle_energy:.1f} J\n"
    )
    print(
        "| variant | seed | eval miss per step (limit 0.05) | eval violation rate | energy / oracle "
        "| training rollouts over the limit (2nd half) | worst rollout / limit (2nd half) | final lambda |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['seed']} | {r['eval_miss_per_step']:.4f} "
            f"| {r['eval_violation_rate']:.2f} "
            f"| {r['energy_ratio']:.3f} | {r['train_rollouts_over_limit_2nd_half']:.2f} "
            f"| {r['train_max_overshoot_2nd_half']:.2f} | {r['final_lambda']:.2f} |"
        )


def plot(traces: dict, limit: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_c, ax_l) = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, t in traces.items():
        style = "-" if name.startswith("pid") else "--"
        ax_c.plot(t["steps"], t["cost"], style, label=name, lw=1)
        ax_l.plot(t["steps"], t["lambda"], style, label=name, lw=1)
    ax_c.axhline(limit, color="k", lw=1)
    ax_c.set(xlabel="env steps", ylabel="deadline misses per step (rollout)", yscale="log")
    ax_l.set(xlabel="env steps", ylabel="lambda")
    ax_c.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
