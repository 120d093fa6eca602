"""FedDiffusion oracle: KKT solve time and accuracy against the cvxpy reference, for K devices.

Rounds are drawn from FedDiffusion-v0 itself (bandwidth scaled with K, 2 MHz per device). Both
solvers see the same rounds in the same run, each in its own loop (interleaving them lets cvxpy
evict the KKT solver's caches); the cvxpy time includes building the model, as a user would call it.
Times are medians over the rounds (KKT: best of 5 passes per round).

    python benchmarks/fed_oracle_speed.py [--devices 10 50 200] [--rounds 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import warnings

import cvxpy as cp
import gymnasium as gym
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.solvers.fed_energy import solve_round_cvxpy, solve_round_energy


def main() -> None:
    warnings.filterwarnings("ignore", message="Solution may be inaccurate")  # reported as status
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", type=int, default=[10, 50, 200])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, cvxpy {cp.__version__} (CLARABEL)")
    print(
        "| K | KKT median (ms) | cvxpy median (ms) | speed-up | worst (E_kkt - E_cvx) / E_cvx "
        "| KKT iterations | cvxpy status |"
    )
    print("|---|---|---|---|---|---|---|")
    for k in args.devices:
        env = gym.make("edgegen/FedDiffusion-v0", num_devices=k, total_bandwidth_hz=2e6 * k)
        env.reset(seed=k)
        episode = env.unwrapped._episode
        problems = [episode[r % episode.gain.shape[0]] for r in range(args.rounds)]
        kkt = [solve_round_energy(p) for p in problems]
        kkt_t = [min(solve_round_energy(p).solve_time_s for _ in range(5)) for p in problems]
        ref = [solve_round_cvxpy(p) for p in problems]
        cvx_t = [r.solve_time_s for r in ref]
        gaps = [
            (x.total_energy_j - y.total_energy_j) / y.total_energy_j for x, y in zip(kkt, ref, strict=True)
        ]
        iters = [x.iterations for x in kkt]
        statuses = sorted({r.status for r in ref})
        a, b = statistics.median(kkt_t), statistics.median(cvx_t)
        worst = max(gaps, key=abs)
        row = f"| {k} | {a * 1e3:.3f} | {b * 1e3:.1f} | {b / a:,.0f}x | {worst:+.1e} | {max(iters)} "
        print(row + f"| {', '.join(statuses)} |")


if __name__ == "__main__":
    with record("fed_oracle_speed", "FedDiffusion oracle: KKT against cvxpy"):
        main()
