"""Short real runs through other RL libraries, each asserting that the costs arrive.

Marked ``integration``: they need TorchRL, tianshou, rl-baselines3-zoo and RLlib, which are no
dependency of this project. ``make test-integration`` installs them (the ``integrations`` extra) into
a venv of its own and runs this file with ``EDGEGEN_INTEGRATIONS=required``, where a missing library
fails the test; elsewhere each test skips when its library is missing.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import gymnasium as gym
import numpy as np
import pytest

import edgegen

pytestmark = pytest.mark.integration

IDS = sorted(i for i in gym.registry if i.startswith("edgegen/"))
assert edgegen  # the ids above are registered by the import


def _library(module: str) -> ModuleType:
    """Import ``module``; skip without it, unless ``EDGEGEN_INTEGRATIONS=required`` (then fail)."""
    if os.environ.get("EDGEGEN_INTEGRATIONS") == "required":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def _kwargs(env_id: str) -> dict:
    return {"preset": "small"} if env_id == "edgegen/SFLAM-v0" else {}


def _replay_costs(env_id: str, actions: np.ndarray, seed: int, extra_resets: int = 0) -> np.ndarray:
    """Each step's ``info["costs"]`` of a plain env reset with ``seed`` and driven by ``actions``."""
    env = gym.make(env_id, **_kwargs(env_id))
    env.reset(seed=seed)
    for _ in range(extra_resets):
        env.reset()
    return np.array([env.step(a)[4]["costs"] for a in actions])


@pytest.mark.parametrize("env_id", IDS)
def test_torchrl_gymenv_builds_the_env_and_reads_the_costs(env_id):
    # TorchRL probes with frameskip= and accepts only Python's TypeError wording; its info readers
    # need numpy scalars.
    torchrl_gym = _library("torchrl.envs.libs.gym")
    kwargs = _kwargs(env_id)
    env = torchrl_gym.GymEnv(env_id, **kwargs)
    env.set_info_dict_reader(torchrl_gym.default_info_dict_reader(["cost", "costs"]))
    env.set_seed(5)
    horizon = gym.make(env_id, **kwargs).unwrapped.horizon
    td = env.rollout(horizon + 1, break_when_any_done=False)
    spec = gym.make(env_id).unwrapped.cost_spec
    assert td["next", "costs"].shape == (horizon + 1, spec.num_costs)
    ratio = (td["next", "costs"].numpy() / spec.limits_array).max(axis=1)
    np.testing.assert_allclose(td["next", "cost"].numpy(), ratio, rtol=1e-12)
    assert int(td["next", "truncated"].sum()) == 1  # the configured horizon ends the episode once
    # The same costs as a plain env driven by TorchRL's actions (set_seed resets once, the rollout
    # resets again: one extra reset), the episode's last step included.
    expected = _replay_costs(env_id, td["action"].numpy()[:horizon], seed=5, extra_resets=1)
    np.testing.assert_allclose(td["next", "costs"].numpy()[:horizon], expected, rtol=1e-12)


@pytest.mark.parametrize("env_id", IDS)
def test_tianshou_collector_stores_every_steps_costs(env_id):
    tianshou_env = _library("tianshou.env")
    from tianshou.algorithm.algorithm_base import RandomActionPolicy
    from tianshou.data import Collector, VectorReplayBuffer

    kwargs = _kwargs(env_id)
    horizon = gym.make(env_id, **kwargs).unwrapped.horizon
    envs = tianshou_env.DummyVectorEnv([lambda: gym.make(env_id, **kwargs) for _ in range(2)])
    buffer = VectorReplayBuffer(4 * horizon, buffer_num=2)
    collector = Collector(RandomActionPolicy(envs.action_space[0]), envs, buffer)
    collector.reset(gym_reset_kwargs={"seed": 11})
    stats = collector.collect(n_step=2 * horizon)  # one whole episode per env
    assert stats.n_collected_episodes == 2
    first = buffer.buffers[0]
    assert len(first) == horizon
    costs = np.asarray(first.info["costs"])[:horizon]  # the storage holds the whole capacity
    assert costs.shape == (horizon, gym.make(env_id).unwrapped.cost_spec.num_costs)
    np.testing.assert_allclose(costs, _replay_costs(env_id, first.act[:horizon], seed=11), rtol=1e-12)
    assert bool(first.truncated[horizon - 1])  # the last step, with its cost, is in the buffer


