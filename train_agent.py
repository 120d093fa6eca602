"""edgegen-train: train, evaluate and benchmark constrained-RL agents against the envs' oracles.

    python train_agent.py train                # the main job: PPO-PID on FedDiffusion-v0, then a table
    python train_agent.py train --env edgegen/FedDiffusion-v0 --algo ppo-lag --timesteps 200000 --seed 0
    python train_agent.py evaluate --checkpoint runs/<run>/model.zip --episodes 20
    python train_agent.py benchmark --env edgegen/FedDiffusion-v0 \
        --policies oracle,random,equal_split,runs/<run>/model.zip --out bench/
    python train_agent.py suite --envs edgegen/MEG-v0 --algos ppo-lag cvpo --seeds 100 101 102 --out suite/

A run folder ``runs/<env>__<algo>__<seed>__<time>/`` holds ``config.json``, tensorboard events (``tb_1``),
``checkpoints/``, ``model.zip`` and ``evaluation.json``.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import dataclasses
import inspect
import io
import json
import math
import platform
import signal
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
import tyro
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import LinearSchedule

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import (
    CVPO,
    BaselinePolicy,
    OraclePolicy,
    PPOLagrangian,
    RandomPolicy,
    evaluate_policy_with_cost,
    load_hyperparams,
)
from edgegen.agents.cvpo import cvpo_settings
from edgegen.agents.evaluation import EvaluationResult, evaluate_oracle_cached
from edgegen.agents.hyperparams import split_env_wrapper
from edgegen.envs.cmdp import CostSpec, get_cost_spec


class CLIError(Exception):
    """A user mistake: reported as one line, exit status 2."""


class Interrupted(Exception):
    """Training stopped by Ctrl-C or SIGTERM after saving the run: one line, exit status 130."""


# ALGO LOGIC: the algorithms a run can use, with the settings that differ between them.
ALGOS: dict[str, tuple[type[BaseAlgorithm] | type[CVPO], dict[str, Any]]] = {
    "cvpo": (CVPO, {}),
    "ppo-lag": (PPOLagrangian, {"lagrangian": "gradient"}),
    "ppo-pid": (PPOLagrangian, {"lagrangian": "pid"}),
    "ppo": (PPO, {}),
}


DEFAULT_TIMESTEPS = 300_000
"""Env steps of a ``train`` run when ``--timesteps`` is not given (the main job)."""


def _key_values(what: str, parse: Callable[[list[str]], dict[str, Any]] | None = None) -> Any:
    """A tyro spec: ``K=V ...`` on the command line, a dict in code (``parse_key_values``)."""
    return tyro.constructors.PrimitiveConstructorSpec(
        nargs="*",
        metavar="K=V",
        instance_from_str=parse or (lambda items: parse_key_values(items, what)),
        is_instance=lambda value: isinstance(value, dict),
        str_from_instance=lambda value: [f"{k}={v!r}" for k, v in value.items()],
    )


# The command line is generated from these dataclasses (tyro): a field is a flag, its docstring the
# flag's help, its default the default. Adding an option is adding a field.
@dataclass
class TrainArgs:
    """Train an agent on an env (its recipe applied), then evaluate it against the oracle and random."""

    env: str = "edgegen/FedDiffusion-v0"
    """registered env id"""
    algo: str = "ppo-pid"
    """one of: cvpo, ppo-lag (gradient multipliers), ppo-pid (PID multipliers), ppo (unconstrained)"""
    timesteps: int | None = None
    """env steps in all (default 300000; with --resume: the run's own target unless given)"""
    seed: int = 0
    """seed of the envs, the networks and the evaluation"""
    env_kwargs: Annotated[dict[str, Any], _key_values("--env-kwargs")] = field(default_factory=dict)
    """keyword arguments for gymnasium.make (config fields of the env), as K=V"""
    cost_limits: Annotated[
        dict[str, float], _key_values("--cost-limit", parse_cost_limits), tyro.conf.arg(name="cost-limit")
    ] = field(default_factory=dict)
    """per-step limits that replace the env's defaults, by cost name"""
    algo_kwargs: Annotated[dict[str, Any], _key_values("--algo-kwargs")] = field(default_factory=dict)
    """over the env's recipe: CVPOConfig fields and policy_kwargs (cvpo; a network key may come flat),
    or keyword arguments of PPO / PPOLagrangian"""
    n_envs: int = 4
    """parallel envs (DummyVecEnv)"""
    logdir: str = "runs"
    """parent folder of the run folder"""
    eval_episodes: int = 20
    """seeded episodes of the final evaluation"""
    checkpoint_every: int = 50_000
    """save a checkpoint every this many env steps"""
    progress_bar: bool = True
    """show a progress bar"""
    resume: str | None = None
    """a run folder to continue (its config.json fixes everything but --timesteps)"""


@dataclass
class EvaluateArgs:
    """Evaluate a checkpoint on the env and config it was trained with, beside the oracle."""

    checkpoint: Path
    """model.zip (or a checkpoint) inside a run folder"""
    episodes: int = 20
    """seeded evaluation episodes"""
    seed: int = 10_000
    """seed of the first episode"""
    allow_pickle: bool = False
    """load stable-baselines3 checkpoints with SB3's own loader, which unpickles parts of the file and so
    runs any code it holds: only for files you trust (by default only the weights are read)"""


@dataclass
class BenchmarkArgs:
    """Compare policies and checkpoints on one env; Markdown and CSV tables and plots."""

    env: str
    """registered env id"""
    policies: str
    """comma-separated: oracle,random,<baseline>,<checkpoint.zip>"""
    episodes: int = 20
    """seeded evaluation episodes"""
    seed: int = 10_000
    """seed of the first episode"""
    out: Path = Path("benchmark_out")
    """output folder"""
    env_kwargs: Annotated[dict[str, Any], _key_values("--env-kwargs")] = field(default_factory=dict)
    """keyword arguments for gymnasium.make, as K=V"""
    force: bool = False
    """replace the results already in --out"""
    allow_pickle: bool = False
    """as for evaluate: SB3's own loader, for files you trust"""


@dataclass
class RunResult:
    """What ``train`` and ``resume`` return: the run folder, the trained model and its evaluation."""

    run_dir: Path
    model: Any
    evaluation: dict[str, Any]
    """the content of ``run_dir/evaluation.json``: per policy its summary and per-episode numbers"""


# ---------------------------------------------------------------------------------------------------
# Helpers: parsing, env checks, policies by name.
# ---------------------------------------------------------------------------------------------------
def parse_key_values(items: Sequence[str], what: str) -> dict[str, Any]:
    """``["a=1", "b=x"]`` -> ``{"a": 1, "b": "x"}``; values are Python literals where they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or not raw:
            raise CLIError(f"bad {what} entry {item!r}: expected key=value")
        try:
            out[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            try:
                out[key] = float(raw)  # nan, inf: numbers that literal_eval does not read
            except ValueError:
                out[key] = raw
    return out


def parse_cost_limits(items: Sequence[str]) -> dict[str, float]:
    """``NAME=VALUE`` limits; CLIError unless every value is a finite number > 0."""
    limits = {}
    for name, value in parse_key_values(items, "--cost-limit").items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or value <= 0:
            raise CLIError(f"--cost-limit {name}={value!r}: the limit must be a finite number > 0")
        limits[name] = float(value)
    return limits


def _unique_run_dir(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``, ... if a run started in the same second took it."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        run_dir = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise CLIError(f"cannot create a run folder under {parent}: 999 runs named {name} exist")


# Set by other arguments: --seed, --algo, --cost-limit, the run folder.
_RESERVED_ALGO_KWARGS = {"policy", "env", "seed", "tensorboard_log", "verbose", "lagrangian", "cost_limits"}


def recipe_settings(
    algo: str, env_id: str, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The run's algorithm settings, and where each came from.

    The env's recipe (``agents/hyperparams/<algo>.yml``) with the user's ``--algo-kwargs`` on top;
    ``policy_kwargs`` merge key by key (sources as ``policy_kwargs.<key>``).
    """
    recipe, source = load_hyperparams(algo, env_id)
    merged = {**recipe, **overrides}
    sources = {**dict.fromkeys(recipe, source), **dict.fromkeys(overrides, "--algo-kwargs")}
    nested = (recipe.get("policy_kwargs") or {}, overrides.get("policy_kwargs") or {})
    if all(isinstance(d, dict) for d in nested) and any(nested):
        merged["policy_kwargs"] = {**nested[0], **nested[1]}
        sources.pop("policy_kwargs", None)
        for where, part in zip((source, "--algo-kwargs"), nested, strict=True):
            sources.update({f"policy_kwargs.{key}": where for key in part})
    return merged, sources


def algo_config(algo: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The algorithm's keyword arguments of a run; CLIError on a bad ``--algo-kwargs``.

    CVPO's come as ``config`` (a CVPOConfig) and ``policy_kwargs`` (:func:`agents.cvpo.cvpo_settings`).
    """
    reserved = sorted(set(kwargs) & _RESERVED_ALGO_KWARGS)
    if reserved:
        raise CLIError(f"--algo-kwargs cannot set {reserved}: use --seed, --algo or --cost-limit")
    if algo == "cvpo":
        try:  # YAML and JSON give lists where CVPOConfig keeps tuples
            config, policy_kwargs = cvpo_settings(kwargs)
            return {"config": config, "policy_kwargs": policy_kwargs}
        except (TypeError, ValueError) as exc:
            raise CLIError(f"bad --algo-kwargs for cvpo: {exc}") from None
    cls = ALGOS[algo][0]
    allowed = {*inspect.signature(cls.__init__).parameters, *inspect.signature(PPO.__init__).parameters}
    allowed -= {"self", "kwargs"} | _RESERVED_ALGO_KWARGS
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise CLIError(f"unknown --algo-kwargs {unknown} for {algo}; it takes {sorted(allowed)}")
    return {**ALGOS[algo][1], **kwargs, **linear_schedules(kwargs)}


_SCHEDULED = ("learning_rate", "clip_range")


def linear_schedules(kwargs: dict[str, Any]) -> dict[str, LinearSchedule]:
    """SB3 schedules for rl-baselines3-zoo's ``"lin_<value>"`` in ``learning_rate`` / ``clip_range``.

    From the value at the start of training linearly to 0 at its end (SB3's ``LinearSchedule``);
    CLIError if malformed.
    """
    schedules = {}
    for key in _SCHEDULED:
        value = kwargs.get(key)
        if not isinstance(value, str):
            continue
        start = None
        if value.startswith("lin_"):
            with contextlib.suppress(ValueError):
                start = float(value[len("lin_") :])
        if start is None or not 0 < start < math.inf:
            raise CLIError(
                f"bad --algo-kwargs {key}={value!r}: give a number or 'lin_<finite number > 0>' "
                "(e.g. lin_3e-4)"
            )
        schedules[key] = LinearSchedule(start, 0.0, 1.0)
    return schedules


def check_env_id(env_id: str) -> None:
    """Raise a CLIError listing the registered edgegen ids unless ``env_id`` is one of them."""
    if env_id not in gym.registry or not env_id.startswith("edgegen/"):
        known = sorted(i for i in gym.registry if i.startswith("edgegen/"))
        raise CLIError(f"unknown env id {env_id!r}; registered edgegen envs: {', '.join(known)}")


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """``gymnasium.make`` with a one-line error for bad config values or an env without costs."""
    check_env_id(env_id)
    try:
        env = gym.make(env_id, **env_kwargs)
        get_cost_spec(env)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"cannot use {env_id} with {env_kwargs}: {exc}") from None
    return env


def load_run_config(checkpoint: Path) -> dict[str, Any]:
    """The ``config.json`` of the run that wrote ``checkpoint`` (beside it, or one folder up)."""
    if not checkpoint.is_file():
        raise CLIError(f"checkpoint {checkpoint} does not exist")
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        path = folder / "config.json"
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise CLIError(f"run config {path} is not valid JSON ({exc})") from None
            missing = [
                key
                for key in ("env", "algo", "env_kwargs")
                if not isinstance(config, dict) or key not in config
            ]
            if missing:
                raise CLIError(f"run config {path} lacks {missing}: is it a train_agent.py run folder?")
            if config["algo"] not in ALGOS:
                raise CLIError(f"run config {path} names algo {config['algo']!r}; known: {', '.join(ALGOS)}")
            return config
    raise CLIError(f"no config.json beside {checkpoint} or in its parent: is it a train_agent.py checkpoint?")


def load_model(
    checkpoint: Path,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    allow_pickle: bool = False,
) -> tuple[BaseAlgorithm | CVPO, dict[str, Any]]:
    """Load a checkpoint and its run config; refuse a checkpoint trained on another env or config.

    Nothing is unpickled unless ``allow_pickle`` (``--allow-pickle``): see :func:`_load_sb3_weights_only`.
    """
    config = load_run_config(checkpoint)
    if env_id is not None and config["env"] != env_id:
        raise CLIError(f"checkpoint {checkpoint} was trained on {config['env']}, not {env_id}")
    if env_kwargs is not None and config["env_kwargs"] != env_kwargs:
        raise CLIError(
            f"checkpoint {checkpoint} was trained with env kwargs {config['env_kwargs']}, not {env_kwargs}"
        )
    algo_cls = ALGOS[config["algo"]][0]
    try:
        model: Any
        if allow_pickle:
            model = algo_cls.load(checkpoint, device="cpu")
        else:
            model = _load_sb3_weights_only(checkpoint, config)
        return model, config
    except CLIError:
        raise
    except Exception as exc:  # a corrupt or foreign zip: SB3 and torch raise many kinds
        raise CLIError(f"cannot load checkpoint {checkpoint} ({type(exc).__name__}: {exc})") from None


def _load_sb3_weights_only(checkpoint: Path, config: dict[str, Any]) -> BaseAlgorithm:
    """An SB3 checkpoint's policy without unpickling anything.

    SB3's ``load`` unpickles the ``":serialized:"`` entries of the zip's ``data`` file (spaces,
    schedules) with cloudpickle, which runs any code a crafted file holds. Instead the model is rebuilt
    from the run's ``config.json`` (algo, its keyword arguments, the env) and only the policy's
    weights are read, with ``torch.load(weights_only=True)``, which refuses anything but tensors.
    """
    with zipfile.ZipFile(checkpoint) as archive:
        if "policy.pth" not in archive.namelist():
            raise CLIError(f"checkpoint {checkpoint} has no policy.pth: is it a stable-baselines3 zip?")
        weights = archive.read("policy.pth")
    try:
        with warnings.catch_warnings():  # SB3 saves with pickle protocol 4; the restricted reader copes
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's unpickler refuses anything but tensors and containers
        raise CLIError(
            f"checkpoint {checkpoint}: policy.pth holds more than tensors ({type(exc).__name__}); "
            "refusing to unpickle it. If you trust the file, pass --allow-pickle"
        ) from None
    env: gym.Env = make_env(config["env"], config["env_kwargs"])
    # the settings the run trained with (recorded since recipes exist), else the old runs' overrides
    old_runs = {**config.get("ppo_kwargs", {}), **config.get("algo_kwargs", {})}
    recorded, wrapper = split_env_wrapper(config.get("algo_settings", old_runs))
    settings = algo_config(config["algo"], recorded)
    algo_cls: Any = ALGOS[config["algo"]][0]
    if wrapper is not None:  # the layout and cost spec the agent saw
        env = wrapper(env)
    elif algo_cls in (PPOLagrangian, CVPO):
        if "cost_limits_in_force" in config:
            limits = list(config["cost_limits_in_force"].values())
        else:  # suite jobs before the sixteenth session recorded only the overrides of the env's limits
            spec, overrides = get_cost_spec(env), config.get("cost_limits", {})
            limits = [overrides.get(name, limit) for name, limit in zip(spec.names, spec.limits, strict=True)]
        settings = {**settings, "cost_limits": limits}
    model = algo_cls("MlpPolicy", env, seed=config.get("seed", 0), verbose=0, device="cpu", **settings)
    try:
        model.policy.load_state_dict(state)
    except RuntimeError:
        raise CLIError(
            f"checkpoint {checkpoint} does not fit {config['env']} with {config['env_kwargs']} (its "
            "config.json): its network has other input or output sizes"
        ) from None
    return model


def policy_by_name(
    name: str, env: gym.Env, seed: int, env_kwargs: dict[str, Any], allow_pickle: bool = False
) -> Any:
    """``oracle``, ``random``, a baseline of the env, or a checkpoint path."""
    if name == "oracle":
        return OraclePolicy(env)
    if name == "random":
        return RandomPolicy(env.action_space, seed)
    if name in getattr(env.unwrapped, "baseline_names", ()):
        return BaselinePolicy(env, name)
    if name.endswith(".zip") or Path(name).exists():
        return load_model(Path(name), env.spec.id if env.spec else None, env_kwargs, allow_pickle)[0]
    baselines = ", ".join(getattr(env.unwrapped, "baseline_names", ()))
    raise CLIError(
        f"unknown policy {name!r}: use oracle, random, a baseline ({baselines}) or a .zip checkpoint"
    )


# ---------------------------------------------------------------------------------------------------
# Evaluation tables.
# ---------------------------------------------------------------------------------------------------
def compare(
    policies: dict[str, Any], env: gym.Env, episodes: int, seed: int, progress_bar: bool | None = None
) -> dict[str, EvaluationResult]:
    """Evaluate every policy on the same seeded episodes of ``env`` (a bar per policy on a terminal).

    The oracle's episodes come from the cache when this env config and episode block were evaluated
    before (``agents.evaluation.evaluate_oracle_cached``).
    """
    bar = sys.stderr.isatty() if progress_bar is None else progress_bar
    return {
        name: (
            evaluate_oracle_cached(p, env, episodes, seed=seed, progress_bar=bar)
            if isinstance(p, OraclePolicy)
            else evaluate_policy_with_cost(p, env, episodes, seed=seed, progress_bar=bar)
        )
        for name, p in policies.items()
    }


def table_rows(results: dict[str, EvaluationResult]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: reward, each cost against its limit, violation rate, ratios to the oracle."""
    spec = next(iter(results.values())).cost_spec
    oracle = results.get("oracle")
    header = ["policy", "reward"]
    header += [
        f"{n} per step [{u}] (limit {lim:g})"
        for n, u, lim in zip(spec.names, spec.units, spec.limits, strict=True)
    ]
    header += ["violation rate", "reward / oracle"]
    random = results.get("random")
    if oracle and random:  # 0 at the random policy, 1 at the oracle
        header.append("normalised score")
    has_energy = all("energy_j" in r.metrics for r in results.values())
    if has_energy:
        header += ["energy per episode [J]", "energy / oracle"]
    rows = []
    for name, r in results.items():
        s = r.summary()
        row = [name, f"{s['reward']:.3f}"]
        row += [f"{s[f'cost_per_step/{n}']:.4g}" for n in spec.names]
        row.append(f"{s['violation_rate']:.2f}")
        row.append(f"{s['reward'] / oracle.summary()['reward']:.3f}" if oracle else "n/a")
        if oracle and random:
            low, high = random.summary()["reward"], oracle.summary()["reward"]
            row.append(f"{(s['reward'] - low) / (high - low):.3f}")
        if has_energy:
            energy = float(np.mean(r.metrics["energy_j"]))
            row.append(f"{energy:.1f}")
            row.append(f"{energy / float(np.mean(oracle.metrics['energy_j'])):.3f}" if oracle else "n/a")
        rows.append(row)
    return header, rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_json(results: dict[str, EvaluationResult], episodes: int, seed: int) -> dict[str, Any]:
    """Summaries plus per-episode values, for evaluation.json."""
    return {
        "episodes": episodes,
        "seed": seed,
        "policies": {
            name: {
                "summary": r.summary(),
                "episode_rewards": r.rewards.tolist(),
                "episode_costs": r.costs.tolist(),
                "episode_lengths": r.lengths.tolist(),
            }
            for name, r in results.items()
        },
    }


# ---------------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------------
def build_model(args: TrainArgs) -> tuple[Any, CostSpec, dict[str, Any], dict[str, str]]:
    """Validate ``args`` and build the model on its vector env (no folder is made).

    Returns the model, the cost spec in force, the merged algorithm settings and their sources.
    """
    if args.algo not in ALGOS:
        raise CLIError(f"unknown algo {args.algo!r}; choose one of {', '.join(ALGOS)}")
    for name, value in (
        ("timesteps", DEFAULT_TIMESTEPS if args.timesteps is None else args.timesteps),
        ("n_envs", args.n_envs),
        ("eval_episodes", args.eval_episodes),
        ("checkpoint_every", args.checkpoint_every),
    ):
        if value < 1:
            raise CLIError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        raise CLIError(f"--seed must be >= 0, got {args.seed}")
    merged, sources = recipe_settings(args.algo, args.env, args.algo_kwargs)
    try:
        algo_settings, wrapper = split_env_wrapper(merged)
    except ValueError as exc:
        raise CLIError(f"bad env_wrapper for {args.algo}: {exc}") from None
    settings = algo_config(args.algo, algo_settings)
    probe = make_env(args.env, args.env_kwargs)
    spec = get_cost_spec(probe)
    unknown = sorted(set(args.cost_limits) - set(spec.names))
    if unknown:
        raise CLIError(f"unknown cost name(s) {unknown} in --cost-limit; {args.env} has {list(spec.names)}")
    if wrapper is not None and args.cost_limits:
        # the wrapper sees the env's own limits; --cost-limit would only reach the agent
        raise CLIError(
            f"--cost-limit with the recipe's env_wrapper {wrapper.__name__}: set the env's limits instead "
            "(--env-kwargs <name>_limit=VALUE)"
        )
    spec = spec.with_limits(args.cost_limits) if args.cost_limits else spec
    vec_env = make_vec_env(
        args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=args.env_kwargs, wrapper_class=wrapper
    )
    # the agent's limits: the --cost-limit ones on raw costs, else the (possibly wrapped) env's
    limits = list(spec.limits) if wrapper is None else None
    algo_cls: Any = ALGOS[args.algo][0]
    model: Any
    try:
        if algo_cls in (PPOLagrangian, CVPO):
            settings = {**settings, "cost_limits": limits}
        model = algo_cls("MlpPolicy", vec_env, seed=args.seed, verbose=0, **settings)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CLIError(f"bad --algo-kwargs {args.algo_kwargs} for {args.algo}: {exc}") from None
    return model, spec, merged, sources


def run_config(
    args: TrainArgs, spec: CostSpec, merged: dict[str, Any], sources: dict[str, str]
) -> dict[str, Any]:
    """A run's ``config.json`` record, as ``train`` and the suite's jobs write it.

    Its arguments, the cost limits in force and the merged settings with their sources: what
    :func:`load_model` rebuilds the model from.
    """
    return {
        **asdict(args),
        "cost_limits_in_force": dict(zip(spec.names, spec.limits, strict=True)),
        "algo_settings": merged,
        "algo_settings_source": sources,
    }


def train(args: TrainArgs) -> RunResult:
    """Train one agent, save it with its config, evaluate it against the oracle and random.

    With ``args.resume`` set, continue that run instead (:func:`resume`).
    """
    if args.resume is not None:
        return resume(Path(args.resume), args.timesteps, args.progress_bar)
    if args.timesteps is None:
        args = dataclasses.replace(args, timesteps=DEFAULT_TIMESTEPS)
    if Path(args.logdir).exists() and not Path(args.logdir).is_dir():
        raise CLIError(f"--logdir {args.logdir} is a file, not a folder")
    # The model is built before the run folder exists, so that a bad --algo-kwargs value (which SB3
    # or CVPO rejects) leaves nothing half-made behind.
    model, spec, merged, sources = build_model(args)

    # TRY NOT TO MODIFY: a run names itself, stores its config, then trains.
    run_name = f"{args.env.split('/')[-1]}__{args.algo}__{args.seed}__{int(time.time())}"
    run_dir = _unique_run_dir(Path(args.logdir), run_name)
    model.tensorboard_log = str(run_dir)
    config = {**run_config(args, spec, merged, sources), "versions": _versions()}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))

    steps = DEFAULT_TIMESTEPS if args.timesteps is None else args.timesteps
    return _learn_and_evaluate(model, args, run_dir, config, steps)


def resume(run_dir: Path, timesteps: int | None, progress_bar: bool) -> RunResult:
    """Continue an interrupted (or finished) run to ``timesteps`` env steps in all.

    The run's ``config.json`` fixes the env, algo and settings; the model, its optimiser state and
    multipliers come from the run's ``model.zip`` (written at the interrupt), or else its newest
    checkpoint; CVPO's replay buffer from ``replay_buffer.pkl``. New episodes start from fresh resets.
    SB3's loader unpickles parts of ``model.zip``: resume only run folders this tool wrote.
    """
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise CLIError(f"--resume {run_dir}: no config.json there; is it a run folder?")
    config = load_run_config(config_path)
    fields_ = {f.name for f in dataclasses.fields(TrainArgs)}
    args = TrainArgs(**{k: v for k, v in config.items() if k in fields_})
    args.timesteps = timesteps if timesteps is not None else (args.timesteps or DEFAULT_TIMESTEPS)
    args.progress_bar, args.resume = progress_bar, str(run_dir)
    candidates = [run_dir / "model.zip"] if (run_dir / "model.zip").is_file() else []
    candidates += sorted(
        (run_dir / "checkpoints").glob("model_*_steps.zip"), key=lambda p: int(p.stem.split("_")[1])
    )[::-1]
    if not candidates:
        raise CLIError(f"--resume {run_dir}: no model.zip and no checkpoint to continue from")
    vec_env = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed, env_kwargs=args.env_kwargs)
    algo_cls: Any = ALGOS[args.algo][0]
    try:
        model: Any = algo_cls.load(candidates[0], env=vec_env, device="cpu")
    except Exception as exc:  # SB3 and CVPO raise several kinds for a damaged file
        raise CLIError(f"--resume: cannot load {candidates[0]} ({type(exc).__name__}: {exc})") from None
    if algo_cls is CVPO and (run_dir / "replay_buffer.pkl").is_file():
        model.load_replay_buffer(run_dir / "replay_buffer.pkl")
    remaining = args.timesteps - model.num_timesteps
    if remaining < 1:
        raise CLIError(
            f"--resume {run_dir}: the run has {model.num_timesteps} steps already; "
            "ask for more with --timesteps"
        )
    model.tensorboard_log = str(run_dir)
    print(f"resuming {run_dir} from {candidates[0].name} at {model.num_timesteps} steps, {remaining} to go")
    return _learn_and_evaluate(model, args, run_dir, {**config, "timesteps": args.timesteps}, remaining)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt inside the block, so both save the run the same way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. a Ray worker's thread): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _learn_and_evaluate(model: Any, args: TrainArgs, run_dir: Path, config: dict, steps: int) -> RunResult:
    """Learn ``steps`` more env steps (saving the model on Ctrl-C / SIGTERM), then evaluate."""
    algo_cls = ALGOS[args.algo][0]
    checkpoints = CheckpointCallback(
        max(args.checkpoint_every // args.n_envs, 1), str(run_dir / "checkpoints"), name_prefix="model"
    )
    start = time.perf_counter()
    learn_kwargs: dict[str, Any] = {"tb_log_name": "tb"}
    if args.resume:
        learn_kwargs["reset_num_timesteps"] = False
    interrupted = False
    try:
        with _terminate_as_interrupt():
            model.learn(steps, callback=checkpoints, progress_bar=args.progress_bar, **learn_kwargs)
    except KeyboardInterrupt:
        interrupted = True
    train_time_s = time.perf_counter() - start
    model.save(run_dir / "model.zip")
    if algo_cls is CVPO and getattr(model, "replay_buffer", None) is not None:
        model.save_replay_buffer(run_dir / "replay_buffer.pkl")
    if interrupted:
        raise Interrupted(
            f"interrupted at {model.num_timesteps} of {args.timesteps} steps; saved {run_dir / 'model.zip'}. "
            f"Resume with: python train_agent.py train --resume {run_dir} --timesteps {args.timesteps}"
        )
    _log_config(model.logger.dir, config)

    env = make_env(args.env, args.env_kwargs)
    policies = {
        args.algo: model,
        "oracle": OraclePolicy(env),
        "random": RandomPolicy(env.action_space, args.seed),
    }
    results = compare(
        policies, env, args.eval_episodes, seed=10_000 + args.seed, progress_bar=args.progress_bar
    )
    header, rows = table_rows(results)
    report = {
        **results_json(results, args.eval_episodes, 10_000 + args.seed),
        "train_time_s": train_time_s,
        "selected_step": getattr(model, "selected_step", None),  # keep_best's snapshot, if any
        "selected_shift": getattr(model, "selected_shift", None),  # its calibrated shift, if any
    }
    (run_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{args.env}, {args.algo}, {args.timesteps} steps in {train_time_s:.0f} s, "
        f"evaluated on {args.eval_episodes} seeded episodes (deterministic actions):\n"
    )
    print(markdown(header, rows))
    print(f"\nrun folder: {run_dir}")
    return RunResult(run_dir, model, report)


def evaluate(checkpoint: Path, episodes: int, seed: int, allow_pickle: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint on the env and config it was trained with, beside the oracle."""
    if episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise CLIError(f"--seed must be >= 0, got {seed}")
    model, config = load_model(checkpoint, allow_pickle=allow_pickle)
    env = make_env(config["env"], config["env_kwargs"])
    trained_on = getattr(model, "observation_space", None)
    shape = trained_on.shape if trained_on is not None else getattr(model, "_obs_shape", None)
    if shape is not None and tuple(shape) != env.observation_space.shape:
        raise CLIError(
            f"checkpoint {checkpoint} takes observations of shape {tuple(shape)}, but {config['env']} "
            f"with {config['env_kwargs']} (its config.json) gives {env.observation_space.shape}"
        )
    results = compare({config["algo"]: model, "oracle": OraclePolicy(env)}, env, episodes, seed)
    print(markdown(*table_rows(results)))
    return results_json(results, episodes, seed)


def benchmark(
    env_id: str,
    names: list[str],
    episodes: int,
    seed: int,
    out: Path,
    env_kwargs: dict[str, Any],
    force: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """Compare named policies and checkpoints; write a Markdown and CSV table and PNG plots."""
    if episodes < 1:
        raise CLIError(f"--episodes must be >= 1, got {episodes}")
    if seed < 0:
        raise CLIError(f"--seed must be >= 0, got {seed}")
    if not names:
        raise CLIError("--policies names no policy: give e.g. oracle,random,<checkpoint.zip>")
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CLIError(f"--out {out} already holds results; pass --force to replace them")
    env = make_env(env_id, env_kwargs)
    policies = {name: policy_by_name(name, env, seed, env_kwargs, allow_pickle) for name in names}
    results = compare(policies, env, episodes, seed)
    header, rows = table_rows(results)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(header, rows)
    (out / "benchmark.md").write_text(f"{env_id}, {episodes} seeded episodes from seed {seed}\n\n{table}\n")
    with (out / "benchmark.csv").open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    (out / "benchmark.json").write_text(json.dumps(results_json(results, episodes, seed), indent=2))
    plot_costs(results, out / "cost_vs_limit.png")
    runs = [
        Path(n).parent if Path(n).parent.name != "checkpoints" else Path(n).parent.parent
        for n in names
        if n.endswith(".zip")
    ]
    if runs:
        plot_learning_curves(runs, get_cost_spec(env).names, out / "learning_curves.png")
    print(table)
    print(f"\nwritten to {out}")
    return out


# ---------------------------------------------------------------------------------------------------
# Plots (matplotlib, Agg backend: no display needed).
# ---------------------------------------------------------------------------------------------------
def plot_costs(results: dict[str, EvaluationResult], path: Path) -> None:
    """Per-episode average cost per step of every policy against each limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = next(iter(results.values())).cost_spec
    fig, axes = plt.subplots(1, spec.num_costs, figsize=(5 * spec.num_costs, 3.5), squeeze=False)
    for i, ax in enumerate(axes[0]):
        for name, r in results.items():
            ax.plot(r.cost_per_step[:, i], marker="o", label=name)
        ax.axhline(spec.limits[i], color="k", linestyle="--", label="limit")
        ax.set_xlabel("episode")
        ax.set_ylabel(f"{spec.names[i]} per step [{spec.units[i]}]")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def read_scalars(run_dir: Path, tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one tensorboard scalar from every event file under ``run_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps, values = [], []
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            for e in acc.Scalars(tag):
                steps.append(e.step)
                values.append(e.value)
    return np.array(steps), np.array(values)


def plot_learning_curves(run_dirs: list[Path], cost_names: Sequence[str], path: Path) -> None:
    """Episode reward and cost per step against env steps, from the runs' tensorboard events."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tags = ["rollout/ep_rew_mean", *[f"rollout/cost_per_step/{n}" for n in cost_names]]
    fig, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags), 3.5), squeeze=False)
    for ax, tag in zip(axes[0], tags, strict=True):
        for run in run_dirs:
            steps, values = read_scalars(run, tag)
            if steps.size:
                ax.plot(steps, values, marker=".", label=run.name)
        ax.set_xlabel("env steps")
        ax.set_title(tag, fontsize=9)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
    }


def _log_config(log_dir: str, config: dict[str, Any]) -> None:
    """Store the config with the tensorboard logs as a Markdown table (TEXT tab), as CleanRL does."""
    from torch.utils.tensorboard import SummaryWriter

    rows = "\n".join(f"|{k}|{v}|" for k, v in config.items())
    with SummaryWriter(log_dir) as writer:
        writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}")


# ---------------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------------
COMMANDS: dict[str, Callable[..., Any]] = {
    "train": TrainArgs,
    "evaluate": EvaluateArgs,
    "benchmark": BenchmarkArgs,
}


def _suite_args() -> Callable[..., Any]:
    from edgegen.agents.suite import SuiteArgs

    return SuiteArgs


def parse_args(argv: Sequence[str]) -> Any:
    """The command's dataclass, filled from ``argv`` (tyro builds the parser and ``--help``)."""
    commands: dict[str, Callable[..., Any]] = {**COMMANDS, "suite": _suite_args()}
    return tyro.extras.subcommand_cli_from_dict(
        commands, prog="edgegen-train", description=__doc__.splitlines()[0], args=list(argv)
    )


def suite(args: Any, argv: Sequence[str]) -> None:
    """``suite``: envs x algorithms x seeds on Ray Tune, scored by docs/protocol.md."""
    from edgegen.envs.extras import require_extra

    require_extra("suite", "ray", "rliable")
    from edgegen.agents.suite import run_suite

    try:
        run_suite(args, command="edgegen-train " + " ".join(argv))
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def run_command(args: Any, argv: Sequence[str]) -> Any:
    """Run the command whose dataclass ``args`` is."""
    if isinstance(args, TrainArgs):
        return train(args)
    if isinstance(args, EvaluateArgs):
        return evaluate(args.checkpoint, args.episodes, args.seed, args.allow_pickle)
    if isinstance(args, BenchmarkArgs):
        names = [p for p in args.policies.split(",") if p]
        return benchmark(
            args.env,
            names,
            args.episodes,
            args.seed,
            args.out,
            args.env_kwargs,
            args.force,
            args.allow_pickle,
        )
    return suite(args, argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python train_agent.py`` and ``edgegen-train``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if not argv:  # a bare command prints help; it does not start a 300k-step run
            with contextlib.suppress(SystemExit):
                parse_args(["--help"])
            return 0
        run_command(parse_args(argv), argv)
    except CLIError as exc:
        print(f"edgegen-train: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"edgegen-train: {exc}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
