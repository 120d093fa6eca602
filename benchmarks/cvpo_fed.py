"""CVPO on FedDiffusion-v0: learning curve, deadline misses and energy against the oracle.

Every --eval-every env steps the deterministic policy is evaluated on 20 seeded episodes (seeds
10000-10019) beside the oracle; also measured: gradient updates per second. One process per seed.

    python benchmarks/cvpo_fed.py --seed 0 [--timesteps 100000] [--episode-length T] [--out benchmarks/out]
        [--infinite-horizon-threshold] [--entity-actor] [--gamma G] [--cost-value-baseline RATE]
        [--policy-average RATE] [--entity-critic-hidden W [W ...]] [--min-std S]
    python benchmarks/cvpo_fed.py --plot benchmarks/out/cvpo_fed_seed*.json \
        [--lagrangian benchmarks/out/lagrangian_fed.json]   # the PNG of all runs
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy, evaluate_policy_with_cost
from edgegen.agents.cvpo import CVPO, CVPOConfig

ENV = "edgegen/FedDiffusion-v0"


def run(seed: int, timesteps: int, eval_every: int, out: Path, config: CVPOConfig) -> None:
    th.set_num_threads(1)
    eval_env = gym.make(ENV)
    oracle = evaluate_policy_with_cost(OraclePolicy(eval_env), eval_env, 20, seed=10_000)
    oracle_energy = float(np.mean(oracle.metrics["energy_j"]))
    model = CVPO(gym.make(ENV), config, seed=seed)
    curve, update_time, updates = [], 0.0, 0
    while model.num_timesteps < timesteps:
        start, before = time.perf_counter(), model.num_updates
        model.learn(eval_every)
        update_time += time.perf_counter() - start
        updates += model.num_updates - before
        r = evaluate_policy_with_cost(model, eval_env, 20, seed=10_000)
        point = {
            "steps": model.num_timesteps,
            "miss_per_step": float(r.cost_per_step.mean()),
            "violation_rate": r.violation_rate,
            "energy_ratio": float(np.mean(r.metrics["energy_j"])) / oracle_energy,
            "lambda": float(model.dual[1]),
            "eta": float(model.dual[0]),
        }
        if model.actor_average is not None:
            average, model.actor_average = model.actor_average, None  # the last iterate, for comparison
            r = evaluate_policy_with_cost(model, eval_env, 20, seed=10_000)
            model.actor_average = average
            point["miss_per_step_last"] = float(r.cost_per_step.mean())
            point["energy_ratio_last"] = float(np.mean(r.metrics["energy_j"])) / oracle_energy
        curve.append(point)
        print(point, flush=True)
    result = {
        "seed": seed,
        "timesteps": timesteps,
        **asdict(config),
        "entity_actor": config.entity_dims is not None,
        "oracle_miss_per_step": float(oracle.cost_per_step.mean()),
        "oracle_energy_j": oracle_energy,
        "threshold": model.thresholds.tolist(),
        "curve": curve,
        "wall_s": update_time,
        "updates_per_s_incl_env": updates / update_time,
    }
    out.mkdir(parents=True, exist_ok=True)
    tag = "_Tinf" if config.infinite_horizon_threshold else ""
    tag += "" if config.episode_length is None else f"_T{config.episode_length}"
    tag += "_entity" if config.entity_dims else ""
    tag += "" if config.gamma == 0.97 else f"_gamma{config.gamma:g}"
    tag += "" if config.cost_value_baseline is None else f"_base{config.cost_value_baseline:g}"
    tag += "" if config.policy_average is None else f"_avg{config.policy_average:g}"
    if config.entity_critic_hidden is not None:
        tag += "_ecritic" + "x".join(map(str, config.entity_critic_hidden))
    tag += "" if config.min_std is None else f"_minstd{config.min_std:g}"
    (out / f"cvpo_fed_seed{seed}{tag}.json").write_text(json.dumps(result, indent=2))


def updates_per_second(config: CVPOConfig, n: int = 300) -> float:
    """Gradient updates per second of ``config``'s networks on a warm buffer (no env steps)."""
    th.set_num_threads(1)
    model = CVPO(gym.make(ENV), replace(config, learning_starts=2_000, updates_per_step=1e-9), seed=0)
    model.learn(2_000)
    start = time.perf_counter()
    for _ in range(n):
        model._update()
    return n / (time.perf_counter() - start)


