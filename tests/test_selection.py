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
        ({"every_steps": 10, "shift_max": 0.0}, ValueError, r"shift_max must be in \(0, 2\], got 0.0"),
        ({"every_steps": 10, "shift_dims": [-1]}, ValueError, "shift_dims must be a list of action"),
        ({"every_steps": 10, "shift_dims": [0, 0]}, ValueError, r"lists an action twice: \[0, 0\]"),
        ({"every_steps": 10, "shift_iters": 0}, ValueError, "keep_best.shift_iters must be an int >= 1"),
        ({"every_steps": 10, "shift_sign": 2}, ValueError, "keep_best.shift_sign must be 1 or -1, got 2"),
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


# --- calibration of the kept policy's deterministic action (shift_dims) --------------------------------
# The toy's cost is u0 = (a0 + 1) / 2 with limit 0.3: a shift d of a0 moves u0 by d / 2, so a policy at
# u0 = 0.2 meets the limit up to d = 0.2, and one at u0 = 0.4 needs d = -0.2.


def _calibrated(u0: float, shift_max: float = 0.25, iters: int = 6) -> tuple[PPOLagrangian, KeepBestFeasible]:
    model = _model()
    settings = KeepBest(every_steps=100, episodes=3, shift_dims=(0,), shift_max=shift_max, shift_iters=iters)
    callback = KeepBestFeasible(settings)
    callback.init_callback(model)
    _play(model, (u0, 0.5))
    callback.on_training_end()
    return model, callback


@pytest.mark.parametrize("u0", [0.2, 0.4])
def test_calibration_finds_the_largest_feasible_shift_by_bisection(u0):
    iters = 6
    model, callback = _calibrated(u0, iters=iters)
    exact = 2 * (0.3 - u0)  # +0.2 from inside the limit, -0.2 from over it
    assert exact - 0.25 / 2**iters <= callback.shift <= exact
    assert model.selected_shift == callback.shift
    np.testing.assert_allclose(model.policy.action_offset.numpy(), [callback.shift, 0.0])
    # the deployed policy plays the shift: its cost is the limit up to the bisection's resolution
    cost = deterministic_cost_per_step(model, 1)
    assert 0.3 - 0.25 / 2 ** (iters + 1) <= cost <= 0.3
    # the unshifted policy, the far end, then one evaluation per bisection step; each counted
    assert [c[0] for c in callback.calibration[:2]] == [0.0, 0.25 if u0 < 0.3 else -0.25]
    assert len(callback.calibration) == 2 + iters
    assert model.num_timesteps == 3 * HORIZON * (1 + 1 + iters)  # the last evaluation, then calibration
    for shift, reward, cost_, ok in callback.calibration:
        assert cost_[0] == pytest.approx(u0 + shift / 2, abs=1e-6)
        assert reward == pytest.approx(u0 + shift / 2 + 0.5, abs=1e-6)
        assert ok == (cost_[0] <= 0.3)


def test_a_feasible_far_end_is_kept_without_bisecting():
    model, callback = _calibrated(0.05, shift_max=0.25)  # u0 = 0.175 at the far end: feasible
    assert callback.shift == 0.25
    assert len(callback.calibration) == 2
    assert deterministic_cost_per_step(model, 1) == pytest.approx(0.175, abs=1e-6)


def test_with_no_feasible_shift_the_offset_stays_zero():
    model, callback = _calibrated(0.9, shift_max=0.5)  # u0 >= 0.65 at every shift tried
    assert callback.shift == 0.0
    assert len(callback.calibration) == 2
    np.testing.assert_allclose(model.policy.action_offset.numpy(), [0.0, 0.0])


def test_the_shift_is_saved_with_the_policy_and_old_checkpoints_load_unshifted(tmp_path):
    model, callback = _calibrated(0.2)
    model.save(tmp_path / "m")
    loaded = PPOLagrangian.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.policy.action_offset.numpy(), [callback.shift, 0.0])
    assert deterministic_cost_per_step(loaded, 1) == pytest.approx(deterministic_cost_per_step(model, 1))
    state = model.policy.state_dict()
    del state["action_offset"]  # a checkpoint from before the offset existed
    loaded.policy.load_state_dict(state)
    np.testing.assert_allclose(loaded.policy.action_offset.numpy(), [0.0, 0.0])