def test_rl_zoo3_trains_ppo_lagrangian_on_the_shipped_recipe_and_the_costs_move_the_multipliers(
    tmp_path,
):
    _library("rl_zoo3")
    from edgegen.agents import PPOLagrangian
    from edgegen.integrations import rl_zoo3 as zoo

    env_id, n_steps, latency_limit = "edgegen/MEG-v0", 512, 0.5
    zoo.main(
        [
            "--algo", "ppo_lag", "--env", env_id, "-n", str(2 * n_steps), "--seed", "3",
            "--log-folder", str(tmp_path), "--env-kwargs", f"latency_s_limit:{latency_limit}",
            "energy_j_limit:1e9", "--hyperparams", f"n_steps:{n_steps}",
        ]
    )  # fmt: skip
    (saved,) = tmp_path.glob("ppo_lag/edgegen-MEG-v0_1/edgegen-MEG-v0.zip")
    model = PPOLagrangian.load(saved)
    recipe, _ = zoo.load_hyperparams("ppo-lag", env_id)
    assert model.batch_size == recipe["batch_size"] and model.n_steps == n_steps
    # Two rollouts, two gradient steps of lambda_lr * (cost / limit - 1) on the normalised error:
    # the energy multiplier stays at 0 (never near its limit), the latency one grows by about the
    # plain env's latency per step under the initial policy (std exp(-1)) over the limit.
    rng = np.random.default_rng(0)
    env = gym.make(env_id)
    latencies = []
    for episode in range(4):
        env.reset(seed=123 + episode)
        actions = np.clip(rng.normal(0.0, np.exp(-1.0), size=(64, 2)), -1, 1).astype(np.float32)
        latencies += [env.step(a)[4]["costs"][0] for a in actions]
    latency = np.mean(latencies)
    expected = 2 * model.lambda_lr * (latency / latency_limit - 1)
    assert model.lambdas[1] == 0.0
    assert model.lambdas[0] == pytest.approx(expected, rel=0.05)


def test_rl_zoo3_trains_ppo_pid_on_its_own_recipe_and_refuses_the_gradient_step(tmp_path):
    _library("rl_zoo3")
    from edgegen.integrations import rl_zoo3 as zoo

    env_id = "edgegen/FedDiffusion-v0"
    zoo.main(
        [
            "--algo", "ppo_pid", "--env", env_id, "-n", "1024", "--seed", "3",
            "--log-folder", str(tmp_path), "--env-kwargs", "deadline_miss_fraction_limit:0.01",
        ]
    )  # fmt: skip
    (saved,) = tmp_path.glob("ppo_pid/edgegen-FedDiffusion-v0_1/edgegen-FedDiffusion-v0.zip")
    model = zoo.PPOPIDLagrangian.load(saved)
    recipe, _ = zoo.load_hyperparams("ppo-pid", env_id)
    # ppo-pid.yml's FedDiffusion-v0 entry (pid_ki 0.03, ppo-lag.yml has none), the PID multiplier
    assert model.lagrangian == "pid" and model.pid_ki == recipe["pid_ki"] == 0.03
    assert model.n_steps == recipe["n_steps"] == 512 and model.num_timesteps == 1024
    # two updates of kp e + ki I + kd D; the integral is the sum of the two errors (both over 0 here:
    # a fresh policy misses far more than 1 % of the deadlines)
    e1, e2 = model._pid_integral[0] - (model._previous_cost[0] / 0.01 - 1), model._previous_cost[0] / 0.01 - 1
    assert e1 > 0 and e2 > 0
    assert model.lambdas[0] == pytest.approx(
        model.pid_kp * e2 + 0.03 * (e1 + e2) + model.pid_kd * max(0.0, e2 - e1)
    )
    with pytest.raises(ValueError, match=r"\['lambda_lr'\] do not apply to lagrangian='pid'"):
        zoo.main(
            [
                "--algo", "ppo_pid", "--env", env_id, "-n", "512", "--log-folder", str(tmp_path / "x"),
                "--hyperparams", "lambda_lr:0.3",
            ]
        )  # fmt: skip


def test_rllib_runs_ppo_in_a_worker_process_and_logs_episode_costs():
    _library("ray.rllib")
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    from edgegen.integrations.rllib import EpisodeCostCallback, register_envs

    env_id = "edgegen/MEG-v0"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert env_id in register_envs()
        config = (
            PPOConfig()
            .environment(env_id)  # the bare id: the worker never imported edgegen itself
            .callbacks(EpisodeCostCallback)
            .env_runners(num_env_runners=1, num_envs_per_env_runner=1)
            .training(train_batch_size_per_learner=256, minibatch_size=128, num_epochs=1)
            .debugging(seed=3)
        )
        algo = config.build_algo()
        runners = algo.train()["env_runners"]
        algo.stop()
    finally:
        ray.shutdown()
    # Every step of every episode summed (none dropped at the episode's end) ...
    assert runners["episode_cost_steps"] == runners["episode_len_mean"] == 64
    # ... and the sums on the scale of a plain env's under RLlib's initial policy (roughly
    # clip(N(0, 1))): a dropped cost reads 0, a doubled one 2x.
    rng = np.random.default_rng(0)
    env = gym.make(env_id)
    sums = []
    for episode in range(8):
        env.reset(seed=200 + episode)
        actions = np.clip(rng.normal(size=(64, 2)), -1, 1).astype(np.float32)
        sums.append(np.sum([env.step(a)[4]["costs"] for a in actions], axis=0))
    reference = np.mean(sums, axis=0)
    logged = [runners["episode_cost/latency_s"], runners["episode_cost/energy_j"]]
    np.testing.assert_allclose(logged, reference, rtol=0.3)


def test_rllib_register_envs_rejects_an_unknown_id():
    _library("ray.rllib")
    from edgegen.integrations.rllib import register_envs

    with pytest.raises(ValueError, match="env_ids: unknown ids"):
        register_envs(["edgegen/NoSuch-v0"])
