"""What SFLAM-v0 agents do differently from the CMDP oracle: bit-widths, finish times, power, objective terms.

For each saved PPOLagrangian model (a suite job's ``model.zip``) and the CMDP oracle, on the tuning
block's 20 evaluation episodes (10000-10019), deterministic actions: the share of device-rounds at
each bit-width; the mean round latency T, energy E and quantization bound Q with their weighted terms
of the objective ``w_T T + w_E E + w_Q Q``; the mean spread between a round's first and last device
to finish (the oracle finishes them together: a device done early had bandwidth or power to spare);
the mean transmit power.

    python benchmarks/sflam_policy_anatomy.py suite_runs/<run>/jobs/<job> [...]
    python benchmarks/sflam_policy_anatomy.py runs/<run>/checkpoints/model_<steps>_steps.zip [...]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy, PPOLagrangian
from edgegen.agents.protocol import TUNING_EVAL_SEED

EPISODES = 20
BITS = (2, 4, 8, 16, 32)


def anatomy(act: Callable[[np.ndarray], np.ndarray], env: gym.Env) -> dict[str, float]:
    """Per-round means of the policy ``act`` (observation -> action) over the tuning episodes."""
    bits, spread, power, latency, energy, quant, objective = [], [], [], [], [], [], []
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=TUNING_EVAL_SEED + episode)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(act(obs))
            done = terminated or truncated
            bits.append(info["bits"])
            spread.append(np.ptp(info["latency_s"]))
            power.append(np.mean(info["power_w"]))
            latency.append(info["costs"][0])
            energy.append(np.sum(info["energy_j"]))
            quant.append(info["quantization"])
            objective.append(info["objective"])
    cfg = env.unwrapped.config
    all_bits = np.concatenate(bits)
    row = {f"{b}-bit": float(np.mean(all_bits == b)) for b in BITS}
    row.update(
        T=float(np.mean(latency)),
        E=float(np.mean(energy)),
        Q=float(np.mean(quant)),
        spread=float(np.mean(spread)),
        power=float(np.mean(power)),
        objective=float(np.mean(objective)),
    )
    row.update(
        wT=cfg.latency_weight * row["T"],
        wE=cfg.energy_weight * row["E"],
        wQ=cfg.quantization_weight * row["Q"],
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("jobs", nargs="+", help="suite job folders holding model.zip, or saved models (.zip)")
    args = parser.parse_args()
    env = gym.make("edgegen/SFLAM-v0")
    oracle = OraclePolicy(env)
    rows = {"CMDP oracle": anatomy(lambda obs: oracle.predict(obs, deterministic=True)[0], env)}
    for job in args.jobs:
        path = job if job.endswith(".zip") else f"{job}/model.zip"
        model = PPOLagrangian.load(path, device="cpu")
        rows[job.rstrip("/").split("/")[-1].removesuffix(".zip")] = anatomy(
            lambda obs, model=model: model.predict(obs, deterministic=True)[0], env
        )
    print(
        "| policy | " + " | ".join(f"{b}-bit" for b in BITS) + " | T [s] | E [J] | Q | w_T T | w_E E | w_Q Q "
        "| objective | finish spread [s] | power [W] |"
    )
    print("|---|" + "---|" * (len(BITS) + 10))
    for name, r in rows.items():
        shares = " | ".join(f"{r[f'{b}-bit']:.2f}" for b in BITS)
        print(
            f"| {name} | {shares} | {r['T']:.3f} | {r['E']:.3f} | {r['Q']:.4f} | {r['wT']:.3f} | "
            f"{r['wE']:.3f} | {r['wQ']:.3f} | {r['objective']:.3f} | {r['spread']:.3f} | {r['power']:.3f} |"
        )


if __name__ == "__main__":
    main()
