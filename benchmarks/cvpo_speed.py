"""CPU seconds per training steps: this project's CVPO (shipped recipe) against FSRL's CVPO (defaults).

Each run is its own process with torch and BLAS on one thread (``OMP/OPENBLAS/MKL_NUM_THREADS=1``:
OpenBLAS's idle threads spin, and counted as CPU time they doubled an update's figure); the figure is
the process's CPU time (``time.process_time``) spent inside ``learn`` for the same number of env
steps, with the wall time beside it. This project's CVPO
runs as ``edgegen-train train --algo cvpo`` builds it (the env's recipe, 4 DummyVecEnv envs). FSRL's
``CVPOAgent`` runs at its defaults (``fsrl.config.cvpo_cfg.TrainCfg``: 20 training envs, 10 episodes
per collect, 0.2 updates per step, (128, 128) networks), in a DummyVectorEnv so that all its work
is in its own process, on ``info["cost"]`` (the edgegen envs' normalised cost, budget 1 per step, so
an episode's limit is its horizon).

FSRL 0.1.0 needs tianshou 0.5.1 and numpy < 2: it lives in a venv of its own, never in this
project's dependencies::

    python3 -m venv /tmp/fsrl && /tmp/fsrl/bin/pip install "numpy==1.26.4" "setuptools==80.*" \\
        torch==2.13.0 "fast-safe-rl==0.1.0" "tianshou==0.5.1" "gymnasium>=1.0,<1.3" "scipy<1.15" \\
        "cvxpy<1.7" && /tmp/fsrl/bin/pip install --no-deps -e .
    python benchmarks/cvpo_speed.py --fsrl-python /tmp/fsrl/bin/python [--steps 20000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ENVS = ("edgegen/FedDiffusion-v0", "edgegen/MEG-v0")


def ours(env_id: str, steps: int, seed: int) -> dict:
    """This project's CVPO at the env's recipe: CPU seconds in ``learn``."""
    import torch

    torch.set_num_threads(1)
    from edgegen import train_agent

    args = train_agent.TrainArgs(env=env_id, algo="cvpo", timesteps=steps, seed=seed, progress_bar=False)
    model, *_ = train_agent.build_model(args)
    start, wall = time.process_time(), time.perf_counter()
    model.learn(steps)
    return {
        "cpu_s": time.process_time() - start,
        "wall_s": time.perf_counter() - wall,
        "updates": int(model.num_updates),
        "steps": steps,
    }


def fsrl(env_id: str, steps: int, seed: int) -> dict:
    """FSRL's CVPOAgent at its default config: CPU seconds in ``learn``."""
    import gymnasium as gym
    from fsrl.agent import CVPOAgent
    from fsrl.config.cvpo_cfg import TrainCfg
    from tianshou.env import DummyVectorEnv

    import edgegen  # noqa: F401  (registers the edgegen ids)

    cfg = TrainCfg()
    env = gym.make(env_id)
    agent = CVPOAgent(
        env, cost_limit=float(env.spec.max_episode_steps), thread=1, seed=seed,
        estep_iter_num=cfg.estep_iter_num, estep_kl=cfg.estep_kl, sample_act_num=cfg.sample_act_num,
        mstep_iter_num=cfg.mstep_iter_num, gamma=cfg.gamma, n_step=cfg.n_step,
        hidden_sizes=cfg.hidden_sizes,
    )  # fmt: skip
    train_envs = DummyVectorEnv([lambda: gym.make(env_id) for _ in range(cfg.training_num)])
    epochs = max(1, steps // cfg.step_per_epoch)
    start, wall = time.process_time(), time.perf_counter()
    agent.learn(
        train_envs, None, epoch=epochs, episode_per_collect=cfg.episode_per_collect,
        step_per_epoch=steps // epochs, update_per_step=cfg.update_per_step, buffer_size=cfg.buffer_size,
        batch_size=cfg.batch_size, save_ckpt=False, verbose=False, show_progress=False,
    )  # fmt: skip
    return {"cpu_s": time.process_time() - start, "wall_s": time.perf_counter() - wall, "steps": steps}


def _worker(kind: str, env_id: str, steps: int, seed: int) -> None:
    result = (ours if kind == "ours" else fsrl)(env_id, steps, seed)
    print("RESULT " + json.dumps(result), flush=True)


def _run(python: str, kind: str, env_id: str, steps: int, seed: int) -> dict:
    argv = [python, __file__, "--worker", kind, env_id, "--steps", str(steps), "--seed", str(seed)]
    one_thread = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **one_thread})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} on {env_id} failed:\n{proc.stderr[-3000:]}")
    print(f"{kind} {env_id}: {lines[-1]}", file=sys.stderr, flush=True)
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsrl-python", required=True, help="python of a venv with FSRL 0.1.0")
    parser.add_argument("--envs", nargs="+", default=list(ENVS))
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each agent, alternating; the table gives medians"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    print(
        f"{args.steps} env steps per run, torch and BLAS on 1 thread, CPU (wall) seconds in learn "
        f"(a process each); median of {args.repeats} run(s) per agent, the two agents alternating.\n"
    )
    print("| env | this project's CVPO (recipe) CPU s | FSRL CVPO (defaults) CPU s | ratio | target |")
    print("|---|---|---|---|---|")
    for env_id in args.envs:
        ours_runs, fsrl_runs = [], []
        for _ in range(args.repeats):  # alternating, so a drift in the machine's load hits both sides
            ours_runs.append(_run(sys.executable, "ours", env_id, args.steps, args.seed))
            fsrl_runs.append(_run(args.fsrl_python, "fsrl", env_id, args.steps, args.seed))
        a, b = _median_run(ours_runs), _median_run(fsrl_runs)
        ratio = a["cpu_s"] / b["cpu_s"]
        print(
            f"| {env_id} | {a['cpu_s']:.0f} ({a['wall_s']:.0f}) | {b['cpu_s']:.0f} ({b['wall_s']:.0f}) "
            f"| {ratio:.1f}x | <= 2x |",
            flush=True,
        )


def _median_run(runs: list[dict]) -> dict:
    """Median CPU and wall seconds of repeated runs."""
    return {key: float(statistics.median(run[key] for run in runs)) for key in ("cpu_s", "wall_s")}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        parser = argparse.ArgumentParser()
        parser.add_argument("--worker", nargs=2)
        parser.add_argument("--steps", type=int)
        parser.add_argument("--seed", type=int)
        ns = parser.parse_args()
        _worker(ns.worker[0], ns.worker[1], ns.steps, ns.seed)
    else:
        from harness import record

        with record("cvpo_speed", "CVPO's CPU time against FSRL's CVPO"):
            main()
