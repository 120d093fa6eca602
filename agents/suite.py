"""The benchmark suite: envs x algorithms x seeds on Ray Tune, scored by the protocol.

``run_suite(SuiteArgs(...))`` (``edgegen-train suite ...`` on the command line) turns every
(env, algorithm, seed) into a training job and every (env, baseline) into an evaluation job, runs them
as Ray Tune trials (local Ray by default, an existing cluster with ``address``), then scores them by
``agents.protocol`` and writes into ``out``:

- ``results.json`` / ``results.csv``: one row per env x policy x seed (``env``, ``policy``, ``seed``,
  ``feasible``, ``optimality_gap`` with its interval, ``objective``, ``costs`` per name with ``mean``,
  ``ci_high``, ``limit``);
- ``leaderboard.md``: per env, policies ranked feasible-first, gaps aggregated over seeds with rliable;
- ``learning_curves.png``, ``costs.png``, ``gaps.png``;
- ``run_info.json``: command, the commit when the run started (and the jobs' own, where any differs),
  date, machine;
- ``jobs/<job>/``: each job's ``result.json`` (its per-episode numbers, the commit it started at) and,
  for training jobs, the model, its config and its learning curve. A job whose ``result.json`` exists
  is not run again, so an interrupted suite resumes where it stopped, and the oracle's evaluation
  (minutes on SFLAM-v0) is computed once per env config and evaluation block and reused.

With ``tuning`` the same machinery chooses recipes: the training seeds must come from the protocol's
tuning block and the evaluation episodes from its tuning block, and ``variants`` (a YAML file of named
settings over each algorithm's recipe) trains every variant as a policy of its own
(``<algo>+<variant>``), so one table ranks them. A recipe is never chosen on the reporting seeds.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegen.agents.protocol import (
    EVAL_SEED,
    TRAIN_SEEDS,
    TUNING_EVAL_SEED,
    TUNING_TRAIN_SEEDS,
    aggregate_gaps,
    cost_checks,
    gap_and_interval,
    headline,
    mean_interval,
    rank_key,
)

__all__ = ["SuiteArgs", "plan_jobs", "run_suite", "score_jobs"]

DEFAULT_ENVS = ("edgegen/FedDiffusion-v0", "edgegen/MEG-v0", "edgegen/SFLAM-v0")
DEFAULT_ALGOS = ("cvpo", "ppo-lag", "ppo-pid")
BASELINES = ("oracle", "random")  # plus each env's own baseline_names


@dataclass
class SuiteArgs:
    """Envs x algorithms x seeds as Ray Tune trials, scored by docs/protocol.md; tables and plots."""

    envs: list[str] = field(default_factory=lambda: list(DEFAULT_ENVS))
    """env ids"""
    algos: list[str] = field(default_factory=lambda: list(DEFAULT_ALGOS))
    """algorithms (cvpo, ppo-lag, ppo-pid, ppo), each with its env recipe"""
    seeds: list[int] = field(default_factory=lambda: list(TRAIN_SEEDS[:3]))
    """training seeds (the protocol's reporting block starts at 100)"""
    timesteps: int | None = None
    """env steps per training run (default: each env's protocol budget: FedDiffusion-v0 and SFLAM-v0
    100000, MEG-v0 60000)"""
    out: str = "suite"
    """output folder (made absolute)"""
    address: str | None = None
    """address of a running Ray cluster (host:port); local Ray when unset"""
    eval_episodes: int = 20
    """evaluation episodes per policy, seeds from the protocol's EVAL_SEED"""
    baselines: bool = True
    """also evaluate the oracle, random and the env's heuristics"""
    n_envs: int = 4
    """parallel envs per training run"""
    report_every: int = 2048
    """env steps between the metrics a trial reports to Tune"""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves per trial"""
    run: bool = True
    """run the unfinished jobs (--no-run: only score the jobs already finished in --out)"""
    tuning: bool = False
    """choose recipes, not report: seeds from the protocol's tuning block (0-99) and evaluation
    episodes from its tuning block (10000 on); the tables say so"""
    variants: str | None = None
    """YAML file mapping variant names to settings over each algorithm's recipe ({g05: {gamma: 0.5}});
    each trains as the policy <algo>+<name>. Needs --tuning"""
    keep_rows: str | None = None
    """a scored leaderboard's results.json (e.g. docs/leaderboard/results.json) whose rows stay where
    this run scores no row of the same env, policy and seed: a partial rerun updates a published
    leaderboard. Each env this run scores needs its oracle job, equal to the kept oracle row (gaps are
    paired with its episodes); no learning curves are drawn (they need every job)"""


def eval_seed(args: SuiteArgs) -> int:
    """The first evaluation episode's seed: the protocol's reporting block, or its tuning block."""
    return TUNING_EVAL_SEED if args.tuning else EVAL_SEED


def load_variants(path: str | None) -> list[tuple[str | None, dict[str, Any]]]:
    """``[(name, settings), ...]`` from a variants file; ``[(None, {})]`` (the recipes) without one."""
    if path is None:
        return [(None, {})]
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"variants file {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict | None) for v in data.values()):
        raise ValueError(f"variants file {path} must map names to settings ({{name: {{key: value}}}})")
    bad = [name for name in data if not str(name).replace("_", "").replace("-", "").isalnum()]
    if bad:
        raise ValueError(f"variants file {path}: names must be letters, digits, - and _, got {bad}")
    return [(str(name), dict(settings or {})) for name, settings in data.items()]


def _env_short(env_id: str) -> str:
    return env_id.split("/")[-1]


def _oracle_key(env_id: str, env_kwargs: dict[str, Any], episodes: int, seed: int = EVAL_SEED) -> str:
    """The oracle job's name: keyed by env config and evaluation block, shared by suites in ``out``."""
    blob = json.dumps([env_id, env_kwargs, seed, episodes], sort_keys=True)
    return f"{_env_short(env_id)}__oracle__{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def plan_jobs(args: SuiteArgs) -> list[dict[str, Any]]:
    """Every job of the suite: training runs, then baseline evaluations (one per env and policy)."""
    import gymnasium as gym

    import edgegen  # noqa: F401  (registers the edgegen ids)
    from edgegen.agents.hyperparams import recipe_algos

    unknown = sorted(set(args.algos) - set(recipe_algos()))
    if unknown:
        raise ValueError(f"algos: unknown {unknown}; choose from {list(recipe_algos())}")
    if any(seed < 0 for seed in args.seeds):
        raise ValueError(f"seeds must be >= 0, got {args.seeds}")
    if args.variants is not None and not args.tuning:
        raise ValueError("variants are for choosing recipes: pass --tuning (and tuning seeds)")
    outside = sorted(set(args.seeds) - set(TUNING_TRAIN_SEEDS))
    if args.tuning and outside:
        raise ValueError(
            f"--tuning trains on the protocol's tuning seeds "
            f"{TUNING_TRAIN_SEEDS[0]}-{TUNING_TRAIN_SEEDS[-1]} only; got {outside}"
        )
    variants = load_variants(args.variants)
    jobs = []
    for env_id in args.envs:
        headline(env_id)  # a ValueError now rather than after training
        for algo in args.algos:
            for variant, settings in variants:
                policy = algo if variant is None else f"{algo}+{variant}"
                for seed in args.seeds:
                    jobs.append(
                        {
                            "kind": "train",
                            "env": env_id,
                            "policy": policy,
                            "algo": algo,
                            "algo_kwargs": settings,
                            "seed": int(seed),
                            "name": f"{_env_short(env_id)}__{policy}__{seed}",
                            "timesteps": args.timesteps or headline(env_id).timesteps,
                        }
                    )
        if args.baselines:
            names = (*BASELINES, *getattr(gym.make(env_id).unwrapped, "baseline_names", ()))
            for name in names:
                job_name = (
                    _oracle_key(env_id, {}, args.eval_episodes, eval_seed(args))
                    if name == "oracle"
                    else f"{_env_short(env_id)}__{name}"
                )
                jobs.append(
                    {"kind": "baseline", "env": env_id, "policy": name, "seed": None, "name": job_name}
                )
    return jobs


def job_finished(out: Path, job: dict[str, Any]) -> bool:
    """Whether ``job`` has a result in ``out`` for its budget.

    A training run finished for another budget (its ``config.json`` says how many steps it was
    asked for) is moved aside to ``jobs/<name>__<steps>steps`` (kept, not deleted) and counts as not
    finished, so that the same command with another ``--timesteps`` reruns it.
    """
    folder = out / "jobs" / job["name"]
    if not (folder / "result.json").is_file():
        return False
    if job["kind"] != "train" or "timesteps" not in job:
        return True
    asked = json.loads((folder / "config.json").read_text()).get("timesteps")
    if asked == job["timesteps"]:
        return True
    aside = folder.with_name(f"{job['name']}__{asked}steps")
    if aside.exists():
        raise ValueError(f"cannot move {folder} aside: {aside} exists already")
    os.replace(folder, aside)
    print(f"suite: {job['name']} was trained for {asked} steps, not {job['timesteps']}: kept as {aside.name}")
    return False


# ---------------------------------------------------------------------------------------------------
# One job (a Ray Tune trial).
# ---------------------------------------------------------------------------------------------------
def _episode_numbers(result: Any, metric: str) -> dict[str, Any]:
    return {
        "objective": (result.metrics[metric] / result.lengths).tolist(),
        "cost_per_step": result.cost_per_step.tolist(),
        "cost_names": list(result.cost_spec.names),
        "limits": list(result.cost_spec.limits),
        "rewards": result.rewards.tolist(),
        "lengths": result.lengths.tolist(),
    }


def _curve_callback(report_every: int, report: Any) -> Any:
    """An SB3 callback that logs and reports the recent episodes (costs in the env's units) every so often."""
    from stable_baselines3.common.callbacks import BaseCallback

    class CurveCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.curve: list[dict[str, float]] = []
            self._ep: dict[str, np.ndarray] = {}
            self._recent: list[tuple[float, np.ndarray]] = []
            self._next = report_every

        def _on_step(self) -> bool:
            rewards = np.asarray(self.locals["rewards"], dtype=np.float64)
            dones = np.asarray(self.locals["dones"], dtype=bool)
            # the env's own units, also under a recipe's NormalizeCosts (the plots draw the env's limits)
            infos = self.locals["infos"]
            costs = np.array([info.get("costs_raw", info["costs"]) for info in infos], dtype=np.float64)
            if not self._ep:
                self._ep = {
                    "r": np.zeros(rewards.size),
                    "c": np.zeros_like(costs),
                    "n": np.zeros(rewards.size),
                }
            self._ep["r"] += rewards
            self._ep["c"] += costs
            self._ep["n"] += 1
            for i in np.flatnonzero(dones):
                self._recent.append((float(self._ep["r"][i]), self._ep["c"][i] / self._ep["n"][i]))
                self._ep["r"][i], self._ep["c"][i], self._ep["n"][i] = 0.0, 0.0, 0.0
            if self.num_timesteps >= self._next and self._recent:
                self._next += report_every
                point = {
                    "timesteps": float(self.num_timesteps),
                    "episode_reward": float(np.mean([r for r, _ in self._recent])),
                }
                for j, c in enumerate(np.mean([c for _, c in self._recent], axis=0)):
                    point[f"cost_per_step_{j}"] = float(c)
                self.curve.append(point)
                self._recent = []
                report(point)
            return True

    return CurveCallback()


def run_job(
    job: dict[str, Any], args: SuiteArgs, report: Any = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run one job into ``out/jobs/<name>/result.json`` (or read it if it is there) and return it.

    ``report`` receives metrics during training and at the end (Tune's ``tune.report``); ``extra``
    is stored in the result (the trial's Ray node).
    """
    import gymnasium as gym

    import edgegen  # noqa: F401  (registers the edgegen ids)
    from edgegen import train_agent as ta
    from edgegen.agents import BaselinePolicy, OraclePolicy, RandomPolicy, evaluate_policy_with_cost

    report = report or (lambda metrics: None)
    folder = Path(args.out) / "jobs" / job["name"]
    done = folder / "result.json"
    if done.is_file():
        result = json.loads(done.read_text())
        report({"timesteps": float(result.get("timesteps", 0)), "reused": 1.0})
        return result
    folder.mkdir(parents=True, exist_ok=True)
    metric = headline(job["env"]).metric
    start = time.perf_counter()
    out: dict[str, Any] = {**job, "timesteps": 0, "curve": [], "code": code_version(), **(extra or {})}
    if job["kind"] == "train":
        steps = int(job.get("timesteps") or args.timesteps or headline(job["env"]).timesteps)
        train_args = ta.TrainArgs(
            env=job["env"], algo=job.get("algo", job["policy"]), timesteps=steps, seed=job["seed"],
            algo_kwargs=job.get("algo_kwargs", {}), n_envs=args.n_envs, progress_bar=False,
            logdir=str(folder),
        )  # fmt: skip
        model, spec, merged, sources = ta.build_model(train_args)
        callback = _curve_callback(args.report_every, report)
        model.learn(steps, callback=callback)
        model.save(folder / "model.zip")
        # the same record as `edgegen-train train` writes, so that `edgegen-train evaluate` loads it
        config = ta.run_config(train_args, spec, merged, sources)
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        out.update(
            timesteps=int(model.num_timesteps),
            curve=callback.curve,
            train_time_s=time.perf_counter() - start,
            selected_step=getattr(model, "selected_step", None),  # keep_best's snapshot, if any
            selected_shift=getattr(model, "selected_shift", None),  # its calibrated shift, if any
        )
        policy: Any = model
        env = ta.make_env(job["env"], {})
    else:
        env = gym.make(job["env"])
        name = job["policy"]
        policy = (
            OraclePolicy(env)
            if name == "oracle"
            else RandomPolicy(env.action_space, 0)
            if name == "random"
            else BaselinePolicy(env, name)
        )
    result = evaluate_policy_with_cost(
        policy, env, args.eval_episodes, seed=eval_seed(args), metric_keys=(metric,), progress_bar=False
    )
    out.update(_episode_numbers(result, metric), eval_seed=eval_seed(args))
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, done)  # a job is done only once its whole result is on disk
    report({"timesteps": float(out["timesteps"]), "objective": float(np.mean(out["objective"]))})
    return out


def _trainable(config: dict[str, Any]) -> None:
    import ray
    from ray import tune

    node = {"ray_node_id": ray.get_runtime_context().get_node_id()}
    run_job(config["job"], SuiteArgs(**config["args"]), report=tune.report, extra=node)


# ---------------------------------------------------------------------------------------------------
# Scoring and outputs.
# ---------------------------------------------------------------------------------------------------
def score_jobs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Protocol rows: every job's objective and gap against its env's oracle, costs and feasibility."""
    oracles = {r["env"]: r for r in results if r["policy"] == "oracle"}
    rows = []
    for r in results:
        head = headline(r["env"])
        objective = np.asarray(r["objective"])
        costs = cost_checks(np.asarray(r["cost_per_step"]), tuple(r["cost_names"]), tuple(r["limits"]))
        row: dict[str, Any] = {
            "env": r["env"],
            "policy": r["policy"],
            "seed": r["seed"],
            "kind": r["kind"],
            "timesteps": r["timesteps"],
            "objective": mean_interval(objective)[0],
            "objective_unit": head.unit,
            "gap_kind": head.gap,
            "feasible": all(c["feasible"] for c in costs.values()),
            "costs": costs,
        }
        oracle = oracles.get(r["env"])
        if oracle is None:
            row.update(optimality_gap=None, gap_low=None, gap_high=None)  # no oracle job: no gap
        else:
            gap, low, high = gap_and_interval(objective, np.asarray(oracle["objective"]), head.gap)
            row.update(optimality_gap=gap, gap_low=low, gap_high=high)
        rows.append(row)
    return sorted(rows, key=lambda row: (row["env"], *rank_key(row)))


def _csv_rows(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    names = sorted({n for row in rows for n in row["costs"]})
    header = [
        "env",
        "policy",
        "seed",
        "timesteps",
        "feasible",
        "optimality_gap",
        "gap_low",
        "gap_high",
        "objective",
    ]
    header += [f"{n}_{k}" for n in names for k in ("mean", "ci_high", "limit")]
    table = []
    for row in rows:
        line = [row[k] for k in header[:9]]
        for n in names:
            c = row["costs"].get(n, {})
            line += [c.get("mean", ""), c.get("ci_high", ""), c.get("limit", "")]
        table.append(line)
    return header, table


def code_version() -> dict[str, Any]:
    """``{"commit", "dirty"}`` of the checkout this module runs from (both None in an install)."""
    import subprocess

    here = Path(__file__).resolve().parent
    commit, dirty = None, None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True
        )
        dirty = bool(status.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"commit": commit, "dirty": dirty}


def provenance(command: str) -> dict[str, Any]:
    """Command, edgegen version, git commit of the checkout (None in an install), date and machine.

    Taken when the run starts: a commit made while its jobs train is not the code they ran.
    """
    import platform

    import edgegen

    return {
        "command": command,
        "edgegen_version": edgegen.__version__,
        **code_version(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }


def _version_label(version: dict[str, Any]) -> str:
    """``"<commit>"``, or ``"<commit> (with uncommitted changes)"`` for a dirty checkout."""
    return f"{version.get('commit')}{' (with uncommitted changes)' if version.get('dirty') else ''}"


def _job_versions(results: list[dict[str, Any]], info: dict[str, Any]) -> list[str]:
    """The code versions the jobs started at, when any differs from the run's."""
    versions = {
        _version_label(r["code"])
        for r in results
        if isinstance(r.get("code"), dict) and r["code"].get("commit")
    }
    return sorted(versions) if versions - {_version_label(info)} else []


def leaderboard(rows: list[dict[str, Any]], command: str, info: dict[str, Any] | None = None) -> str:
    """The Markdown leaderboard: per env, policies ranked feasible-first; gaps as IQM over seeds."""
    info = info or {}
    at = f" at commit {_version_label(info)}" if info.get("commit") else ""
    if info.get("job_commits"):
        at += f" (its jobs started at {', '.join(info['job_commits'])})"
    when = f" on {info['date']} ({info['machine']})" if "date" in info else ""
    title = "# edgegen-gym leaderboard"
    if info.get("tuning"):
        title = (
            "# edgegen-gym tuning runs (the protocol's tuning seeds and episodes: for choosing recipes, "
            "not a leaderboard)"
        )
    lines = [
        title,
        "",
        f"Produced by `{command}`{at}{when}. Rules: docs/protocol.md. Gap: 0 at the oracle, larger is "
        "worse; a policy is feasible when the upper end of the 95 % interval of its mean cost per step is "
        "within every limit (+2 %). Infeasible policies rank below every feasible one, by their worst "
        "excess.",
    ]
    for env_id in sorted({r["env"] for r in rows}):
        env_rows = [r for r in rows if r["env"] == env_id]
        head = headline(env_id)
        by_policy: dict[str, list[dict[str, Any]]] = {}
        for r in env_rows:
            by_policy.setdefault(r["policy"], []).append(r)
        gaps = {
            p: np.array([[r["optimality_gap"]] for r in rs])
            for p, rs in by_policy.items()
            if all(r["optimality_gap"] is not None for r in rs)
        }
        agg = aggregate_gaps(gaps) if gaps else {}
        cost_names = list(env_rows[0]["costs"])
        limits = [env_rows[0]["costs"][n]["limit"] for n in cost_names]
        lines += [
            "",
            f"## {env_id}",
            "",
            f"Objective: {head.metric} per step [{head.unit}], gap {head.gap}. "
            "Gap: IQM over seeds [95 % bootstrap interval] (one seed: the paired 95 % t-interval).",
            "",
            "| rank | policy | steps | seeds | feasible | gap | objective | "
            + " | ".join(
                f"{n} mean (ci high) / limit {lim:g}" for n, lim in zip(cost_names, limits, strict=True)
            )
            + " |",
            "|" + "---|" * (7 + len(cost_names)),
        ]
        order = sorted(
            by_policy,
            key=lambda p: (
                0 if all(r["feasible"] for r in by_policy[p]) else 1,
                agg.get(p, {}).get("iqm", np.inf)
                if all(r["feasible"] for r in by_policy[p])
                else max(rank_key(r)[1] for r in by_policy[p] if not r["feasible"]),
            ),
        )
        for rank, p in enumerate(order, 1):
            rs = by_policy[p]
            if len(rs) > 1 and p in agg:
                gap = f"{agg[p]['iqm']:.4g} [{agg[p]['low']:.4g}, {agg[p]['high']:.4g}]"
            elif rs[0]["optimality_gap"] is not None:
                gap = f"{rs[0]['optimality_gap']:.4g} [{rs[0]['gap_low']:.4g}, {rs[0]['gap_high']:.4g}]"
            else:
                gap = "n/a (no oracle job)"
            cells = [
                f"{np.mean([r['costs'][n]['mean'] for r in rs]):.4g} "
                f"({max(r['costs'][n]['ci_high'] for r in rs):.4g})"
                for n in cost_names
            ]
            feasible = sum(r["feasible"] for r in rs)
            steps = max(r["timesteps"] for r in rs)
            lines.append(
                f"| {rank} | {p} | {steps} | {len(rs)} | {feasible}/{len(rs)} | {gap} | "
                f"{np.mean([r['objective'] for r in rs]):.4g} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def _plots(rows: list[dict[str, Any]], results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = sorted({r["env"] for r in rows})
    policies = sorted({r["policy"] for r in rows})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(policies)}

    # Learning curves: mean and 95 % band over seeds, per env (reward, then each cost against its limit)
    trained = [r for r in results if r["kind"] == "train" and r["curve"]]
    if trained:
        n_costs = max(len(r["cost_names"]) for r in trained)
        fig, axes = plt.subplots(1 + n_costs, len(env_ids), figsize=(4.2 * len(env_ids), 3 * (1 + n_costs)),
                                 squeeze=False)  # fmt: skip
        for col, env_id in enumerate(env_ids):
            for algo in sorted({r["policy"] for r in trained if r["env"] == env_id}):
                runs = [r for r in trained if r["env"] == env_id and r["policy"] == algo]
                length = min(len(r["curve"]) for r in runs)
                if length == 0:
                    continue
                steps = np.array([p["timesteps"] for p in runs[0]["curve"][:length]])
                keys = ["episode_reward"] + [f"cost_per_step_{j}" for j in range(len(runs[0]["cost_names"]))]
                for row, key in enumerate(keys):
                    values = np.array([[p[key] for p in r["curve"][:length]] for r in runs])
                    mean = values.mean(axis=0)
                    half = (
                        1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else 0 * mean
                    )
                    ax = axes[row, col]
                    ax.plot(steps, mean, color=colours[algo], label=algo)
                    ax.fill_between(steps, mean - half, mean + half, color=colours[algo], alpha=0.2)
                    if row > 0:
                        ax.axhline(runs[0]["limits"][row - 1], color="black", ls="--", lw=1)
                        ax.set_ylabel(f"{runs[0]['cost_names'][row - 1]} per step")
                    else:
                        ax.set_ylabel("episode reward")
                        ax.set_title(_env_short(env_id))
                    ax.set_xlabel("env steps")
        for ax in axes.flat:  # an env with fewer costs leaves its lower panels empty
            if not ax.has_data():
                ax.set_visible(False)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        fig.savefig(out / "learning_curves.png", dpi=110)
        plt.close(fig)

    # Cost per step against the limit, and the optimality gap, per policy with intervals
    for kind in ("costs", "gaps"):
        fig, axes = plt.subplots(1, len(env_ids), figsize=(4.2 * len(env_ids), 3.6), squeeze=False)
        for col, env_id in enumerate(env_ids):
            ax = axes[0, col]
            env_rows = [r for r in rows if r["env"] == env_id]
            names = sorted({r["policy"] for r in env_rows})
            for x, p in enumerate(names):
                rs = [r for r in env_rows if r["policy"] == p]
                if kind == "gaps":
                    rs = [r for r in rs if r["optimality_gap"] is not None]
                    ys = [r["optimality_gap"] for r in rs]
                    lows = [r["gap_low"] for r in rs]
                    highs = [r["gap_high"] for r in rs]
                else:
                    first = next(iter(rs[0]["costs"]))
                    ys = [r["costs"][first]["mean"] / r["costs"][first]["limit"] for r in rs]
                    lows = ys
                    highs = [r["costs"][first]["ci_high"] / r["costs"][first]["limit"] for r in rs]
                for j, (y, lo, hi) in enumerate(zip(ys, lows, highs, strict=True)):
                    xx = x + 0.15 * (j - (len(rs) - 1) / 2)
                    marker = "o" if rs[j]["feasible"] else "x"
                    ax.errorbar(xx, y, yerr=[[y - lo], [hi - y]], fmt=marker, color=colours[p], capsize=2)
            ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
            ax.set_title(_env_short(env_id))
            if kind == "gaps":
                ax.axhline(0.0, color="black", lw=1)
                ax.set_ylabel(f"optimality gap ({headline(env_id).gap})")
            else:
                ax.axhline(1.0, color="black", ls="--", lw=1)
                first = next(iter(env_rows[0]["costs"]))
                ax.set_ylabel(f"{first} per step / limit (x: infeasible)")
        fig.tight_layout()
        fig.savefig(out / f"{kind}.png", dpi=110)
        plt.close(fig)


def _row_key(row: dict[str, Any]) -> tuple[str, str, int | None]:
    return row["env"], row["policy"], row["seed"]


def merge_rows(kept: list[dict[str, Any]], rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """``rows`` plus the ``kept`` rows (from ``source``) of every (env, policy, seed) that ``rows`` lacks.

    A gap is paired with its env's oracle episodes, so each env in ``rows`` must hold its oracle row,
    and that row must score what the kept one does (same env, same evaluation episodes).
    """
    for env in sorted({r["env"] for r in rows}):
        new = next((r for r in rows if r["env"] == env and r["policy"] == "oracle"), None)
        old = next((r for r in kept if r["env"] == env and r["policy"] == "oracle"), None)
        if new is None:
            raise ValueError(
                f"keep_rows: this run scores {env} without its oracle job (run it with --baselines); the "
                f"gaps in {source} are paired with that oracle's episodes"
            )
        if old is not None and not np.isclose(new["objective"], old["objective"], rtol=1e-9, atol=0.0):
            raise ValueError(
                f"keep_rows: {env}'s oracle scores {new['objective']!r} here and {old['objective']!r} in "
                f"{source}: the env or the evaluation episodes differ; rerun every job of {env}"
            )
    fresh = {_row_key(r) for r in rows}
    merged = [r for r in kept if _row_key(r) not in fresh] + rows
    return sorted(merged, key=lambda row: (row["env"], *rank_key(row)))


def load_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a scored ``results.json``; ValueError naming the file if it is not one."""
    try:
        rows = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"keep_rows {path}: cannot read it ({exc})") from None
    needed = {"env", "policy", "seed", "objective", "feasible", "costs"}
    if not isinstance(rows, list) or not all(isinstance(r, dict) and needed <= r.keys() for r in rows):
        raise ValueError(
            f"keep_rows {path}: not a suite's results.json (a list of rows with {sorted(needed)})"
        )
    return rows


def write_outputs(
    results: list[dict[str, Any]],
    out: Path,
    command: str,
    keep_rows: str | None = None,
    info: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Score the jobs and write results.json, results.csv, leaderboard.md and the plots.

    With ``keep_rows`` (a scored results.json) its rows fill in what these jobs do not score
    (:func:`merge_rows`); the learning curves, which need every job's curve, are then not redrawn.
    ``info`` is the run's :func:`provenance`, taken when it started (now, if not given); the jobs'
    own code versions are listed beside it when any differs.
    """
    rows = score_jobs(results)
    if keep_rows is not None:
        rows = merge_rows(load_rows(keep_rows), rows, keep_rows)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    header, table = _csv_rows(rows)
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)
    info = dict(info) if info is not None else provenance(command)
    versions = _job_versions(results, info)
    if versions:
        info["job_commits"] = versions
    info["tuning"] = any(r.get("eval_seed") == TUNING_EVAL_SEED for r in results)
    if keep_rows is not None:
        info["kept_rows_from"] = keep_rows
    (out / "run_info.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "leaderboard.md").write_text(leaderboard(rows, command, info))
    _plots(rows, results if keep_rows is None else [], out)
    if keep_rows is not None:
        # an earlier scoring's curves would show this run's jobs only, beside every kept row
        (out / "learning_curves.png").unlink(missing_ok=True)
    return rows


def run_suite(args: SuiteArgs, command: str = "edgegen-train suite") -> list[dict[str, Any]]:
    """Run every job of the suite as a Ray Tune trial, then score and write the outputs."""
    from edgegen.envs.extras import require_extra

    require_extra("suite", "ray", "rliable")
    import ray
    from ray import tune

    if (args.timesteps is not None and args.timesteps < 1) or args.eval_episodes < 2:
        raise ValueError(
            f"timesteps must be >= 1 and eval_episodes >= 2 (an interval needs two), got "
            f"{args.timesteps} and {args.eval_episodes}"
        )
    out = Path(args.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} is a file, not a folder")
    if args.keep_rows is not None:
        load_rows(args.keep_rows)  # a bad file fails now, not after the jobs
    out.mkdir(parents=True, exist_ok=True)
    info = provenance(command)  # the code the jobs start from, before any commit made while they run
    args = SuiteArgs(**{**asdict(args), "out": str(out)})
    jobs = plan_jobs(args)
    todo = [j for j in jobs if not job_finished(out, j)]
    print(f"suite: {len(jobs)} jobs, {len(jobs) - len(todo)} done before, {len(todo)} to run -> {out}")
    if todo and not args.run:
        done = {j["name"] for j in jobs} - {j["name"] for j in todo}
        jobs = [j for j in jobs if j["name"] in done]
        print(f"suite: --no-run, scoring the {len(jobs)} finished jobs only")
        todo = []
    if todo:
        # "local": a fresh instance, never a stale address left in /tmp/ray by an earlier cluster
        address = args.address or "local"
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        try:
            tuner = tune.Tuner(
                tune.with_resources(_trainable, {"cpu": args.cpus_per_trial}),
                param_space={"job": tune.grid_search(todo), "args": asdict(args)},
                run_config=tune.RunConfig(
                    name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=str(out / "ray"), verbose=1
                ),
            )
            tuner.fit()
        finally:
            ray.shutdown()
    missing = [j["name"] for j in jobs if not (out / "jobs" / j["name"] / "result.json").is_file()]
    if missing:
        raise RuntimeError(
            f"{len(missing)} jobs did not finish ({missing[:5]}...); run the same command to resume"
        )
    results = [json.loads((out / "jobs" / j["name"] / "result.json").read_text()) for j in jobs]
    return write_outputs(results, out, command, args.keep_rows, info)
