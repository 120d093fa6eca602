"""Native batched vector envs against Gymnasium's SyncVectorEnv (the reference, same run).

    python benchmarks/vector_throughput.py [--num-envs 1024] [--seconds 3] [--skip-training]

Rows: env steps per second of the batched env and of ``SyncVectorEnv`` at the same N (actions drawn
up front and cycled; resets included); the batched oracle's time per sub-env against the scalar
oracle called once per sub-env; PPOLagrangian's env steps per second on 64 batched sub-envs
(``agents.SB3VecEnv``) against SB3's ``DummyVecEnv`` of 64 scalar envs.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

import gymnasium as gym
import numpy as np
from harness import record

import edgegen  # noqa: F401  (registers the edgegen ids)

warnings.simplefilter("ignore")
IDS = ("edgegen/FedDiffusion-v0", "edgegen/MEG-v0", "edgegen/SFLAM-v0")


def steps_per_second(env: gym.vector.VectorEnv, seconds: float, min_steps: int = 0) -> float:
    env.reset(seed=0)
    pool = np.random.default_rng(0).uniform(-1, 1, (8, *env.action_space.shape)).astype(np.float32)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or steps < min_steps:
        env.step(pool[steps & 7])
        steps += 1
    return steps * env.num_envs / (time.perf_counter() - start)


def oracle_time(env_id: str, n: int, kwargs: dict) -> tuple[float, float]:
    batched = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point", **kwargs)
    batched.reset(seed=0)
    if env_id == "edgegen/MEG-v0":
        batched.oracle()  # MEG's policy is solved once per config and cached: time the per-frame choice
    start = time.perf_counter()
    batched.oracle()
    per_batched = (time.perf_counter() - start) / n
    single = gym.make(env_id, **kwargs).unwrapped
    start = time.perf_counter()
    for i in range(n):
        single.reset(seed=i)
        single.oracle()
    return per_batched, (time.perf_counter() - start) / n


def training(n_envs: int, steps: int) -> tuple[float, float]:
    from stable_baselines3.common.env_util import make_vec_env

    from edgegen.agents import PPOLagrangian, SB3VecEnv

    out = []
    for vec in (
        SB3VecEnv(
            gym.make_vec(
                "edgegen/FedDiffusion-v0",
                num_envs=n_envs,
                vectorization_mode="vector_entry_point",
                autoreset_mode="SameStep",
            )
        ),
        make_vec_env("edgegen/FedDiffusion-v0", n_envs=n_envs, seed=0),
    ):
        model = PPOLagrangian("MlpPolicy", vec, n_steps=64, batch_size=1024, seed=0, lagrangian="pid")
        start = time.perf_counter()
        model.learn(steps)
        out.append(steps / (time.perf_counter() - start))
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}"
    )
    n = args.num_envs
    cartpole = gym.make("CartPole-v1")
    cartpole.reset(seed=0)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < args.seconds:
        if any(cartpole.step(steps & 1)[2:4]):
            cartpole.reset()
        steps += 1
    cartpole_rate = steps / (time.perf_counter() - start)
    print(f"machine speed: CartPole-v1 (gymnasium.make) {cartpole_rate:,.0f} steps/s on one core")
    print(f"\n| env (N = {n}) | batched steps/s | SyncVectorEnv steps/s | speed-up | batched / CartPole |")
    print("|---|---|---|---|---|")
    for env_id in IDS:
        batched = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
        sync = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
        # SFLAM-v0 draws 16 episodes per unseeded reset (20 assignment problems each): run whole
        # blocks, 16 episodes of 20 rounds, so that the draws are amortised as in a long run.
        blocks = 2 * 16 * 20 + 20 if env_id == "edgegen/SFLAM-v0" else 0
        b = steps_per_second(batched, args.seconds, blocks)
        s = steps_per_second(sync, args.seconds, min(blocks, 60))
        print(f"| {env_id} | {b:,.0f} | {s:,.0f} | {b / s:.1f}x | {b / cartpole_rate:.1f}x |")
    print("\n| oracle | sub-envs | batched, per sub-env | scalar oracle, per call | speed-up |")
    print("|---|---|---|---|---|")
    for env_id, count, kwargs in (
        ("edgegen/FedDiffusion-v0", n, {}),
        ("edgegen/MEG-v0", n, {}),
        ("edgegen/SFLAM-v0", 8, {"preset": "small"}),
    ):
        batched_s, scalar_s = oracle_time(env_id, count, kwargs)
        label = env_id + (" (small)" if kwargs else "")
        times = f"{batched_s * 1e6:,.1f} us | {scalar_s * 1e6:,.1f} us"
        print(f"| {label} | {count} | {times} | {scalar_s / batched_s:.1f}x |")
    if not args.skip_training:
        batched_rate, dummy_rate = training(64, 64 * 64 * 4)
        print("\n| PPOLagrangian on FedDiffusion-v0, 64 sub-envs | env steps/s |")
        print("|---|---|")
        print(f"| batched env (SB3VecEnv) | {batched_rate:,.0f} |")
        print(f"| DummyVecEnv of scalar envs | {dummy_rate:,.0f} |")


if __name__ == "__main__":
    with record("vector_throughput", "Batched vector envs against SyncVectorEnv"):
        main()
