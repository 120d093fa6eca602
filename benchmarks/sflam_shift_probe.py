"""An SFLAM-v0 PPO policy with one kind of its deterministic actions shifted: rounds and objective.

Asks whether ``keep_best``'s calibration (agents/selection.py, ``shift_dims``) could move a trained
policy onto the latency limit by one scalar: every device's transmit power (actions ``3n + 2``) or
bit-width (``3n``) shifted by the same amount. For each shift it replays the deterministic policy on
the tuning block's 20 evaluation episodes (10000-10019) and prints the mean round latency, the
objective ``w_T T + w_E E + w_Q Q`` per round, and the mean power share and bit-width action played.

    python benchmarks/sflam_shift_probe.py suite_runs/<run>/jobs/<job> --kind power --shifts 0 0.5 1 2
    python benchmarks/sflam_shift_probe.py suite_runs/<run>/jobs/<job> --kind bits --shifts 0 -0.1 -0.2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import PPOLagrangian
from edgegen.agents.deployed import play_deterministic
from edgegen.agents.protocol import TUNING_EVAL_SEED

EPISODES = 20
OFFSETS = {"bits": 0, "power": 2}  # the action's index within a device's three


def _recording(model: PPOLagrangian, actions: list[np.ndarray]):
    """The deterministic policy as a function of one observation, appending each action to ``actions``."""

    def act(obs: np.ndarray) -> np.ndarray:
        actions.append(np.clip(model.predict(obs, deterministic=True)[0], -1.0, 1.0))
        return actions[-1]

    return act


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("job", type=Path, help="a suite job folder (model.zip) or a model.zip")
    parser.add_argument("--kind", choices=sorted(OFFSETS), default="power")
    parser.add_argument("--shifts", nargs="+", type=float, default=[0.0, 0.25, 0.5, 1.0, 2.0])
    args = parser.parse_args()
    model = PPOLagrangian.load(args.job / "model.zip" if args.job.is_dir() else args.job, device="cpu")
    env = gym.make("edgegen/SFLAM-v0")
    devices = int(np.prod(env.action_space.shape or (1,))) // 3
    dims = [3 * n + OFFSETS[args.kind] for n in range(devices)]
    last = TUNING_EVAL_SEED + EPISODES - 1
    print(f"{args.job}: {args.kind} actions shifted, episodes {TUNING_EVAL_SEED}-{last}")
    print("shift  | round T [s] | objective | power share u | bit-width action")
    for shift in args.shifts:
        with th.no_grad():
            model.policy.action_offset.zero_()
            model.policy.action_offset[dims] = shift
        actions: list[np.ndarray] = []
        act = _recording(model, actions)
        seeds: list[int | None] = [TUNING_EVAL_SEED + i for i in range(EPISODES)]
        reward, cost, _ = play_deterministic(act, env, seeds, 1, "probe")
        played = np.asarray(actions)
        power = (played[:, 2::3] + 1.0) / 2.0
        # the reward per round is minus the objective (SFLAM-v0's docstring)
        print(
            f"{shift:+.3f} | {cost[0]:.3f}       | {-reward:.3f}     | {power.mean():.3f}        | "
            f"{played[:, 0::3].mean():+.2f}"
        )


if __name__ == "__main__":
    main()
