"""The suite's plan and resume rules, without Ray (the runs themselves: tests/test_suite.py, slow)."""

from __future__ import annotations

import json

import pytest

from edgegen.agents.protocol import HEADLINES
from edgegen.agents.suite import SuiteArgs, job_finished, plan_jobs


def test_training_jobs_get_each_envs_protocol_budget_unless_timesteps_is_given():
    planned = {
        (j["env"], j["policy"]): j["timesteps"] for j in plan_jobs(SuiteArgs()) if j["kind"] == "train"
    }
    assert planned[("edgegen/MEG-v0", "cvpo")] == planned[("edgegen/MEG-v0", "ppo-pid")] == 60_000
    assert planned[("edgegen/FedDiffusion-v0", "ppo-lag")] == planned[("edgegen/SFLAM-v0", "cvpo")] == 100_000
    assert {env for env, _ in planned} == set(HEADLINES)
    fixed = plan_jobs(SuiteArgs(timesteps=2048, baselines=False))
    assert {j["timesteps"] for j in fixed} == {2048} and len(fixed) == 3 * 3 * 3


def _finished_job(out, name, asked):
    folder = out / "jobs" / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"timesteps": asked + 352}))
    (folder / "config.json").write_text(json.dumps({"timesteps": asked}))
    return folder


def test_a_run_trained_for_another_budget_is_kept_aside_and_counts_as_not_finished(tmp_path):
    job = {"kind": "train", "name": "MEG-v0__ppo-lag__100", "timesteps": 60_000}
    folder = _finished_job(tmp_path, job["name"], 100_000)
    assert job_finished(tmp_path, {**job, "timesteps": 100_000})  # same budget: reused, left in place
    assert folder.is_dir()
    assert not job_finished(tmp_path, job)
    aside = tmp_path / "jobs" / "MEG-v0__ppo-lag__100__100000steps"
    assert not folder.exists() and json.loads((aside / "config.json").read_text())["timesteps"] == 100_000
    # a second budget change never overwrites what was kept
    _finished_job(tmp_path, job["name"], 100_000)
    with pytest.raises(ValueError, match="exists already"):
        job_finished(tmp_path, job)


def test_baseline_jobs_have_no_budget_and_a_missing_result_is_not_finished(tmp_path):
    baseline = {"kind": "baseline", "name": "MEG-v0__random"}
    assert not job_finished(tmp_path, baseline)
    (tmp_path / "jobs" / "MEG-v0__random").mkdir(parents=True)
    assert not job_finished(tmp_path, baseline)
    (tmp_path / "jobs" / "MEG-v0__random" / "result.json").write_text("{}")
    assert job_finished(tmp_path, baseline)


def test_tuning_plans_variants_on_tuning_seeds_and_evaluates_on_the_tuning_block(tmp_path):
    from edgegen.agents.protocol import EVAL_SEED, TUNING_EVAL_SEED
    from edgegen.agents.suite import eval_seed

    variants = tmp_path / "variants.yml"
    variants.write_text("g05: {gamma: 0.5}\nfast: {gamma: 0.5, n_steps: 128}\n")
    args = SuiteArgs(
        envs=["edgegen/MEG-v0"], algos=["ppo-lag"], seeds=[0, 1], tuning=True, variants=str(variants)
    )
    jobs = plan_jobs(args)
    train = {j["name"]: j for j in jobs if j["kind"] == "train"}
    assert set(train) == {f"MEG-v0__ppo-lag+{v}__{s}" for v in ("g05", "fast") for s in (0, 1)}
    assert train["MEG-v0__ppo-lag+fast__1"]["algo_kwargs"] == {"gamma": 0.5, "n_steps": 128}
    assert train["MEG-v0__ppo-lag+fast__1"]["algo"] == "ppo-lag"
    assert eval_seed(args) == TUNING_EVAL_SEED and eval_seed(SuiteArgs()) == EVAL_SEED
    # the oracle is evaluated on the tuning block under a name of its own
    oracles = {j["name"] for j in jobs if j["policy"] == "oracle"}
    reporting = {j["name"] for j in plan_jobs(SuiteArgs(envs=["edgegen/MEG-v0"])) if j["policy"] == "oracle"}
    assert oracles.isdisjoint(reporting)
    # reporting seeds cannot tune, and variants cannot report
    with pytest.raises(ValueError, match=r"tuning seeds 0-99 only; got \[100\]"):
        plan_jobs(SuiteArgs(seeds=[0, 100], tuning=True))
    with pytest.raises(ValueError, match="variants are for choosing recipes: pass --tuning"):
        plan_jobs(SuiteArgs(variants=str(variants)))
    variants.write_text("bad name: {gamma: 0.5}\n")
    with pytest.raises(ValueError, match="names must be letters"):
        plan_jobs(args)


def test_learning_curves_are_in_the_envs_units_under_a_recipes_normalize_costs():
    import numpy as np

    from edgegen.agents.suite import _curve_callback

    reports = []
    callback = _curve_callback(report_every=2, report=reports.append)
    raw, limits = np.array([3.0, 500.0]), np.array([3.8, 650.0])  # MEG-v0's costs and limits
    for step, done in ((1, False), (2, True)):
        info = {"costs": raw / limits, "costs_raw": raw}  # what NormalizeCosts puts
        callback.locals = {"rewards": np.array([1.0]), "dones": np.array([done]), "infos": [info]}
        callback.num_timesteps = step
        callback._on_step()
    assert reports == [
        {"timesteps": 2.0, "episode_reward": 2.0, "cost_per_step_0": 3.0, "cost_per_step_1": 500.0}
    ]


