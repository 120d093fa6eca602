"""Federated DDPM under four upload schemes: quality (Frechet distance), upload bits and energy.

For each seed, FedDiffusion-v0 (default preset) draws the devices' demanded bits; the same federated
run (``envs.backends.federated_ddpm``, 10 devices, same data split and initial model) is trained for
R rounds under no quantization (32 bit), fixed 8-bit (below the 16-bit devices' demand), fixed at
the highest demanded bit-width (16: meets every demand) and on-demand (each device at its demanded
bits). Paired differences to 32-bit over seeds with 95 % t-intervals back any "same quality" claim.
Reported per scheme: the Frechet distance of 200 seeded samples to held-out images, the
held-out denoising loss, the total upload bits of the small model, and the energy FedDiffusion-v0's
system model (CIFAR-10 DDPM scale) spends over the same R rounds at the oracle allocation.

    python benchmarks/fed_ddpm_quantization.py [--seeds 0 1 2] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.federated_ddpm import FederatedDDPM
from edgegen.envs.quantization import payload_bits
from edgegen.solvers.fed_energy import solve_round_energy, with_payload

OUT = Path(__file__).resolve().parent / "out"
SCHEMES = ("none (32-bit)", "fixed 8-bit", "fixed 16-bit (highest demand)", "on-demand")


def run_seed(seed: int, rounds: int) -> dict[str, dict[str, float]]:
    env = gym.make("edgegen/FedDiffusion-v0")
    env.reset(seed=seed)
    demanded = env.unwrapped.episode_constants()["demanded_bits"]
    problem = env.unwrapped.episode_problem()
    out = {}
    for scheme in SCHEMES:
        bits = {
            "none (32-bit)": np.full(10, 32),
            "fixed 8-bit": np.full(10, 8),
            "fixed 16-bit (highest demand)": np.full(10, max(env.unwrapped.config.demanded_bits_choices)),
            "on-demand": demanded,
        }[scheme]
        energy = solve_round_energy(
            with_payload(problem, payload_bits(env.unwrapped.config.num_params, bits))
        )
        start = time.perf_counter()
        fl = FederatedDDPM(seed=seed)
        total_bits = 0.0
        for _ in range(rounds):
            total_bits += float(fl.run_round(bits).upload_bits.sum())
        out[scheme] = {
            "frechet_distance": fl.frechet_distance(),
            "heldout_loss": fl.heldout_loss(),
            "upload_mbit": total_bits / 1e6,
            "energy_j": float(energy.total_energy_j[:rounds].sum()),
            "mean_bits": float(np.mean(bits)),
            "seconds": time.perf_counter() - start,
        }
        print(seed, scheme, {k: round(v, 4) for k, v in out[scheme].items()}, file=sys.stderr, flush=True)
    return out


def plot(results: dict[int, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, key, label in zip(
        axes,
        ("frechet_distance", "upload_mbit", "energy_j"),
        ("Frechet distance (lower is better)", "upload per run [Mbit]", "energy per run [J]"),
        strict=True,
    ):
        values = np.array([[results[s][scheme][key] for scheme in SCHEMES] for s in results])
        ax.bar(
            range(len(SCHEMES)),
            values.mean(axis=0),
            yerr=values.std(axis=0, ddof=1) if len(results) > 1 else None,
            color=["#777", "#4a7", "#a74", "#47a"],
            capsize=4,
        )
        for i in range(len(SCHEMES)):
            ax.scatter(np.full(len(values), i), values[:, i], color="k", s=8, zorder=3)
        ax.set_xticks(range(len(SCHEMES)), ["32-bit", "8-bit", "16-bit", "on-demand"])
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    results = {seed: run_seed(seed, args.rounds) for seed in args.seeds}
    print(
        f"\n{len(args.seeds)} seeds x {len(SCHEMES)} schemes x {args.rounds} rounds in "
        f"{time.perf_counter() - start:.0f} s"
    )
    print(
        "| scheme | Frechet distance (mean +- std over seeds) | held-out loss | upload [Mbit] | energy [J] |"
    )
    print("|---|---|---|---|---|")
    for scheme in SCHEMES:
        col = {
            k: np.array([results[s][scheme][k] for s in args.seeds]) for k in results[args.seeds[0]][scheme]
        }
        fd = col["frechet_distance"]
        print(
            f"| {scheme} | {fd.mean():.1f} +- {fd.std(ddof=1) if fd.size > 1 else 0:.1f} | "
            f"{col['heldout_loss'].mean():.4f} | {col['upload_mbit'].mean():.1f} | "
            f"{col['energy_j'].mean():.1f} |"
        )
    # Quality claims need intervals: paired differences to 32-bit over seeds (same data, split and
    # initial model per seed), mean and 95 % t-interval.
    from scipy import stats

    print(
        "\n| scheme - 32-bit | Frechet distance difference (95 % CI) | held-out loss difference (95 % CI) |"
    )
    print("|---|---|---|")
    verdicts = []
    for scheme in SCHEMES[1:]:
        cells = []
        for key in ("frechet_distance", "heldout_loss"):
            diff = np.array([results[s][scheme][key] - results[s][SCHEMES[0]][key] for s in args.seeds])
            half = stats.t.ppf(0.975, diff.size - 1) * diff.std(ddof=1) / np.sqrt(diff.size)
            cells.append(f"{diff.mean():+.4g} [{diff.mean() - half:+.4g}, {diff.mean() + half:+.4g}]")
            # "Same quality" is an equivalence claim: it holds at a margin only if the whole interval
            # lies inside it. Reported as the smallest margin (in % of 32-bit's mean) the data support.
            base = np.mean([results[s][SCHEMES[0]][key] for s in args.seeds])
            margin = 100.0 * max(abs(diff.mean() - half), abs(diff.mean() + half)) / abs(base)
            verdicts.append(
                f"- {scheme}, {key}: equal to 32-bit within {margin:.1f} % "
                f"({'shown at a 5 % margin' if margin <= 5.0 else 'equal quality not shown at a 5 % margin'})"
            )
        print(f"| {scheme} | {cells[0]} | {cells[1]} |")
    print("\nEquivalence (95 % interval of the paired difference inside +- margin of the 32-bit mean):")
    print("\n".join(verdicts))
    OUT.mkdir(exist_ok=True)
    (OUT / "fed_ddpm_quantization.json").write_text(json.dumps(results, indent=2))
    plot(results, OUT / "fed_ddpm_quantization.png")


if __name__ == "__main__":
    with record(
        "fed_ddpm_quantization", "Federated DDPM under four upload schemes (FedDiffusion-v0's live backend)"
    ):
        main()
