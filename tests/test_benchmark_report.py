"""benchmarks/report.py: the agents' targets read from leaderboard rows, and the harness's records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _row(env, policy, gap, feasible=True, kind="train", steps=100_000):
    return {"env": env, "policy": policy, "optimality_gap": gap, "feasible": feasible, "kind": kind,
            "timesteps": steps}  # fmt: skip


def test_targets_need_every_seed_feasible_and_the_mean_gap_within_the_bound():
    report = _load("report")
    fed, meg = "edgegen/FedDiffusion-v0", "edgegen/MEG-v0"
    rows = [
        *(_row(fed, "cvpo", g) for g in (0.03, 0.04, 0.05)),  # mean 0.04 <= 0.05: met
        *(_row(fed, "ppo-lag", g, feasible=f) for g, f in ((0.1, True), (0.1, True), (0.1, False))),
        _row(meg, "random", 0.25, kind="baseline", steps=0),
        *(_row(meg, "cvpo", g, steps=60_000) for g in (0.02, 0.03, 0.04)),  # score 1 - 0.03/0.25 = 0.88
    ]
    lines = {line.split(" | ")[1]: line for line in report.target_rows(rows)[2:] if fed in line}
    assert lines["cvpo"].endswith("| 3/3 | 0.04 (1.040x) | energy <= 1.05x oracle | yes |")
    assert lines["ppo-lag"].endswith("| 2/3 | 0.1 (1.100x) | <= 1.20x | no |")  # one seed infeasible
    (meg_line,) = [line for line in report.target_rows(rows) if meg in line]
    assert "| 3/3 | 0.03 (score 0.880) | score >= 0.9 | no |" in meg_line


def test_harness_records_what_was_printed_with_its_command(tmp_path, monkeypatch, capsys):
    harness = _load("harness")
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    with harness.record("demo", "A demo", argv=[str(ROOT / "benchmarks" / "demo.py"), "--n", "3"]):
        print("| a | b |")
    entry = json.loads((tmp_path / "demo.json").read_text())
    assert entry["markdown"] == "| a | b |" and capsys.readouterr().out == "| a | b |\n"
    assert entry["command"] == "python benchmarks/demo.py --n 3" and entry["title"] == "A demo"
    assert len(entry["commit"]) == 12 and isinstance(entry["dirty"], bool)
    # a run that fails records nothing (the previous result stays)
    try:
        with harness.record("demo", "A demo", argv=["x.py"]):
            print("partial")
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert json.loads((tmp_path / "demo.json").read_text())["markdown"] == "| a | b |"


def test_an_assembled_leaderboard_states_where_its_jobs_came_from(tmp_path, monkeypatch):
    report = _load("report")
    board = tmp_path / "leaderboard"
    board.mkdir()
    (board / "leaderboard.md").write_text(
        "# edgegen-gym leaderboard\n\nProduced by x.\n\n## edgegen/X\n\n| a |\n"
    )
    (board / "results.json").write_text("[]")
    monkeypatch.setattr(report, "LEADERBOARD", board)
    monkeypatch.setattr(report, "SECTIONS", [])
    text = report.build()
    assert "### edgegen/X" in text and "Jobs from" not in text
    (board / "PROVENANCE.md").write_text("Jobs from three runs: CVPO rows from commit abc.\n")
    text = report.build()
    # after the leaderboard's heading, before its tables
    assert text.index("## Leaderboard") < text.index("Jobs from three runs: CVPO rows from commit abc.")
    assert text.index("Jobs from three runs") < text.index("### edgegen/X")


def test_publishing_carries_provenance_and_never_keeps_a_stale_one(tmp_path, monkeypatch):
    report = _load("report")
    board = tmp_path / "leaderboard"
    monkeypatch.setattr(report, "LEADERBOARD", board)

    def suite(name, provenance):
        out = tmp_path / name
        out.mkdir()
        for published in report.PUBLISHED:
            (out / published).write_text("{}" if published.endswith(".json") else name)
        if provenance:
            (out / "PROVENANCE.md").write_text(provenance)
        return out

    report.publish(suite("assembled", "jobs from two runs"))
    assert (board / "PROVENANCE.md").read_text() == "jobs from two runs"
    report.publish(suite("plain", None))
    assert not (board / "PROVENANCE.md").exists() and (board / "leaderboard.md").read_text() == "plain"
