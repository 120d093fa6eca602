"""Split federated ViT on the digits: test accuracy per round for alpha x activation bit-width.

10 devices (all participate every round), 5 local steps of 32 samples, Adam 1e-3, the tiny ViT of
``envs.backends.split_vit``; activations quantized at 2, 4, 8 or 32 bits (32: none); Dirichlet
alpha in {0.1, 0.5, 1.0}; accuracy of the averaged model on 359 held-out digits.

    python benchmarks/split_vit_accuracy.py [--rounds 40] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from harness import record

from edgegen.envs.backends.split_vit import SplitFederatedViT

OUT = Path(__file__).resolve().parent / "out"
ALPHAS, BITS = (0.1, 0.5, 1.0), (2, 4, 8, 32)


def curve(alpha: float, bits: int, rounds: int, seed: int, every: int = 2) -> list[float]:
    fl = SplitFederatedViT(num_devices=10, alpha=alpha, seed=seed)
    accuracy = []
    for r in range(rounds):
        fl.run_round(list(range(10)), [bits] * 10)
        if (r + 1) % every == 0:
            accuracy.append(fl.accuracy())
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    results = {
        f"{alpha}/{bits}": [curve(alpha, bits, args.rounds, s) for s in args.seeds]
        for alpha in ALPHAS
        for bits in BITS
    }
    print(
        f"{len(results) * len(args.seeds)} runs x {args.rounds} rounds in {time.perf_counter() - start:.0f} s"
    )
    print(
        "| alpha | "
        + " | ".join(f"{b}-bit" for b in BITS)
        + " |  (final accuracy, mean of seeds; last 3 evals)"
    )
    print("|---|" + "---|" * len(BITS))
    for alpha in ALPHAS:
        cells = [np.mean([np.mean(c[-3:]) for c in results[f"{alpha}/{b}"]]) for b in BITS]
        print(f"| {alpha} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    OUT.mkdir(exist_ok=True)
    (OUT / "split_vit_accuracy.json").write_text(json.dumps(results, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), sharey=True)
    for ax, alpha in zip(axes, ALPHAS, strict=True):
        for b in BITS:
            mean = np.mean(results[f"{alpha}/{b}"], axis=0)
            ax.plot(np.arange(1, mean.size + 1) * 2, mean, label=f"{b}-bit")
        ax.set(title=f"Dirichlet alpha = {alpha}", xlabel="round", ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "split_vit_accuracy.png", dpi=110)


if __name__ == "__main__":
    with record(
        "split_vit_accuracy",
        "Split federated ViT: accuracy against activation bit-width (SFLAM-v0's backend)",
    ):
        main()
