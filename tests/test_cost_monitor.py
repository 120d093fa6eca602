"""SB3 with the episode cost monitor: a real PPO run logs each episode's cost sums."""

import csv

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

import edgegen  # noqa: F401
from edgegen.agents.monitor import cost_monitor


def test_sb3_ppo_logs_every_episodes_cost_sum(tmp_path):
    # One episode by hand: the monitor's sum is the sum of the steps' info["costs"]
    env = cost_monitor(gym.make("edgegen/FedDiffusion-v0"), filename=str(tmp_path / "run"))
    env.reset(seed=4)
    total, rng = 0.0, np.random.default_rng(0)
    for _ in range(50):  # one whole episode (50 rounds)
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape))
        total += info["costs"][0]
    assert terminated or truncated
    assert info["episode"]["episode_cost/deadline_miss_fraction"] == total
    env.close()
    rows = list(csv.reader((tmp_path / "run.monitor.csv").open()))
    assert rows[1][-1] == "episode_cost/deadline_miss_fraction"
    assert float(rows[2][-1]) == total

    # and through SB3's training loop: ep_info_buffer holds the sums that the rollout's steps add up to
    class StepCosts(BaseCallback):
        def __init__(self):
            super().__init__()
            self.running, self.finished = np.zeros(2), []

        def _on_step(self):
            self.running += [info["costs"][0] for info in self.locals["infos"]]
            for i in np.flatnonzero(self.locals["dones"]):
                self.finished.append(self.running[i])
                self.running[i] = 0.0
            return True

    vec = make_vec_env("edgegen/FedDiffusion-v0", n_envs=2, seed=1, wrapper_class=cost_monitor)
    steps = StepCosts()
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=1, seed=1).learn(128, callback=steps)
    sums = [ep["episode_cost/deadline_miss_fraction"] for ep in model.ep_info_buffer]
    assert len(sums) == 2  # two envs x 64 steps: one 50-round episode each
    np.testing.assert_allclose(sorted(sums), sorted(steps.finished), rtol=1e-12)
    assert max(sums) > 0  # random early actions miss deadlines
