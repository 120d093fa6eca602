import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy


def test_oracle_policy_on_a_single_env():
    env = gym.make("edgegen/FedDiffusion-v0")
    obs, _ = env.reset(seed=0)
    action, state = OraclePolicy(env).predict(obs)
    assert state is None
    np.testing.assert_array_equal(action, env.unwrapped.oracle_action())


def test_oracle_policy_on_vector_envs_acts_per_env():
    sb3_vec = make_vec_env("edgegen/FedDiffusion-v0", n_envs=2, seed=3)
    obs = sb3_vec.reset()
    actions, _ = OraclePolicy(sb3_vec).predict(obs)
    expected = np.stack([e.unwrapped.oracle_action() for e in sb3_vec.envs])
    np.testing.assert_array_equal(actions, expected)
    assert not np.array_equal(actions[0], actions[1])

    gym_vec = gym.make_vec("edgegen/FedDiffusion-v0", num_envs=2, vectorization_mode="sync")
    gym_vec.reset(seed=[1, 2])
    actions, _ = OraclePolicy(gym_vec).predict(None)
    np.testing.assert_array_equal(actions[1], gym_vec.envs[1].unwrapped.oracle_action())


def test_env_without_oracle_is_rejected():
    with pytest.raises(ValueError, match="has no oracle"):
        OraclePolicy(gym.make("CartPole-v1"))
