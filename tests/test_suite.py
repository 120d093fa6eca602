"""The suite on real Ray: a tiny suite on a local instance (outputs, numbers, resume), and one on a
two-node cluster that the test starts on 127.0.0.1 and stops."""

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import pytest

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen import train_agent as ta
from edgegen.agents import OraclePolicy, PPOLagrangian, evaluate_policy_with_cost
from edgegen.agents.protocol import EVAL_SEED, gap_and_interval
from edgegen.agents.suite import SuiteArgs, run_suite

pytestmark = pytest.mark.slow
FED = "edgegen/FedDiffusion-v0"


def _tiny(out: Path, **kw) -> SuiteArgs:
    settings = dict(
        envs=[FED], algos=["ppo-lag"], seeds=[100], timesteps=256, out=str(out), eval_episodes=3,
        n_envs=1, report_every=64,
    )  # fmt: skip
    return SuiteArgs(**{**settings, **kw})


def test_tiny_suite_on_local_ray_scores_writes_and_resumes(tmp_path, capsys):
    out = tmp_path / "suite"
    rows = run_suite(_tiny(out))
    assert sorted(r["policy"] for r in rows) == ["equal_split", "oracle", "ppo-lag", "random"]
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(rows))

    # The numbers, recomputed here without Ray: the oracle's and the saved agent's episodes
    env = gym.make(FED)
    oracle = evaluate_policy_with_cost(OraclePolicy(env), env, 3, seed=EVAL_SEED)
    oracle_objective = oracle.metrics["energy_j"] / oracle.lengths
    model = PPOLagrangian.load(out / "jobs" / "FedDiffusion-v0__ppo-lag__100" / "model.zip", device="cpu")
    agent = evaluate_policy_with_cost(model, env, 3, seed=EVAL_SEED)
    agent_objective = agent.metrics["energy_j"] / agent.lengths
    by = {r["policy"]: r for r in rows}
    assert by["oracle"]["objective"] == pytest.approx(oracle_objective.mean(), rel=1e-12)
    assert by["oracle"]["optimality_gap"] == 0.0
    gap = gap_and_interval(agent_objective, oracle_objective, "relative")
    # abs 1e-8 beside rel 1e-9: Ray's worker runs the policy's float32 layers on its trial's CPUs
    # (Ray sets OMP_NUM_THREADS to them), this process on all, so actions can differ in the last bits; the
    # interval's ends sit near 0 and lose the relative precision (CI saw 5.6e-10 on gap_low = 0.065).
    assert (by["ppo-lag"]["optimality_gap"], by["ppo-lag"]["gap_low"], by["ppo-lag"]["gap_high"]) == (
        pytest.approx(gap, rel=1e-9, abs=1e-8)
    )
    miss = agent.cost_per_step[:, 0]
    cost = by["ppo-lag"]["costs"]["deadline_miss_fraction"]
    assert cost["mean"] == pytest.approx(miss.mean(), rel=1e-12) and cost["limit"] == 0.05
    assert by["ppo-lag"]["timesteps"] == 512  # one PPO rollout (n_steps 512 in the recipe) covers 256
    # `edgegen-train evaluate` loads a suite job's checkpoint (its config.json records the limits in
    # force) and scores the same episodes the same way
    job = out / "jobs" / "FedDiffusion-v0__ppo-lag__100"
    assert json.loads((job / "config.json").read_text())["cost_limits_in_force"] == {
        "deadline_miss_fraction": 0.05
    }
    evaluated = ta.evaluate(job / "model.zip", 3, EVAL_SEED)["policies"]["ppo-lag"]
    assert evaluated["episode_lengths"] == agent.lengths.tolist()
    assert [c[0] for c in evaluated["episode_costs"]] == pytest.approx(agent.costs[:, 0], rel=1e-9, abs=1e-12)

    # Tune saw metrics during training, not only at the end
    reports = [
        json.loads(line) for p in (out / "ray").rglob("result.json") for line in p.read_text().splitlines()
    ]
    steps = [r["timesteps"] for r in reports if r["config"]["job"]["policy"] == "ppo-lag"]
    assert len(steps) >= 3 and steps == sorted(steps)

    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:6] == ["env", "policy", "seed", "timesteps", "feasible", "optimality_gap"]
    board = (out / "leaderboard.md").read_text()
    assert all(f"| {p} |" in board for p in by)
    info = json.loads((out / "run_info.json").read_text())
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True)
    assert info["commit"] == (head.stdout.strip() or None) and f"at commit {info['commit']}" in board
    for plot in ("learning_curves.png", "costs.png", "gaps.png"):
        assert (out / plot).stat().st_size > 10_000

    # Resume: only the job whose result is gone runs again; the others are read back untouched
    done = {p: p.stat().st_mtime_ns for p in (out / "jobs").glob("*/result.json")}
    lost = out / "jobs" / "FedDiffusion-v0__random" / "result.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    capsys.readouterr()
    again = run_suite(_tiny(out))
    assert "4 jobs, 3 done before, 1 to run" in capsys.readouterr().out
    assert json.loads(lost.read_text())["objective"] == before["objective"]
    for path, mtime in done.items():
        if path != lost:
            assert path.stat().st_mtime_ns == mtime
    assert [r["optimality_gap"] for r in again] == [r["optimality_gap"] for r in rows]

    # --no-run scores what is finished and starts nothing: ppo's job is planned, not run
    scored = run_suite(_tiny(out, algos=["ppo-lag", "ppo"], run=False))
    assert sorted(r["policy"] for r in scored) == ["equal_split", "oracle", "ppo-lag", "random"]
    assert not (out / "jobs" / "FedDiffusion-v0__ppo__100").exists()

    # Another budget retrains the training job and keeps the old run aside; baselines are reused
    capsys.readouterr()
    rerun = {r["policy"]: r for r in run_suite(_tiny(out, timesteps=600))}
    assert "kept as FedDiffusion-v0__ppo-lag__100__256steps" in capsys.readouterr().out
    assert (out / "jobs" / "FedDiffusion-v0__ppo-lag__100__256steps" / "model.zip").is_file()
    assert rerun["ppo-lag"]["timesteps"] == 1024  # two rollouts of 512 cover 600
    assert rerun["oracle"]["objective"] == by["oracle"]["objective"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_suite_joins_a_two_node_ray_cluster_started_on_this_machine(tmp_path):
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_cli is not None
    port = _free_port()
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        subprocess.run(
            [ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false", *common],
            check=True, capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        subprocess.run(
            [ray_cli, "start", "--address", f"127.0.0.1:{port}", *common],
            check=True, capture_output=True, env=env, timeout=120,
        )  # fmt: skip
        out = tmp_path / "cluster"
        rows = run_suite(_tiny(out, seeds=[100, 101], baselines=False, address=f"127.0.0.1:{port}"))
        assert sorted(r["seed"] for r in rows) == [100, 101]
        assert all(r["optimality_gap"] is None for r in rows)  # no oracle job asked for
        assert "n/a (no oracle job)" in (out / "leaderboard.md").read_text()
        nodes = {json.loads(p.read_text())["ray_node_id"] for p in (out / "jobs").glob("*/result.json")}
        assert len(nodes) == 2  # one CPU per node, two trials at once: both nodes worked
    finally:
        _stop_cluster(port)  # not `ray stop`: that would also stop every other Ray on this machine


def _stop_cluster(port: int) -> None:
    """Kill the processes of the cluster at ``port`` (those naming it, and their descendants)."""
    parents: dict[int, int] = {}
    mine: set[int] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if re.search(rf"[:= ]{port}\b", cmdline):  # --port P, --gcs-address=HOST:P, ...
            mine.add(int(proc.name))
    grew = True
    while grew:  # the workers are the raylets' children
        new = {pid for pid, ppid in parents.items() if ppid in mine} - mine
        mine |= new
        grew = bool(new)
    for pid in mine - {os.getpid()}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    # `ray start` recorded the head's address for later ray.init() calls: forget it, as `ray stop` does
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    with contextlib.suppress(OSError):
        if current.read_text().strip().endswith(f":{port}"):
            current.unlink()