def _job(env: str, policy: str, seed, objective, miss) -> dict:
    """A job's result.json as run_job writes it (FedDiffusion-v0: energy per step, one cost)."""
    return {
        "env": env, "policy": policy, "seed": seed, "kind": "baseline" if seed is None else "train",
        "timesteps": 0 if seed is None else 1000, "objective": objective,
        "cost_per_step": [[m] for m in miss], "cost_names": ["deadline_miss_fraction"], "limits": [0.05],
        "eval_seed": 50_000, "curve": [],
    }  # fmt: skip


def test_keep_rows_updates_a_published_leaderboard_where_the_oracle_is_the_same(tmp_path):
    from edgegen.agents.suite import write_outputs

    fed, meg = "edgegen/FedDiffusion-v0", "edgegen/MEG-v0"
    oracle = _job(fed, "oracle", None, [10.0, 12.0, 14.0], [0.01, 0.02, 0.0])
    old_agent = _job(fed, "ppo-lag", 100, [13.0, 15.0, 17.0], [0.0, 0.0, 0.0])
    published = write_outputs([oracle, old_agent], tmp_path, "first")
    meg_row = {**published[0], "env": meg, "policy": "cvpo", "seed": 100}  # another env's row: kept as is
    kept = tmp_path / "published.json"
    kept.write_text(json.dumps([*published, meg_row]))

    new_agent = _job(fed, "ppo-lag", 100, [11.0, 12.0, 15.4], [0.0, 0.01, 0.0])
    other_seed = _job(fed, "ppo-lag", 101, [12.0, 13.2, 14.0], [0.0, 0.0, 0.0])
    out = tmp_path / "update"
    out.mkdir()
    (out / "learning_curves.png").write_bytes(b"an earlier scoring's")
    rows = write_outputs([oracle, new_agent, other_seed], out, "second", keep_rows=str(kept))
    by = {(r["env"], r["policy"], r["seed"]): r for r in rows}
    assert sorted(by) == sorted(
        [(fed, "oracle", None), (fed, "ppo-lag", 100), (fed, "ppo-lag", 101), (meg, "cvpo", 100)]
    )
    # the rerun's row replaces the published one (gap 3 / 12): the paired mean difference
    # (1 + 0 + 1.4) / 3 over the oracle's mean, 12
    assert by[(fed, "ppo-lag", 100)]["optimality_gap"] == pytest.approx(0.8 / 12)
    assert [r["optimality_gap"] for r in published if r["policy"] == "ppo-lag"] == [pytest.approx(3 / 12)]
    assert by[(meg, "cvpo", 100)] == meg_row
    assert json.loads((out / "results.json").read_text()) == rows
    assert json.loads((out / "run_info.json").read_text())["kept_rows_from"] == str(kept)
    assert "| ppo-lag |" in (out / "leaderboard.md").read_text()
    assert not (out / "learning_curves.png").exists()  # the kept rows' curves are not here to draw

    moved = _job(fed, "oracle", None, [10.0, 12.0, 14.5], [0.01, 0.02, 0.0])
    with pytest.raises(ValueError, match=r"FedDiffusion-v0's oracle scores 12\.16.* here and 12\.0 in"):
        write_outputs([moved, new_agent], out, "third", keep_rows=str(kept))
    with pytest.raises(ValueError, match="scores edgegen/FedDiffusion-v0 without its oracle job"):
        write_outputs([new_agent], out, "fourth", keep_rows=str(kept))
    (tmp_path / "bad.json").write_text('{"rows": 1}')
    with pytest.raises(ValueError, match=r"keep_rows .*bad.json: not a suite's results.json"):
        write_outputs([oracle, new_agent], out, "fifth", keep_rows=str(tmp_path / "bad.json"))


def test_the_run_records_the_code_it_started_from_and_any_job_that_started_elsewhere(tmp_path):
    from edgegen.agents.suite import write_outputs

    fed = "edgegen/FedDiffusion-v0"
    start = {"command": "c", "commit": "aaaa", "dirty": False, "date": "2026-12-07", "machine": "m"}
    oracle = {
        **_job(fed, "oracle", None, [10.0, 12.0], [0.0, 0.0]),
        "code": {"commit": "aaaa", "dirty": False},
    }
    agent = {
        **_job(fed, "ppo-lag", 100, [11.0, 13.0], [0.0, 0.0]),
        "code": {"commit": "aaaa", "dirty": False},
    }

    same = tmp_path / "same"
    same.mkdir()
    write_outputs([oracle, agent], same, "c", info=start)
    info = json.loads((same / "run_info.json").read_text())
    # the commit taken when the run started, not the checkout's HEAD when it was scored
    assert info["commit"] == "aaaa" and "job_commits" not in info
    assert "at commit aaaa on 2026-12-07" in (same / "leaderboard.md").read_text()

    # a job resumed after a commit (or with local edits) is named beside the run's commit
    later = {**agent, "seed": 101, "code": {"commit": "bbbb", "dirty": True}}
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_outputs([oracle, agent, later], mixed, "c", info=start)
    info = json.loads((mixed / "run_info.json").read_text())
    assert info["job_commits"] == ["aaaa", "bbbb (with uncommitted changes)"]
    assert (
        "(its jobs started at aaaa, bbbb (with uncommitted changes))"
        in (mixed / "leaderboard.md").read_text()
    )
