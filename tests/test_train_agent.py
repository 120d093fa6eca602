"""train_agent.py end to end, with tiny budgets, through main(argv)."""

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback

from edgegen import train_agent
from edgegen.agents import CVPO, PPOLagrangian

TINY = [
    "--timesteps",
    "2048",
    "--n-envs",
    "2",
    "--eval-episodes",
    "2",
    "--no-progress-bar",
    "--env-kwargs",
    "num_rounds=8",
    "--checkpoint-every",
    "256",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    assert (
        train_agent.main(
            [
                "train",
                "--algo",
                "ppo-lag",
                "--seed",
                "3",
                "--logdir",
                str(logdir),
                "--cost-limit",
                "deadline_miss_fraction=0.1",
                *TINY,
            ]
        )
        == 0
    )
    (run,) = logdir.iterdir()
    return run


def test_train_writes_config_model_checkpoints_and_evaluation(run_dir, capsys):
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"] == "edgegen/FedDiffusion-v0" and config["algo"] == "ppo-lag"
    assert config["env_kwargs"] == {"num_rounds": 8}
    assert config["cost_limits_in_force"] == {"deadline_miss_fraction": 0.1}
    model = PPOLagrangian.load(run_dir / "model.zip")
    assert model.cost_spec.limits == (0.1,) and model.num_timesteps >= 2048
    assert list((run_dir / "checkpoints").glob("model_*_steps.zip"))
    report = json.loads((run_dir / "evaluation.json").read_text())
    assert set(report["policies"]) == {"ppo-lag", "oracle", "random"}
    oracle = report["policies"]["oracle"]
    assert len(oracle["episode_rewards"]) == 2
    # the oracle's energy is the least: random spends more on the same seeded episodes
    assert oracle["summary"]["energy_j"] < report["policies"]["random"]["summary"]["energy_j"]
    tags = train_agent.read_scalars(run_dir, "train/lambda/deadline_miss_fraction")
    assert tags[0].size >= 1


def test_evaluate_and_benchmark(run_dir, tmp_path, capsys):
    assert train_agent.main(["evaluate", "--checkpoint", str(run_dir / "model.zip"), "--episodes", "2"]) == 0
    assert "| oracle |" in capsys.readouterr().out
    out = tmp_path / "bench"
    argv = [
        "benchmark",
        "--env",
        "edgegen/FedDiffusion-v0",
        "--env-kwargs",
        "num_rounds=8",
        "--episodes",
        "2",
        "--policies",
        f"oracle,random,equal_split,{run_dir / 'model.zip'}",
        "--out",
        str(out),
    ]
    assert train_agent.main(argv) == 0
    rows = (out / "benchmark.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("policy,reward")
    oracle_row = next(r for r in rows if r.startswith("oracle,"))
    assert oracle_row.split(",")[-1] == "1.000"  # energy / oracle
    for png in ("cost_vs_limit.png", "learning_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "benchmark.json").read_text())
    assert np.isclose(
        data["policies"]["oracle"]["summary"]["reward"],
        np.mean(data["policies"]["oracle"]["episode_rewards"]),
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--env", "edgegen/Nope-v0"], "unknown env id 'edgegen/Nope-v0'; registered edgegen envs:"),
        (["train", "--algo", "sac"], "unknown algo 'sac'"),
        (["train", "--env-kwargs", "num_devices"], "bad --env-kwargs entry 'num_devices'"),
        (["train", "--env-kwargs", "num_devices=0"], "num_devices must be >= 1"),
        (["train", "--cost-limit", "latency_s=3"], r"unknown cost name\(s\) \['latency_s'\]"),
        (["train", "--algo", "cvpo", "--algo-kwargs", "gama=0.5"], "bad --algo-kwargs for cvpo: .*gama"),
        (["train", "--algo", "cvpo", "--algo-kwargs", "gamma=1.5"], r"CVPOConfig\.gamma is out of range"),
        (["train", "--algo", "ppo-pid", "--algo-kwargs", "n_step=3"], r"unknown --algo-kwargs \['n_step'\]"),
        (["train", "--algo-kwargs", "seed=3"], r"--algo-kwargs cannot set \['seed'\]"),
        (["evaluate", "--checkpoint", "missing/model.zip"], "missing/model.zip does not exist"),
        (["benchmark", "--env", "edgegen/FedDiffusion-v0", "--policies", "best"], "unknown policy 'best'"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys, tmp_path):
    assert train_agent.main([*argv, *(["--logdir", str(tmp_path)] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgegen-train: error:") and "\n" not in err
    assert __import__("re").search(message, err)


def test_checkpoint_of_another_config_is_refused(run_dir, capsys, tmp_path):
    argv = [
        "benchmark",
        "--env",
        "edgegen/FedDiffusion-v0",
        "--policies",
        str(run_dir / "model.zip"),
        "--out",
        str(tmp_path),
    ]
    assert train_agent.main(argv) == 2
    assert "was trained with env kwargs {'num_rounds': 8}, not {}" in capsys.readouterr().err
    corrupt = run_dir / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    assert train_agent.main(["evaluate", "--checkpoint", str(corrupt)]) == 2
    assert "cannot load checkpoint" in capsys.readouterr().err


def test_cvpo_through_the_cli(tmp_path, capsys):
    argv = [
        "train",
        "--algo",
        "cvpo",
        "--logdir",
        str(tmp_path),
        "--timesteps",
        "200",
        "--n-envs",
        "1",
        "--eval-episodes",
        "1",
        "--no-progress-bar",
        "--env-kwargs",
        "num_rounds=8",
        "--checkpoint-every",
        "100",
        "--algo-kwargs",
        "gamma=0.5",
        "entity_dims=(3, 1)",
    ]
    assert train_agent.main(argv) == 0
    (run,) = tmp_path.iterdir()
    model = CVPO.load(run / "model.zip")  # the first release's flat entity_dims is the policy's layout
    assert model.config.gamma == 0.5 and model.policy_kwargs["entity_layout"] == (3, 1)
    assert len(list((run / "checkpoints").glob("model_*_steps.zip"))) == 2
    assert train_agent.main(["evaluate", "--checkpoint", str(run / "model.zip"), "--episodes", "1"]) == 0
    assert "| cvpo |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        *[
            (["train", "--cost-limit", f"deadline_miss_fraction={bad}"], "limit must be a finite number > 0")
            for bad in ("abc", "-1", "0", "nan", "inf", "[1,2]")
        ],
        (["train", "--algo-kwargs", "learning_rate=abc"], "bad --algo-kwargs .*learning_rate"),
        *[
            (["train", "--algo-kwargs", f"{key}={bad}"], f"bad --algo-kwargs {key}='{bad}': give a number or")
            for key, bad in (
                ("learning_rate", "lin_abc"),
                ("learning_rate", "lin_-1"),
                ("clip_range", "lin_0"),
                ("learning_rate", "lin_inf"),
            )
        ],
        (["train", "--algo-kwargs", "n_steps=0"], "bad --algo-kwargs"),
        (["train", "--algo-kwargs", "batch_size=-1"], "bad --algo-kwargs"),
        (["train", "--algo-kwargs", "policy_kwargs=abc"], "bad --algo-kwargs"),
        (["train", "--algo", "cvpo", "--algo-kwargs", "hidden=abc"], "bad --algo-kwargs"),
        (["train", "--algo", "cvpo", "--algo-kwargs", "gamma=nan"], "gamma"),
        (["train", "--seed", "-1"], "--seed must be >= 0, got -1"),
        (["train", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1, got 0"),
        (["train", "--checkpoint-every", "-5"], "--checkpoint-every must be >= 1, got -5"),
    ],
)
def test_bad_train_input_is_one_line_and_leaves_no_run_folder(argv, message, capsys, tmp_path):
    logdir = tmp_path / "runs"
    assert train_agent.main([*argv, "--logdir", str(logdir), *TINY[:2]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgegen-train: error:") and "\n" not in err, err
    assert __import__("re").search(message, err), err
    assert not logdir.exists() or not any(logdir.iterdir())  # nothing half-made


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--episodes", "0"], "--episodes must be >= 1, got 0"),
        (["--episodes", "-3"], "--episodes must be >= 1, got -3"),
        (["--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_bad_benchmark_input_is_one_line(extra, message, capsys, tmp_path):
    argv = [
        "benchmark",
        "--env",
        "edgegen/FedDiffusion-v0",
        "--policies",
        "random",
        "--out",
        str(tmp_path / "b"),
    ]
    assert train_agent.main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_benchmark_refuses_to_replace_results_and_names_bad_out(capsys, tmp_path):
    base = [
        "benchmark",
        "--env",
        "edgegen/FedDiffusion-v0",
        "--episodes",
        "1",
        "--env-kwargs",
        "num_rounds=3",
    ]
    assert train_agent.main([*base, "--policies", ",", "--out", str(tmp_path / "a")]) == 2
    assert "--policies names no policy" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert train_agent.main([*base, "--policies", "random", "--out", str(a_file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    out = tmp_path / "bench"
    assert train_agent.main([*base, "--policies", "random", "--out", str(out)]) == 0
    first = (out / "benchmark.json").read_text()
    assert train_agent.main([*base, "--policies", "oracle", "--out", str(out)]) == 2
    assert "already holds results; pass --force" in capsys.readouterr().err
    assert (out / "benchmark.json").read_text() == first  # earlier results untouched
    assert train_agent.main([*base, "--policies", "oracle", "--out", str(out), "--force"]) == 0
    assert "oracle" in json.loads((out / "benchmark.json").read_text())["policies"]


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(train_agent.time, "time", lambda: 1_700_000_000.0)
    first = train_agent._unique_run_dir(tmp_path, "FedDiffusion-v0__ppo-pid__0__1700000000")
    second = train_agent._unique_run_dir(tmp_path, "FedDiffusion-v0__ppo-pid__0__1700000000")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name.endswith("-2")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"env": "edgegen/FedDiffusion-v0", "env_kwargs": {}}', r"lacks \['algo'\]"),
    ],
)
def test_evaluate_names_a_broken_run_config(content, message, capsys, tmp_path):
    (tmp_path / "model.zip").write_bytes(b"PK")
    (tmp_path / "config.json").write_text(content)
    assert train_agent.main(["evaluate", "--checkpoint", str(tmp_path / "model.zip")]) == 2
    err = capsys.readouterr().err.strip()
    assert __import__("re").search(message, err) and "\n" not in err


def test_evaluate_refuses_a_config_naming_another_env(run_dir, capsys, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["env_kwargs"] = {"num_rounds": 8, "num_devices": 5}  # another observation shape
    (copy / "config.json").write_text(json.dumps(config))
    assert train_agent.main(["evaluate", "--checkpoint", str(copy / "model.zip")]) == 2
    assert (
        "does not fit edgegen/FedDiffusion-v0 with {'num_rounds': 8, 'num_devices': 5}"
        in capsys.readouterr().err
    )


def _malicious_copy(run_dir: Path, tmp_path: Path, member: str) -> tuple[Path, Path]:
    """A copy of a real run whose model.zip has a pickle in ``member`` that writes a marker file."""
    import base64
    import pickle
    import shutil
    import zipfile

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    source, target = run_dir / "model.zip", copy / "model.zip"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == member == "data":
                payload = json.loads(data)
                payload["lr_schedule"][":serialized:"] = base64.b64encode(pickle.dumps(Payload())).decode()
                data = json.dumps(payload).encode()
            elif item == member:
                data = pickle.dumps(Payload())
            zout.writestr(item, data)
    return copy / "model.zip", marker


def test_loading_a_checkpoint_never_unpickles(run_dir, tmp_path, capsys):
    # the SB3 "data" entry holds a cloudpickle payload: evaluate reads only the weights, so it never runs
    checkpoint, marker = _malicious_copy(run_dir, tmp_path / "a", "data")
    assert train_agent.main(["evaluate", "--checkpoint", str(checkpoint), "--episodes", "1"]) == 0
    assert not marker.exists()
    # a pickle instead of the weights: torch's weights_only loader refuses it, nothing runs
    checkpoint, marker = _malicious_copy(run_dir, tmp_path / "b", "policy.pth")
    assert train_agent.main(["evaluate", "--checkpoint", str(checkpoint), "--episodes", "1"]) == 2
    assert "refusing to unpickle it" in capsys.readouterr().err
    bench = [
        "benchmark",
        "--env",
        "edgegen/FedDiffusion-v0",
        "--env-kwargs",
        "num_rounds=8",
        "--episodes",
        "1",
    ]
    assert train_agent.main([*bench, "--policies", str(checkpoint), "--out", str(tmp_path / "o")]) == 2
    assert not marker.exists()


def test_weights_only_load_reproduces_the_policy(run_dir):
    safe, _ = train_agent.load_model(run_dir / "model.zip")
    full, _ = train_agent.load_model(run_dir / "model.zip", allow_pickle=True)
    obs = np.random.default_rng(0).uniform(0, 1, (16, *full.observation_space.shape)).astype(np.float32)
    np.testing.assert_array_equal(
        safe.predict(obs, deterministic=True)[0], full.predict(obs, deterministic=True)[0]
    )


def test_load_model_reads_configs_that_record_only_the_overridden_limits(run_dir, tmp_path):
    # suite jobs before the sixteenth session wrote `cost_limits` (the overrides) without
    # `cost_limits_in_force`; the limits in force are the env's with those overrides applied
    import shutil

    copy = tmp_path / "old_suite_job"
    shutil.copytree(run_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["cost_limits_in_force"]
    for overrides, limits in (({"deadline_miss_fraction": 0.1}, (0.1,)), ({}, (0.05,))):
        (copy / "config.json").write_text(json.dumps({**config, "cost_limits": overrides}))
        model, _ = train_agent.load_model(copy / "model.zip")
        assert model.cost_spec.limits == limits


def _interrupt_a_run(tmp_path: Path, algo: str, sig: int) -> tuple[Path, int, str]:
    """Start a long run in a subprocess, send ``sig`` once it trains, return (run folder, steps, stderr)."""
    import signal  # noqa: F401  (the caller passes signal.SIGINT / SIGTERM)
    import subprocess
    import sys
    import time

    root = Path(train_agent.__file__).resolve().parent
    logdir = tmp_path / "runs"
    argv = [sys.executable, "train_agent.py", "train", "--algo", algo, "--timesteps", "400000", "--logdir"]
    argv += [str(logdir), "--n-envs", "2", "--eval-episodes", "1", "--no-progress-bar", "--env-kwargs"]
    argv += ["num_rounds=8", "--checkpoint-every", "1000000"]
    proc = subprocess.Popen(argv, cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(logdir.glob("*/tb*")) and not list(logdir.glob("*/events*")):
        time.sleep(0.5)
    time.sleep(4.0)  # some training
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run,) = logdir.iterdir()
    steps = int(err.split("interrupted at ")[1].split(" ")[0])
    return run, steps, err


@pytest.mark.slow  # two subprocess runs with torch start-up: ~1-2 min
def test_sigint_saves_the_run_and_resume_continues_it(tmp_path, capsys):
    import signal

    run, steps, err = _interrupt_a_run(tmp_path, "ppo-lag", signal.SIGINT)
    assert "Traceback" not in err and f"--resume {run}" in err
    saved = PPOLagrangian.load(run / "model.zip", device="cpu")
    assert saved.num_timesteps == steps > 0
    lambdas = saved.lambdas.copy()
    target = steps + 1024
    assert (
        train_agent.main(["train", "--resume", str(run), "--timesteps", str(target), "--no-progress-bar"])
        == 0
    )
    assert f"resuming {run} from model.zip at {steps} steps" in capsys.readouterr().out
    resumed = PPOLagrangian.load(run / "model.zip", device="cpu")
    assert target <= resumed.num_timesteps < target + 2 * 2048  # continued, not restarted
    assert (run / "evaluation.json").is_file()
    # the multipliers continued from their saved values (one or two updates since)
    assert resumed.lambdas.shape == lambdas.shape and np.all(np.isfinite(resumed.lambdas))
    assert train_agent.main(["train", "--resume", str(run), "--timesteps", "10"]) == 2


@pytest.mark.slow
def test_sigterm_saves_cvpo_with_its_replay_buffer(tmp_path, capsys):
    import signal

    run, steps, _ = _interrupt_a_run(tmp_path, "cvpo", signal.SIGTERM)
    from stable_baselines3.common.save_util import load_from_pkl

    assert (run / "replay_buffer.pkl").is_file()
    stored = load_from_pkl(run / "replay_buffer.pkl").size()
    assert stored * 2 == steps  # every vector step of the run is in the buffer (2 envs)
    saved = CVPO.load(run / "model.zip")
    assert saved.num_timesteps == steps
    assert (
        train_agent.main(
            ["train", "--resume", str(run), "--timesteps", str(steps + 200), "--no-progress-bar"]
        )
        == 0
    )
    resumed = CVPO.load(run / "model.zip")
    assert resumed.num_timesteps >= steps + 200
    # the old transitions were kept, new ones added
    assert load_from_pkl(run / "replay_buffer.pkl").size() >= stored + 100


@pytest.mark.slow  # six short runs
def test_resumed_runs_end_within_seed_noise_of_uninterrupted_ones(tmp_path, monkeypatch):
    from stable_baselines3.common.callbacks import CheckpointCallback

    class InterruptAt(CheckpointCallback):
        """The run's checkpoint callback that also presses Ctrl-C once at 2,048 steps."""

        fired = False

        def _on_step(self) -> bool:
            if not InterruptAt.fired and self.num_timesteps >= 2048:
                InterruptAt.fired = True
                raise KeyboardInterrupt
            return super()._on_step()

    base = ["train", "--algo", "ppo-lag", "--timesteps", "4096", "--n-envs", "2", "--eval-episodes", "4"]
    base += ["--no-progress-bar", "--env-kwargs", "num_rounds=8"]

    def reward(run: Path) -> float:
        return json.loads((run / "evaluation.json").read_text())["policies"]["ppo-lag"]["summary"]["reward"]

    plain, resumed = [], []
    for seed in (0, 1, 2):
        logdir = tmp_path / f"plain{seed}"
        assert train_agent.main([*base, "--seed", str(seed), "--logdir", str(logdir)]) == 0
        plain.append(reward(next(logdir.iterdir())))
        logdir = tmp_path / f"cut{seed}"
        InterruptAt.fired = False
        monkeypatch.setattr(train_agent, "CheckpointCallback", InterruptAt)
        assert train_agent.main([*base, "--seed", str(seed), "--logdir", str(logdir)]) == 130
        monkeypatch.setattr(train_agent, "CheckpointCallback", CheckpointCallback)
        run = next(logdir.iterdir())
        assert not (run / "evaluation.json").exists()
        assert train_agent.main(["train", "--resume", str(run), "--no-progress-bar"]) == 0
        resumed.append(reward(run))
    spread = max(plain) - min(plain)  # seed noise of the uninterrupted runs
    print(f"uninterrupted {plain}, resumed {resumed}")
    assert abs(np.mean(resumed) - np.mean(plain)) <= max(spread, 0.05 * abs(np.mean(plain)))


def test_recipes_are_data_applied_by_default_with_user_overrides_on_top(tmp_path, capsys):
    from edgegen.agents import load_hyperparams

    meg, source = load_hyperparams("cvpo", "edgegen/MEG-v0")
    assert source == "agents/hyperparams/cvpo.yml#edgegen/MEG-v0"
    assert meg["env_wrapper"] == "edgegen.envs.cmdp.NormalizeCosts"
    assert (
        load_hyperparams("cvpo", "edgegen:edgegen/FedDiffusion-v0")[0]["policy_kwargs"]["entity_layout"]
        == "env"
    )
    assert load_hyperparams("ppo-pid", "edgegen/SFLAM-v0")[1].endswith("ppo-pid.yml#edgegen/SFLAM-v0")
    assert load_hyperparams("ppo-pid", "my_pkg:MyCMDP-v0")[1].endswith("ppo-pid.yml#default")  # no entry
    assert load_hyperparams("cvpo", "edgegen/SFLAM-v0")[1].endswith("cvpo.yml#edgegen/SFLAM-v0")
    assert load_hyperparams("cvpo", "my_pkg:MyCMDP-v0")[1].endswith("cvpo.yml#default")  # no entry
    with pytest.raises(ValueError, match="no recipe file for algo 'sac'"):
        load_hyperparams("sac", "edgegen/MEG-v0")
    # the CLI: the recipe by default, --algo-kwargs on top, both recorded with their sources
    code = train_agent.main(
        [
            "train",
            "--env",
            "edgegen/MEG-v0",
            "--algo",
            "cvpo",
            "--timesteps",
            "40",
            "--n-envs",
            "1",
            "--eval-episodes",
            "1",
            "--logdir",
            str(tmp_path),
            "--no-progress-bar",
            "--algo-kwargs",
            "min_std=0.3",
            "learning_starts=20",
            "batch_size=8",
        ]
    )
    assert code == 0
    (run,) = tmp_path.iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["algo_settings"]["min_std"] == 0.3
    assert config["algo_settings"]["env_wrapper"] == "edgegen.envs.cmdp.NormalizeCosts"
    assert config["algo_settings_source"]["min_std"] == "--algo-kwargs"
    assert config["algo_settings_source"]["gamma"] == "agents/hyperparams/cvpo.yml#edgegen/MEG-v0"
    # the recipe's policy_kwargs are recorded key by key; the flat --algo-kwargs min_std wins over them
    assert (
        config["algo_settings_source"]["policy_kwargs.min_std"]
        == "agents/hyperparams/cvpo.yml#edgegen/MEG-v0"
    )
    assert config["algo_settings"]["policy_kwargs"] == {"min_std": 0.1}
    model = CVPO.load(run / "model.zip")
    assert (
        model.config.gamma == 0.5
        and model.policy_kwargs["min_std"] == 0.3
        and model.config.cost_value_baseline == 0.01
    )
    assert model.cost_spec.limits == (1.0, 1.0)  # trained on the wrapped env's costs
    # and in code
    fed = CVPO.for_env(gym.make("edgegen/FedDiffusion-v0"), min_std=0.25)
    assert fed.policy_kwargs["entity_layout"] == (3, 1) and fed.policy_kwargs["min_std"] == 0.25


def test_bare_command_prints_help_and_suite_rejects_bad_arguments_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train_agent.main([]) == 0
    assert "usage: edgegen-train" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()  # no 300k-step run started
    for argv, message in [
        (["--envs", "CartPole-v1"], "no protocol headline for 'CartPole-v1'"),
        (["--algos", "sac"], "algos: unknown ['sac']"),
        (["--eval-episodes", "1"], "eval_episodes >= 2"),
        (["--seeds", "-1"], "seeds must be >= 0"),
    ]:
        assert train_agent.main(["suite", *argv, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgegen-train: error:") and message in err, (argv, err)
    assert not (tmp_path / "s" / "jobs").exists()  # nothing ran


@pytest.mark.parametrize("command", ["train", "evaluate", "benchmark", "suite"])
def test_every_option_of_a_command_comes_from_its_dataclass_with_its_docstring(command, capsys):
    import dataclasses

    fields = dataclasses.fields(_dataclass_of(command))
    with pytest.raises(SystemExit) as exit_info:
        train_agent.parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    docs = _field_docs(_dataclass_of(command))
    for f in fields:
        flag = "--cost-limit" if f.name == "cost_limits" else f"--{f.name.replace('_', '-')}"
        assert flag in text, (command, flag)
        first_words = " ".join(docs[f.name].split()[:4])
        assert first_words in text, (command, f.name, first_words)
    assert f"edgegen-train {command}" in text


def _dataclass_of(command: str) -> type:
    if command == "suite":
        from edgegen.agents.suite import SuiteArgs

        return SuiteArgs
    return train_agent.COMMANDS[command]


def _field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal below it), read from the source."""
    import ast
    import inspect
    import itertools
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, following in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr):
            docs[node.target.id] = following.value.value
    return docs


def test_train_in_code_returns_the_run_folder_the_model_and_its_evaluation(tmp_path):
    args = train_agent.TrainArgs(
        algo="ppo-pid", timesteps=512, n_envs=2, eval_episodes=2, progress_bar=False,
        env_kwargs={"num_rounds": 8}, logdir=str(tmp_path), seed=5,
    )  # fmt: skip
    result = train_agent.train(args)
    assert result.run_dir.parent == tmp_path and (result.run_dir / "model.zip").is_file()
    assert result.evaluation == json.loads((result.run_dir / "evaluation.json").read_text())
    assert result.model.num_timesteps >= 512
    assert json.loads((result.run_dir / "config.json").read_text())["timesteps"] == 512


def test_policy_kwargs_of_a_recipe_and_of_the_user_merge_key_by_key():
    merged, sources = train_agent.recipe_settings(
        "cvpo", "edgegen/FedDiffusion-v0", {"policy_kwargs": {"min_std": 0.3}, "gamma": 0.6}
    )
    assert merged["policy_kwargs"] == {
        "entity_layout": "env",
        "net_arch": [32, 32],
        "entity_critic_arch": [32, 32],
        "min_std": 0.3,
    }
    assert merged["gamma"] == 0.6 and sources["gamma"] == "--algo-kwargs"
    assert sources["policy_kwargs.min_std"] == "--algo-kwargs"
    assert sources["policy_kwargs.entity_layout"] == "agents/hyperparams/cvpo.yml#edgegen/FedDiffusion-v0"
    assert "policy_kwargs" not in sources
    config, policy_kwargs = train_agent.cvpo_settings(merged)
    assert config.gamma == 0.6 and policy_kwargs["entity_critic_arch"] == (32, 32)


def test_zoo_style_linear_schedules_fall_from_the_value_to_zero():
    settings = train_agent.algo_config("ppo-lag", {"learning_rate": "lin_1e-3", "clip_range": "lin_0.2"})
    for key, start in (("learning_rate", 1e-3), ("clip_range", 0.2)):
        schedule = settings[key]  # SB3 calls it with the progress remaining, 1 at the start, 0 at the end
        assert [schedule(p) for p in (1.0, 0.5, 0.0)] == pytest.approx([start, start / 2, 0.0])
    env = gym.make("edgegen/MEG-v0")
    model = train_agent.PPOLagrangian("MlpPolicy", env, n_steps=64, batch_size=64, **settings)

    class LearningRates(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[float] = []

        def _on_rollout_start(self) -> None:  # after the previous update set the optimizer's rate
            self.seen.append(self.model.policy.optimizer.param_groups[0]["lr"])

        def _on_step(self) -> bool:
            return True

    rates = LearningRates()
    model.learn(192, callback=rates)  # updates at 2/3, 1/3 and 0 of the run remaining
    assert rates.seen[1:] == pytest.approx([2e-3 / 3, 1e-3 / 3])
    assert train_agent.algo_config("ppo-lag", {"learning_rate": 3e-4})["learning_rate"] == 3e-4
