"""Build BENCHMARKS.md from the recorded results: the suite's leaderboard first, then every benchmark.

Inputs: ``docs/leaderboard/`` (a copy of the headline suite's output folder: leaderboard.md,
results.json, run_info.json, figures) and ``benchmarks/results/<name>.json`` (written by each
benchmark through ``benchmarks/harness.py``). Every section states the command, the commit and the
machine that produced it. The agents' learning targets are read from the leaderboard's rows.

    python benchmarks/report.py [--leaderboard SUITE_OUT] [--check]

``--leaderboard`` first copies a suite's outputs (not its jobs) into docs/leaderboard/; ``--check``
exits 1 if BENCHMARKS.md is not what the records give.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
LEADERBOARD = ROOT / "docs" / "leaderboard"
OUTPUT = ROOT / "BENCHMARKS.md"

# Sections in reading order: (result name, how to run it). A result not recorded yet is listed.
SECTIONS = (
    ("cmdp_oracles", "python benchmarks/cmdp_oracles.py"),
    ("sflam_certified", "python benchmarks/sflam_certified.py"),
    ("sflam_oracle", "python benchmarks/sflam_oracle.py"),
    ("cvpo_speed", "python benchmarks/cvpo_speed.py --fsrl-python FSRL_VENV/bin/python"),
    ("fed_oracle_speed", "python benchmarks/fed_oracle_speed.py"),
    ("meg_oracle_speed", "python benchmarks/meg_oracle_speed.py"),
    ("meg_threshold_policies", "python benchmarks/meg_threshold_policies.py"),
    ("env_throughput", "python benchmarks/env_throughput.py"),
    ("vector_throughput", "python benchmarks/vector_throughput.py"),
    ("fed_baselines", "python benchmarks/fed_baselines.py"),
    ("meg_policies", "python benchmarks/meg_policies.py"),
    (
        "meg_noise_sensitivity",
        "python benchmarks/meg_noise_sensitivity.py --retrain-iters 400",
    ),
    (
        "meg_noise_compression",
        "python benchmarks/meg_noise_sensitivity.py --compression-probe --vae-iters 1500",
    ),
    ("meg_noise_spectrum", "python benchmarks/meg_noise_sensitivity.py --spectrum"),
    ("meg_noise_gain_sweep", "python benchmarks/meg_noise_sensitivity.py --gain-sweep"),
    ("fed_ddpm_quantization", "python benchmarks/fed_ddpm_quantization.py"),
    ("split_vit_accuracy", "python benchmarks/split_vit_accuracy.py"),
    ("fresh_install", "python benchmarks/harness.py fresh_install TITLE bash benchmarks/fresh_install.sh"),
)

# The agents' learning targets (issue "Agents that work out of the box"): a gap bound per env and
# algorithm family; every seed must be feasible. MEG-v0's target is a normalised score
# (R - R_random) / (R_oracle - R_random) >= bound, i.e. gap <= (1 - bound) * random's gap.
TARGETS = {
    "edgegen/FedDiffusion-v0": {"cvpo": ("energy <= 1.05x oracle", 0.05), "ppo": ("<= 1.20x", 0.20)},
    "edgegen/MEG-v0": {"cvpo": ("score >= 0.9", 0.9), "ppo": ("score >= 0.7", 0.7)},
    "edgegen/SFLAM-v0": {"cvpo": ("objective <= 1.10x oracle", 0.10), "ppo": ("<= 1.25x", 0.25)},
}


def _provenance(info: dict[str, Any]) -> str:
    commit = info.get("commit") or "not recorded"
    dirty = " (with uncommitted changes)" if info.get("dirty") else ""
    took = f", {info['seconds']:.0f} s" if info.get("seconds") is not None else ""
    where = f"{info.get('date', '?')}, {info.get('machine', '?')}"
    return f"`{info['command']}` at commit {commit}{dirty}, {where}{took}"


def target_rows(rows: list[dict[str, Any]]) -> list[str]:
    """The targets table: per env and trained algorithm, seeds feasible and mean gap against the bound."""
    lines = [
        "| env | algo | steps | seeds feasible | mean gap | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for env_id, targets in TARGETS.items():
        env_rows = [r for r in rows if r["env"] == env_id]
        random_gap = next((r["optimality_gap"] for r in env_rows if r["policy"] == "random"), None)
        for algo in sorted({r["policy"] for r in env_rows if r["kind"] == "train"}):
            runs = [r for r in env_rows if r["policy"] == algo]
            text, bound = targets["cvpo" if algo == "cvpo" else "ppo"]
            gap = float(np.mean([r["optimality_gap"] for r in runs]))
            feasible = sum(r["feasible"] for r in runs)
            if env_id == "edgegen/MEG-v0":
                if random_gap is None:
                    continue
                score = 1.0 - gap / random_gap
                shown, met = f"{gap:.4g} (score {score:.3f})", score >= bound
            else:
                shown, met = f"{gap:.4g} ({1 + gap:.3f}x)", gap <= bound
            met = met and feasible == len(runs) and len(runs) >= 3
            steps = sorted({r["timesteps"] for r in runs})
            lines.append(
                f"| {env_id} | {algo} | {', '.join(map(str, steps))} | {feasible}/{len(runs)} | {shown} | "
                f"{text} | {'yes' if met else 'no'} |"
            )
    return lines


def build() -> str:
    """The text of BENCHMARKS.md."""
    out = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/report.py` from the recorded results (`docs/leaderboard/`, the",
        "headline suite's output, and `benchmarks/results/*.json`, written by each benchmark through",
        "`benchmarks/harness.py`): do not edit by hand. Each section says which command, commit and",
        "machine produced it. The history of experiments (tuning runs, diagnoses, numbers of earlier",
        "commits) is in [docs/experiments.md](docs/experiments.md).",
        "",
    ]
    info_path = LEADERBOARD / "run_info.json"
    if (LEADERBOARD / "leaderboard.md").is_file():
        board = (LEADERBOARD / "leaderboard.md").read_text().splitlines()
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        rows = json.loads((LEADERBOARD / "results.json").read_text())
        out += ["## Leaderboard", ""]
        if info:
            out += [f"Produced by {_provenance(info)}.", ""]
        # A leaderboard assembled from jobs of several runs says where each came from (PROVENANCE.md
        # in the suite folder, written by whoever assembled it, published with it); included as is.
        if (LEADERBOARD / "PROVENANCE.md").is_file():
            out += [*(LEADERBOARD / "PROVENANCE.md").read_text().strip().splitlines(), ""]
        # the suite's own title and provenance paragraph are replaced by the lines above
        body = board[3:] if board and board[0].startswith("# ") else board
        while body and not body[0].strip():
            body = body[1:]
        out += [line.replace("## ", "### ", 1) if line.startswith("## ") else line for line in body]
        out += [
            "",
            "![optimality gaps](docs/leaderboard/gaps.png)",
            "![costs against limits](docs/leaderboard/costs.png)",
            "![learning curves](docs/leaderboard/learning_curves.png)",
            "",
            "### The agents' learning targets, read from the leaderboard",
            "",
            "Every seed feasible and the mean gap within the bound (MEG-v0: normalised score"
            " `1 - gap / gap_random`).",
            "",
            *target_rows(rows),
            "",
        ]
    for name, command in SECTIONS:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            out += [
                f"## {name}",
                "",
                f"Not recorded since BENCHMARKS.md is generated: `{command}`. Its earlier results, with the"
                " commands and machines of their day, are in docs/experiments.md.",
                "",
            ]
            continue
        entry = json.loads(path.read_text())
        out += [f"## {entry['title']}", "", f"{_provenance(entry)}.", "", entry["markdown"], ""]
    return "\n".join(out).rstrip() + "\n"


PUBLISHED = ("leaderboard.md", "results.json", "results.csv", "run_info.json")


def publish(suite_out: Path) -> None:
    """Copy a suite's outputs (tables, records, figures; not its jobs) into docs/leaderboard/."""
    missing = [name for name in PUBLISHED if not (suite_out / name).is_file()]
    if missing:
        raise SystemExit(f"{suite_out} lacks {missing}: is it a finished suite's --out folder?")
    if json.loads((suite_out / "run_info.json").read_text()).get("tuning"):
        raise SystemExit(
            f"{suite_out} holds tuning runs (--tuning): they choose recipes, never a leaderboard"
        )
    LEADERBOARD.mkdir(parents=True, exist_ok=True)
    for path in [*(suite_out / name for name in PUBLISHED), *suite_out.glob("*.png")]:
        shutil.copy2(path, LEADERBOARD / path.name)
    # An assembled suite folder carries PROVENANCE.md; a plain run must not inherit an older one.
    provenance = suite_out / "PROVENANCE.md"
    if provenance.is_file():
        shutil.copy2(provenance, LEADERBOARD / provenance.name)
    else:
        (LEADERBOARD / provenance.name).unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaderboard", type=Path, help="a suite's --out folder to publish first")
    parser.add_argument("--check", action="store_true", help="exit 1 if BENCHMARKS.md is not up to date")
    args = parser.parse_args()
    if args.leaderboard is not None:
        publish(args.leaderboard)
    text = build()
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.is_file() else ""
        if current != text:
            print("BENCHMARKS.md is not up to date: run python benchmarks/report.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
