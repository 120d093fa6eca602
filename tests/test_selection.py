"""agents.selection: the best feasible snapshot, judged on fixed episodes, is the one kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import configure
from toy_cmdp import ToyCMDP, deterministic_cost_per_step

from edgegen.agents import CVPO, PPOLagrangian, selection
from edgegen.agents.selection import KeepBest, KeepBestFeasible

HORIZON = 10  # ToyCMDP's episode length


def _model(limit: float = 0.3, **kwargs) -> PPOLagrangian:
    env = make_vec_env(ToyCMDP, n_envs=1, seed=0, env_kwargs={"limit": limit})  # on u0
    model = PPOLagrangian("MlpPolicy", env, n_steps=32, batch_size=32, seed=0, **kwargs)
    model.set_logger(configure(None, []))  # learn() sets one; the tests that drive the callback need it
    return model


def _play(model: PPOLagrangian, u: tuple[float, float]) -> None:
    """Make the deterministic action ``a = 2u - 1`` whatever the observation."""
    with th.no_grad():
        model.policy.action_net.weight.zero_()
        model.policy.action_net.bias.copy_(th.tensor([2 * u[0] - 1, 2 * u[1] - 1]))


def _action_bias(model: PPOLagrangian) -> np.ndarray:
    return (model.policy.action_net.bias.detach().numpy() + 1) / 2


@pytest.mark.parametrize(
    ("margin", "kept"),
    [
        (0.0, (0.28, 0.9)),  # reward 1.18, cost 0.28 <= 0.3: the best of the feasible snapshots
        (0.1, (0.1, 1.0)),  # limit 0.27: (0.28, 0.9) is out, (0.1, 1.0) at reward 1.1 is the best left
    ],
)
def test_the_best_feasible_snapshot_is_loaded_and_each_evaluation_counts_its_steps(margin, kept):
    model = _model()
    callback = KeepBestFeasible(KeepBest(every_steps=100, episodes=3, margin=margin))
    callback.init_callback(model)
    snapshots = [(0.2, 0.5), (0.5, 1.0), (0.28, 0.9), (0.1, 1.0)]  # rewards 0.7, 1.5 (cost 0.5), 1.18, 1.1
    for u in snapshots:
        _play(model, u)
        before = model.num_timesteps
        callback._evaluate()
        assert model.num_timesteps == before + 3 * HORIZON
    _play(model, (0.6, 0.6))  # the last policy, over the limit
    callback.on_training_end()
    np.testing.assert_allclose(_action_bias(model), kept, atol=1e-6)
    steps = [3 * HORIZON * i for i in range(4)]
    assert model.selected_step == steps[snapshots.index(kept)]
    rewards = [h[1] for h in callback.history]
    np.testing.assert_allclose(rewards, [0.7, 1.5, 1.18, 1.1, 1.2], atol=1e-6)
    assert [h[3] for h in callback.history] == [True, False, margin == 0.0, True, False]


def test_with_no_feasible_snapshot_the_last_policy_stays():
    model = _model()
    callback = KeepBestFeasible(KeepBest(every_steps=100, episodes=1))
    callback.init_callback(model)
    _play(model, (0.9, 1.0))
    callback._evaluate()
    _play(model, (0.5, 0.2))
    callback.on_training_end()
    np.testing.assert_allclose(_action_bias(model), (0.5, 0.2), atol=1e-6)
    assert model.selected_step is None


@pytest.fixture
def added_callbacks(monkeypatch) -> list[KeepBestFeasible]:
    """The callbacks learn() adds (through ``with_selection``), kept to read their history."""
    seen: list[KeepBestFeasible] = []

    def spy(settings: KeepBest) -> KeepBestFeasible:
        seen.append(KeepBestFeasible(settings))
        return seen[-1]

    monkeypatch.setattr(selection, "KeepBestFeasible", spy)
    return seen


def test_learn_keeps_the_history_best_and_counts_the_selection_steps(added_callbacks):
    # limit 0.5: the untrained policy's u0 is ~0.49, so some snapshots pass and some may not
    model = _model(limit=0.5, keep_best={"every_steps": 64, "episodes": 2})
    model.learn(320)
    (spy,) = added_callbacks
    # rollouts of 32 steps; an evaluation (2 episodes x 10 steps) once 64 more steps have passed, and
    # one at the end, after the budget: the selection's steps count in it
    n = len(spy.history)
    assert n >= 4
    training_steps = model.num_timesteps - 20 * n
    assert training_steps % 32 == 0
    assert training_steps < 320 <= training_steps + 20 * (n - 1)
    assert [h[0] for h in spy.history[:2]] == [64, 128]
    feasible = [(reward, step) for step, reward, cost, ok in spy.history if ok]
    for _, _, cost, ok in spy.history:
        assert ok == bool(cost[0] <= 0.5)
    assert feasible
    _best_reward, best_step = max(feasible)
    assert model.selected_step == best_step
    # the loaded policy plays what the selection measured for it
    assert deterministic_cost_per_step(model, 1) == pytest.approx(
        next(cost[0] for step, _, cost, _ in spy.history if step == best_step), abs=1e-6
    )


def test_cvpo_keeps_its_best_feasible_snapshot_too(added_callbacks):
    env = make_vec_env(ToyCMDP, n_envs=1, seed=0, env_kwargs={"limit": 0.5})
    model = CVPO(
        "MlpPolicy",
        env,
        seed=0,
        learning_starts=100,
        threshold_horizon=HORIZON,
        keep_best={"every_steps": 100, "episodes": 2},
    )
    model.learn(400)
    (spy,) = added_callbacks
    assert [h[0] for h in spy.history[:2]] == [100, 200]
    feasible = [(reward, step) for step, reward, cost, ok in spy.history if ok]
    assert feasible
    assert model.selected_step == max(feasible)[1]
    kept = next(cost[0] for step, _, cost, _ in spy.history if step == model.selected_step)
    assert deterministic_cost_per_step(model, 1) == pytest.approx(kept, abs=1e-6)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ({"every_steps": 0}, ValueError, "keep_best.every_steps must be an int >= 1, got 0"),
        ({"every_steps": 10, "episodes": 2.0}, ValueError, "keep_best.episodes must be an int >= 1"),
        ({"every_steps": 10, "margin": 1.0}, ValueError, r"keep_best.margin must be in \[0, 1\), got 1.0"),
        ({"every_steps": 10, "period": 3}, TypeError, r"unknown keys \['period'\]"),
        (5000, TypeError, "keep_best must be a mapping"),
    ],
)
def test_bad_settings_name_the_field_and_the_range(value, error, match):
    with pytest.raises(error, match=match):
        _model(keep_best=value)


def test_the_setting_survives_save_and_load(tmp_path):
    model = _model(keep_best={"every_steps": 50, "episodes": 2, "margin": 0.05})
    model.save(tmp_path / "m")
    loaded = PPOLagrangian.load(tmp_path / "m")
    assert loaded.keep_best == KeepBest(every_steps=50, episodes=2, margin=0.05)