def test_cvpo_deploys_its_calibrated_shift(tmp_path):
    env = make_vec_env(ToyCMDP, n_envs=1, seed=0, env_kwargs={"limit": 0.3})
    model = CVPO("MlpPolicy", env, seed=0, learning_starts=100, threshold_horizon=HORIZON)
    obs = np.array([[0.5]], dtype=np.float32)
    before = model.predict(obs, deterministic=True)[0]
    with th.no_grad():
        model.policy.action_offset.copy_(th.tensor([0.1, -0.2]))
    after = model.predict(obs, deterministic=True)[0]
    np.testing.assert_allclose(after - before, [[0.1, -0.2]], atol=1e-6)
    model.save(tmp_path / "c")
    loaded = CVPO.load(tmp_path / "c")
    np.testing.assert_allclose(loaded.predict(obs, deterministic=True)[0], after, atol=1e-6)


def test_learn_leaves_room_in_the_budget_for_the_calibration(added_callbacks):
    iters = 3
    settings = {"every_steps": 64, "episodes": 2, "shift_dims": [0], "shift_iters": iters}
    model = _model(limit=0.5, keep_best=settings)
    model.learn(320)
    (spy,) = added_callbacks
    reserve = (iters + 2) * 2 * HORIZON  # the last evaluation and at most iters + 1 of the calibration
    stopped = spy.history[-1][0]  # the step of the last evaluation: where training stopped
    assert 320 - reserve <= stopped <= 320 - reserve + 2 * HORIZON
    assert model.num_timesteps == stopped + 2 * HORIZON * len(spy.calibration)  # the last and the shifts
    assert model.num_timesteps <= 320 + 2 * HORIZON
    assert model.selected_shift == spy.shift


def test_a_resumed_calibrating_run_judges_its_snapshots_unshifted():
    model = _model()
    _play(model, (0.2, 0.5))
    with th.no_grad():
        model.policy.action_offset.fill_(0.4)  # calibrated by an earlier learn()
    callback = KeepBestFeasible(KeepBest(every_steps=100, episodes=1, shift_dims=(0,)))
    callback.init_callback(model)
    callback._evaluate()
    assert callback.history[0][2][0] == pytest.approx(0.2, abs=1e-6)  # u0 of the unshifted policy


def test_shift_dims_outside_the_action_are_refused():
    model = _model(keep_best={"every_steps": 64, "episodes": 2, "shift_dims": [2]})
    with pytest.raises(ValueError, match=r"shift_dims \[2\] must lie in \[0, 1\]"):
        model.learn(100)


class FlippedToy(ToyCMDP):
    """The toy with its first action reversed: the cost ``u0 = (1 - a0) / 2`` falls as ``a0`` grows."""

    def step(self, action):
        return super().step(np.asarray(action, dtype=np.float64) * np.array([-1.0, 1.0]))


def test_a_negative_shift_sign_calibrates_a_cost_that_falls_with_the_action():
    env = make_vec_env(FlippedToy, n_envs=1, seed=0, env_kwargs={"limit": 0.3})
    model = PPOLagrangian("MlpPolicy", env, n_steps=32, batch_size=32, seed=0)
    model.set_logger(configure(None, []))
    settings = KeepBest(every_steps=100, episodes=3, shift_dims=(0,), shift_sign=-1, shift_iters=6)
    callback = KeepBestFeasible(settings)
    callback.init_callback(model)
    _play(model, (0.8, 0.5))  # a0 = 0.6: the flipped toy plays u0 = 0.2, within the limit
    callback.on_training_end()
    # u0 = 0.2 + delta / 2 reaches 0.3 at delta = 0.2, which moves a0 by -0.2
    assert 0.2 - 0.25 / 2**6 <= callback.shift <= 0.2
    np.testing.assert_allclose(model.policy.action_offset.numpy(), [-callback.shift, 0.0])
    for shift, _, cost, ok in callback.calibration:
        assert cost[0] == pytest.approx(0.2 + shift / 2, abs=1e-6)
        assert ok == (cost[0] <= 0.3)
