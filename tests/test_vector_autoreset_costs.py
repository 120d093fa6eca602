"""Costs of vector steps in both Gymnasium autoreset modes: nothing is lost at an episode's end."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import edgegen  # noqa: F401
from edgegen.envs.cmdp import vector_step_costs


def _episode_costs_single(env_id, seed, actions):
    """Reference: every episode's summed costs from one plain env, same seeds and actions."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    sums, total = [], 0.0
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        total += info["costs"]
        if terminated or truncated:
            sums.append(total)
            total = 0.0
            env.reset()
    return np.array(sums)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_step_costs_sum_to_the_plain_envs_episode_costs(mode):
    env_id, seed, steps = "edgegen/FedDiffusion-v0", 3, 130  # episodes of 50 steps: two end
    vec = gym.make_vec(env_id, num_envs=1, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode})
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, *vec.single_action_space.shape)).astype(np.float32)
    vec.reset(seed=seed)
    sums, total, naive, naive_sums, skip = [], 0.0, 0.0, [], False
    used = []
    for action in actions:
        if skip:  # NEXT_STEP: the step after an episode's end is the reset (its action is ignored)
            vec.step(action[None])
            skip = False
            continue
        _, _, terminated, truncated, info = vec.step(action[None])
        used.append(action)
        total += vector_step_costs(info)[0]
        naive += np.asarray(info["costs"])[0]
        if terminated[0] or truncated[0]:
            sums.append(total)
            naive_sums.append(naive)
            total, naive = 0.0, 0.0
            skip = mode == AutoresetMode.NEXT_STEP
    reference = _episode_costs_single(env_id, seed, used)
    assert len(sums) == 2
    np.testing.assert_allclose(sums, reference[:2], rtol=1e-12)
    if mode == AutoresetMode.SAME_STEP:  # reading info["costs"] alone misses each final step's cost
        final_costs = reference[:2] - np.array(naive_sums)
        assert np.all(final_costs >= 0) and np.any(final_costs > 0)
    else:
        np.testing.assert_allclose(naive_sums, reference[:2], rtol=1e-12)
