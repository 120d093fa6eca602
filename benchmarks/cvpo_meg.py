"""CVPO on MEG-v0: learning curve of the normalised score and both average costs against their limits.

Every --eval-every env steps the deterministic policy is evaluated on 20 seeded episodes (seeds
10000-10019) beside the oracle and the random policy; with --policy-average the averaged actor is
evaluated, and the last iterate too (``*_last`` keys). Normalised score = (R - R_random) /
(R_oracle - R_random); targets (issue 4): both costs within 2 % of their limits, score >= 0.9.

    python benchmarks/cvpo_meg.py --seed 0 [--timesteps 60000] [--episode-length T]
        [--infinite-horizon-threshold] [--normalize-costs] [--gamma G] [--estep-kl EPS]
        [--cost-value-baseline RATE] [--policy-average RATE] [--min-std S]
    python benchmarks/cvpo_meg.py --seed 0 --agent ppo-lagrangian --timesteps 200000   # beside it
    python benchmarks/cvpo_meg.py --plot benchmarks/out/cvpo_meg_seed*.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import (
    OraclePolicy,
    PPOLagrangian,
    RandomPolicy,
    evaluate_policy_with_cost,
    load_hyperparams,
)
from edgegen.agents.cvpo import CVPO, CVPOConfig

ENV = "edgegen/MEG-v0"
RECIPE = load_hyperparams("ppo-lag", ENV)[0]  # the PPO family's recipe (agents/hyperparams)
EVAL_SEED, EVAL_EPISODES = 10_000, 20


def run(
    seed: int, timesteps: int, eval_every: int, out: Path, config: CVPOConfig, agent: str = "cvpo"
) -> None:
    """Train ``agent`` (CVPO with ``config``, or a PPO-Lagrangian variant) and write its learning curve."""
    th.set_num_threads(1)
    eval_env = gym.make(ENV)
    limits = eval_env.unwrapped.cost_spec.limits_array
    oracle = evaluate_policy_with_cost(OraclePolicy(eval_env), eval_env, EVAL_EPISODES, seed=EVAL_SEED)
    random = evaluate_policy_with_cost(
        RandomPolicy(eval_env.action_space, seed=0), eval_env, EVAL_EPISODES, seed=EVAL_SEED
    )
    r_oracle, r_random = oracle.summary()["reward"], random.summary()["reward"]
    if agent == "cvpo":
        model = CVPO(gym.make(ENV), config, seed=seed)
        learn, lambdas = model.learn, lambda: model.dual[1:].tolist()
    else:  # train_agent.py's PPO settings, 4 envs
        variant = {"ppo-lagrangian": "gradient", "pid-lagrangian": "pid"}[agent]
        vec = make_vec_env(ENV, n_envs=4, seed=seed)
        model = PPOLagrangian("MlpPolicy", vec, lagrangian=variant, seed=seed, **RECIPE)
        learn = partial(model.learn, reset_num_timesteps=False)
        lambdas = lambda: np.asarray(model.lambdas).tolist()  # noqa: E731
    curve, wall = [], 0.0
    while model.num_timesteps < timesteps:
        start = time.perf_counter()
        learn(eval_every)
        wall += time.perf_counter() - start
        r = evaluate_policy_with_cost(model, eval_env, EVAL_EPISODES, seed=EVAL_SEED)
        point = {
            "steps": model.num_timesteps,
            "score": (r.summary()["reward"] - r_random) / (r_oracle - r_random),
            "cost_over_limit": (r.cost_per_step.mean(axis=0) / limits).tolist(),
            "lambda": lambdas(),
        }
        if getattr(model, "actor_average", None) is not None:
            average, model.actor_average = model.actor_average, None  # the last iterate, for comparison
            r = evaluate_policy_with_cost(model, eval_env, EVAL_EPISODES, seed=EVAL_SEED)
            model.actor_average = average
            point["score_last"] = (r.summary()["reward"] - r_random) / (r_oracle - r_random)
            point["cost_over_limit_last"] = (r.cost_per_step.mean(axis=0) / limits).tolist()
        curve.append(point)
        print(point, flush=True)
    result = {
        "agent": agent,
        "seed": seed,
        "timesteps": timesteps,
        **asdict(config),
        "oracle_reward": r_oracle,
        "random_reward": r_random,
        "oracle_cost_over_limit": (oracle.cost_per_step.mean(axis=0) / limits).tolist(),
        "curve": curve,
        "wall_s": wall,
    }
    out.mkdir(parents=True, exist_ok=True)
    c = config
    tag = "_Tinf" if c.infinite_horizon_threshold else ""
    tag += "" if c.episode_length is None else f"_T{c.episode_length}"
    tag += "_norm" if c.normalize_costs else ""
    tag += "" if c.estep_dual_max == 20.0 else f"_cap{c.estep_dual_max:g}"
    tag += "" if c.estep_kl == 0.02 else f"_kl{c.estep_kl:g}"
    tag += "" if c.gamma == 0.97 else f"_gamma{c.gamma:g}"
    tag += "" if c.cost_value_baseline is None else f"_base{c.cost_value_baseline:g}"
    tag += "" if c.policy_average is None else f"_avg{c.policy_average:g}"
    tag += "" if c.min_std is None else f"_minstd{c.min_std:g}"
    if agent != "cvpo":
        tag = f"_{agent}"
    (out / f"cvpo_meg_seed{seed}{tag}.json").write_text(json.dumps(result, indent=2))


def plot(paths: list[Path], out: Path) -> None:
    """Score and both costs of every run; one colour per setting, one marker per seed.

    With CVPO runs the axes zoom on them (the PPO runs' longer and wider curves are cut; BENCHMARKS.md
    has their numbers).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_l, ax_e) = plt.subplots(1, 3, figsize=(14, 3.8))
    colours: dict[str, str] = {}
    cvpo_steps = [0.0]
    for path in paths:
        data = json.loads(path.read_text())
        steps = [p["steps"] / 1000 for p in data["curve"]]
        agent = data.get("agent", "cvpo")
        cvpo_steps += steps if agent == "cvpo" else []
        setting = agent
        if agent == "cvpo" and (
            data.get("infinite_horizon_threshold") or (data.get("episode_length") or 0) > 1e4
        ):
            setting += ", thr d/(1-gamma)"
        if data.get("gamma", 0.97) != 0.97:
            setting += f", gamma {data['gamma']:g}"
        if data.get("cost_value_baseline") is not None:
            setting += ", cost baseline"
        if data.get("policy_average") is not None:
            setting += ", averaged actor"
        if data.get("min_std") is not None:
            setting += f", std >= {data['min_std']:g}"
        new = setting not in colours
        colour = colours.setdefault(setting, f"C{len(colours)}")
        style = {"color": colour, "marker": "os^dv"[data["seed"] % 5], "label": setting if new else None}
        ax_s.plot(steps, [p["score"] for p in data["curve"]], **style)
        ax_l.plot(steps, [p["cost_over_limit"][0] for p in data["curve"]], **style)
        ax_e.plot(steps, [p["cost_over_limit"][1] for p in data["curve"]], **style)
    ax_s.axhline(0.9, color="g", ls="--", label="target 0.9")
    if max(cvpo_steps) > 0:
        for ax, low, high in ((ax_s, 0.3, 1.5), (ax_l, 0.93, 1.12), (ax_e, 0.93, 1.12)):
            ax.set(xlim=(0, max(cvpo_steps) * 1.08), ylim=(low, high))
    for ax in (ax_l, ax_e):
        ax.axhspan(0.98, 1.02, color="g", alpha=0.2, label="limit +-2 %")
    ax_s.set(xlabel="env steps (thousands)", ylabel="normalised score (random 0, oracle 1)")
    ax_l.set(xlabel="env steps (thousands)", ylabel="average latency / limit")
    ax_e.set(xlabel="env steps (thousands)", ylabel="average energy / limit")
    ax_s.legend(fontsize=7, title="marker = seed", title_fontsize=7)
    ax_l.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, default=60_000)
    parser.add_argument("--eval-every", type=int, default=10_000)
    parser.add_argument("--updates-per-step", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    parser.add_argument("--plot", type=Path, nargs="*")
    parser.add_argument(
        "--episode-length",
        type=int,
        default=None,
        help="T of the Q threshold (large: infinite-horizon threshold)",
    )
    parser.add_argument("--normalize-costs", action="store_true", help="CVPOConfig.normalize_costs")
    parser.add_argument("--agent", choices=["cvpo", "ppo-lagrangian", "pid-lagrangian"], default="cvpo")
    parser.add_argument("--estep-dual-max", type=float, default=20.0, help="CVPOConfig.estep_dual_max")
    parser.add_argument("--estep-kl", type=float, default=0.02, help="CVPOConfig.estep_kl")
    parser.add_argument("--gamma", type=float, default=0.97, help="CVPOConfig.gamma")
    parser.add_argument("--cost-value-baseline", type=float, help="CVPOConfig.cost_value_baseline")
    parser.add_argument("--policy-average", type=float, help="CVPOConfig.policy_average")
    parser.add_argument("--min-std", type=float, help="CVPOConfig.min_std")
    parser.add_argument(
        "--infinite-horizon-threshold", action="store_true", help="CVPOConfig.infinite_horizon_threshold"
    )
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, args.out / "cvpo_meg.png")
    else:
        config = CVPOConfig(
            updates_per_step=args.updates_per_step,
            episode_length=args.episode_length,
            normalize_costs=args.normalize_costs,
            infinite_horizon_threshold=args.infinite_horizon_threshold,
            estep_dual_max=args.estep_dual_max,
            estep_kl=args.estep_kl,
            gamma=args.gamma,
            cost_value_baseline=args.cost_value_baseline,
            policy_average=args.policy_average,
            min_std=args.min_std,
        )
        run(args.seed, args.timesteps, args.eval_every, args.out, config, args.agent)


if __name__ == "__main__":
    main()