def plot(paths: list[Path], out: Path, lagrangian: Path | None = None) -> None:
    """Deterministic-evaluation curves of every CVPO run; with ``lagrangian`` (the JSON of
    ``benchmarks/lagrangian_fed.py``) the PPO-Lagrangian / PID-Lagrangian runs' final evaluations beside
    them, at their step count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_e, ax_m) = plt.subplots(1, 2, figsize=(11, 5.2))
    colours: dict[str, str] = {}
    for path in paths:
        data = json.loads(path.read_text())
        steps = [p["steps"] / 1000 for p in data["curve"]]
        setting = "CVPO"
        if data.get("episode_length"):
            setting += f", T = {data['episode_length']:,}"
        if data.get("infinite_horizon_threshold"):
            setting += ", T = inf"
        if data.get("entity_actor"):
            setting += ", per-device actor"
        if data.get("gamma", 0.97) != 0.97:
            setting += f", gamma {data['gamma']:g}"
        if data.get("cost_value_baseline") is not None:
            setting += ", cost baseline"
        if data.get("policy_average") is not None:
            setting += ", averaged actor"
        if data.get("entity_critic_hidden") is not None:
            setting += ", per-device critics"
        if data.get("min_std") is not None:
            setting += f", std >= {data['min_std']:g}"
        new = setting not in colours
        colour = colours.setdefault(setting, f"C{len(colours)}")
        style = {"color": colour, "marker": "os^dv"[data["seed"] % 5], "label": setting if new else None}
        ax_e.plot(steps, [p["energy_ratio"] for p in data["curve"]], **style)
        ax_m.plot(steps, [p["miss_per_step"] for p in data["curve"]], **style)
    if lagrangian is not None:
        rows = json.loads(lagrangian.read_text())["rows"]
        traces = json.loads(lagrangian.read_text())["traces"]
        for variant, marker in (("gradient", "s"), ("pid", "^")):
            mine = [r for r in rows if r["variant"] == variant]
            at = [traces[f"{variant}-{r['seed']}"]["steps"][-1] / 1000 for r in mine]
            name = {"gradient": "PPO-Lagrangian", "pid": "PID-Lagrangian"}[variant]
            ax_e.scatter(at, [r["energy_ratio"] for r in mine], marker=marker, color="k", label=name)
            ax_m.scatter(at, [r["eval_miss_per_step"] for r in mine], marker=marker, color="k", label=name)
    ax_e.axhline(1.15, color="g", ls="--", label="target 1.15")
    ax_m.axhline(0.05, color="k", ls="--", label="limit 0.05")
    ax_e.set(xlabel="env steps (thousands)", ylabel="energy / oracle (deterministic)")
    ax_m.set(xlabel="env steps (thousands)", ylabel="deadline misses per step")
    handles, labels = ax_e.get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=2, fontsize=8, title="marker = seed", title_fontsize=8
    )
    fig.tight_layout(rect=(0, 0.27, 1, 1))
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--eval-every", type=int, default=20_000)
    parser.add_argument("--updates-per-step", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument(
        "--episode-length", type=int, default=None, help="T of the Q threshold (default: the env's)"
    )
    parser.add_argument("--plot", type=Path, nargs="*")
    parser.add_argument("--lagrangian", type=Path, help="with --plot: its JSON beside")
    parser.add_argument(
        "--speed", action="store_true", help="only measure gradient updates per second (of the config flags)"
    )
    parser.add_argument(
        "--infinite-horizon-threshold", action="store_true", help="CVPOConfig.infinite_horizon_threshold"
    )
    parser.add_argument(
        "--entity-actor", action="store_true", help="one actor MLP shared by the devices (entity_dims=(3, 1))"
    )
    parser.add_argument("--gamma", type=float, default=0.97, help="CVPOConfig.gamma")
    parser.add_argument("--cost-value-baseline", type=float, help="CVPOConfig.cost_value_baseline")
    parser.add_argument("--policy-average", type=float, help="CVPOConfig.policy_average")
    parser.add_argument(
        "--entity-critic-hidden",
        type=int,
        nargs="+",
        help="CVPOConfig.entity_critic_hidden (with --entity-actor)",
    )
    parser.add_argument("--min-std", type=float, help="CVPOConfig.min_std")
    args = parser.parse_args()
    config = CVPOConfig(
        updates_per_step=args.updates_per_step,
        episode_length=args.episode_length,
        infinite_horizon_threshold=args.infinite_horizon_threshold,
        entity_dims=(3, 1) if args.entity_actor else None,  # per device: 3 observed times, 1 share
        gamma=args.gamma,
        cost_value_baseline=args.cost_value_baseline,
        policy_average=args.policy_average,
        entity_critic_hidden=None if args.entity_critic_hidden is None else tuple(args.entity_critic_hidden),
        min_std=args.min_std,
    )
    if args.speed:
        print(
            f"CVPO gradient updates per second (batch 256, K 32, 1 thread; entity_dims {config.entity_dims}, "
            f"entity_critic_hidden {config.entity_critic_hidden}): {updates_per_second(config):.1f}"
        )
    elif args.plot:
        plot(args.plot, args.out / "cvpo_fed.png", args.lagrangian)
    else:
        run(args.seed, args.timesteps, args.eval_every, args.out, config)


if __name__ == "__main__":
    main()
