"""The OmniSafe adapter against a plain env (OmniSafe cannot be installed here: docs/integrations.md)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from edgegen.integrations.omnisafe import EdgeGenCMDP


@pytest.mark.parametrize(("env_id", "cost"), [("edgegen/MEG-v0", "cost"), ("edgegen/MEG-v0", "energy_j"),
                                              ("edgegen/FedDiffusion-v0", "cost")])  # fmt: skip
def test_adapter_steps_are_the_plain_envs_as_float32_tensors_over_a_whole_episode(env_id, cost):
    adapter = EdgeGenCMDP(env_id, cost=cost)
    plain = gym.make(env_id)
    adapter.set_seed(4)  # OmniSafe seeds first, then resets
    obs, _ = adapter.reset()
    ref_obs, _ = plain.reset(seed=4)
    np.testing.assert_array_equal(obs.numpy(), ref_obs.astype(np.float32))
    spec = plain.unwrapped.cost_spec
    rng = np.random.default_rng(0)
    steps = 0
    while True:
        action = rng.uniform(-1, 1, size=plain.action_space.shape).astype(np.float32)
        obs, reward, c, terminated, truncated, _ = adapter.step(torch.as_tensor(action))
        steps += 1
        ref_obs, ref_reward, ref_term, ref_trunc, ref_info = plain.step(action)
        assert all(t.dtype == torch.float32 for t in (obs, reward, c, terminated, truncated))
        np.testing.assert_array_equal(obs.numpy(), ref_obs.astype(np.float32))
        assert reward.item() == pytest.approx(float(ref_reward), rel=1e-6)
        expected = ref_info["cost"] if cost == "cost" else ref_info["costs"][spec.names.index(cost)]
        assert c.item() == pytest.approx(float(expected), rel=1e-6)
        assert (bool(terminated), bool(truncated)) == (ref_term, ref_trunc)
        if ref_term or ref_trunc:
            break
    assert bool(truncated) and steps == adapter.max_episode_steps == plain.unwrapped.horizon
    expected_limit = 1.0 if cost == "cost" else spec.limits[spec.names.index(cost)]
    assert adapter.cost_limit == expected_limit
    # OmniSafe's auto-reset wrapper resets after the last step; the stream goes on.
    obs, _ = adapter.reset()
    np.testing.assert_array_equal(obs.numpy(), plain.reset()[0].astype(np.float32))


def test_adapter_rejects_unknown_ids_and_cost_names():
    with pytest.raises(ValueError, match="env_id: 'CartPole-v1' is not an edgegen id"):
        EdgeGenCMDP("CartPole-v1")
    with pytest.raises(ValueError, match=r"cost must be 'cost' or one of \['latency_s', 'energy_j'\]"):
        EdgeGenCMDP("edgegen/MEG-v0", cost="latency")


def test_adapter_passes_env_kwargs_and_declares_the_wrappers_omnisafe_should_add():
    adapter = EdgeGenCMDP("edgegen/SFLAM-v0", preset="small", cost="round_latency_s")
    assert adapter.max_episode_steps == gym.make("edgegen/SFLAM-v0", preset="small").unwrapped.horizon
    assert adapter.need_auto_reset_wrapper and not adapter.need_time_limit_wrapper
    assert set(EdgeGenCMDP.support_envs()) == {i for i in gym.registry if i.startswith("edgegen/")}
