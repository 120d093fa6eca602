"""Why CVPO's policy on FedDiffusion-v0 stops short of the oracle: its critics against the true reward.

Trains CVPO (per-device actor, gamma 0.5, infinite-horizon threshold, plus the options given) for
--timesteps steps, then on the 20 seeded evaluation episodes (seeds 10000-10019) reports the
deterministic policy's energy against the oracle's and its action error by range of the oracle's
action; and on 30 other states, the critics' slope in one device's action (the others fixed) against
the env's true reward slope, by central differences of +-0.05.

    python benchmarks/cvpo_fed_probe.py [--timesteps 10000] [--entity-critic-hidden 32 32] [--min-std 0.2]
"""

from __future__ import annotations

import argparse
import copy

import gymnasium as gym
import numpy as np
import torch as th

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents.cvpo import CVPO, CVPOConfig

ENV = "edgegen/FedDiffusion-v0"


def energy_and_action_error(model: CVPO) -> None:
    env = gym.make(ENV).unwrapped
    energy, oracle_energy, late, actions, oracle_actions = [], [], [], [], []
    for episode in range(20):
        obs, _ = env.reset(seed=10_000 + episode)
        for _ in range(env.config.num_rounds):
            action, oracle = model.predict(obs)[0], env.oracle_action()
            oracle_energy.append(copy.deepcopy(env).step(oracle)[4]["device_energy_j"])
            obs, *_, info = env.step(action)
            energy.append(info["device_energy_j"])
            late.append(info["late"])
            actions.append(action)
            oracle_actions.append(oracle)
    e, e_oracle, late_a = np.array(energy), np.array(oracle_energy), np.array(late)
    error = np.array(actions) - np.array(oracle_actions)
    print(
        f"energy / oracle {e.sum() / e_oracle.sum():.3f}; late devices {late_a.mean():.4f}, their energy "
        f"{e[late_a].sum() / e_oracle[late_a].sum():.3f} of the oracle's for them; "
        f"mean |action - oracle's| {np.abs(error).mean():.3f}"
    )
    for low, high in ((-1.0, -0.5), (-0.5, 0.0), (0.0, 0.5), (0.5, 1.0)):
        where = (np.array(oracle_actions) >= low) & (np.array(oracle_actions) < high)
        if where.any():
            print(
                f"  oracle's action in [{low}, {high}): mean error {error[where].mean():+.3f} ({where.sum()})"
            )


def critic_slopes(model: CVPO, h: float = 0.05) -> None:
    env = gym.make(ENV).unwrapped
    critic, true = [], []
    for episode in range(3):
        obs, _ = env.reset(seed=20_000 + episode)
        for _ in range(10):
            action = model.predict(obs)[0]
            for k in range(action.size):
                pair = np.repeat(action[None], 2, 0)
                pair[0, k], pair[1, k] = action[k] - h, action[k] + h
                pair = np.clip(pair, -1.0, 1.0)
                with th.no_grad():
                    q_r = model.critics(th.as_tensor(np.repeat(obs[None], 2, 0)), th.as_tensor(pair))[0]
                q = q_r.min(0).values.numpy()
                critic.append(q[1] - q[0])
                true.append(copy.deepcopy(env).step(pair[1])[1] - copy.deepcopy(env).step(pair[0])[1])
            obs, *_ = env.step(action)
    critic_a, true_a = np.array(critic), np.array(true)
    print(
        f"critic slope vs true slope: correlation {np.corrcoef(critic_a, true_a)[0, 1]:.3f}, "
        f"std {critic_a.std():.4f} against {true_a.std():.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--entity-critic-hidden", type=int, nargs="+")
    parser.add_argument("--min-std", type=float)
    args = parser.parse_args()
    th.set_num_threads(1)
    config = CVPOConfig(
        updates_per_step=0.2,
        entity_dims=(3, 1),
        infinite_horizon_threshold=True,
        gamma=0.5,
        entity_critic_hidden=None if args.entity_critic_hidden is None else tuple(args.entity_critic_hidden),
        min_std=args.min_std,
    )
    model = CVPO(gym.make(ENV), config, seed=args.seed)
    model.learn(args.timesteps)
    with th.no_grad():
        std = model.actor(th.zeros(1, model.obs_dim))[1][0, 0].item()
    print(f"after {args.timesteps} steps ({model.num_updates} updates): policy std {std:.3f}")
    energy_and_action_error(model)
    critic_slopes(model)


if __name__ == "__main__":
    main()
