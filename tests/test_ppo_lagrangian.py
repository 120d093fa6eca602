import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv
from toy_cmdp import ToyCMDP, deterministic_cost_per_step

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy, PPOLagrangian, evaluate_policy_with_cost


class LambdaTrace(BaseCallback):
    """Per rollout: (cost per step of finished episodes, multiplier and PID integral before the update)."""

    def __init__(self):
        super().__init__()
        self.trace = []

    def _on_rollout_end(self) -> None:
        model = self.model
        if getattr(model, "_finished_costs", None):
            cost = float(np.mean(model._finished_costs))
            self.trace.append((cost, float(model.lambdas[0]), float(model._pid_integral[0])))

    def _on_step(self) -> bool:
        return True


@pytest.mark.parametrize("lagrangian", ["gradient", "pid"])
def test_toy_cmdp_multiplier_rises_and_policy_ends_feasible(lagrangian):
    env = make_vec_env(ToyCMDP, n_envs=4, seed=0)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        lagrangian=lagrangian,
        n_steps=64,
        batch_size=128,
        n_epochs=10,
        learning_rate=3e-3,
        seed=0,
        policy_kwargs={"net_arch": [32, 32]},
    )
    trace = LambdaTrace()
    model.learn(24_000, callback=trace)
    # while a rollout's cost is above the limit, its update raises the multiplier (gradient) or the
    # PID integral, and leaves a positive multiplier
    costs, lambdas, integral = np.array(trace.trace).T
    assert costs[0] > 0.3
    over = np.flatnonzero(costs[:-1] > 0.3)
    assert over.size >= 3
    assert np.all(lambdas[over + 1] > 0)
    rising = lambdas if lagrangian == "gradient" else integral
    assert np.all(np.diff(rising)[over] > 0)
    # the stochastic policy ends with its cost at the limit (binding, not collapsed to u0 = 0) ...
    assert abs(costs[-5:].mean() - 0.3) <= 0.3 * 0.25
    # ... and the deterministic policy is feasible and has learnt the free coordinate (u1 -> 1)
    result = evaluate_policy_with_cost(model, ToyCMDP(), n_episodes=3)
    assert result.cost_per_step[:, 0].mean() <= 0.3 * 1.05
    assert result.rewards.mean() / 10 >= 1.0  # optimum 1.3 per step


@pytest.mark.parametrize("lagrangian", ["gradient", "pid"])
@pytest.mark.parametrize("env_id", [i for i in gym.registry if i.startswith("edgegen/")])
def test_runs_on_every_env_and_logs_namespaced_keys(env_id, lagrangian, tmp_path):
    env = make_vec_env(env_id, n_envs=2, seed=1)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        lagrangian=lagrangian,
        n_steps=50,
        batch_size=50,
        seed=1,
        tensorboard_log=str(tmp_path),
        policy_kwargs={"net_arch": [16]},
    )
    model.learn(200)
    names = model.cost_spec.names
    logged = model.logger.name_to_value
    for name in names:
        assert f"train/lambda/{name}" in logged
    assert "train/cost_value_loss" in logged
    # the multipliers moved in the direction of the constraint error of the last rollout
    assert np.all(np.isfinite(model.lambdas)) and np.all(model.lambdas >= 0)
    assert len(model.ep_cost_buffer) >= 2


def test_subproc_vec_env_and_cost_limit_override():
    # "envs:" makes gymnasium import the package (and register the ids) in the worker processes
    env = make_vec_env("edgegen:edgegen/FedDiffusion-v0", n_envs=2, seed=2, vec_env_cls=SubprocVecEnv)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        cost_limits=[0.2],
        n_steps=50,
        batch_size=50,
        seed=2,
        policy_kwargs={"net_arch": [16]},
    )
    assert model.cost_spec.limits == (0.2,)
    model.learn(100)
    assert model.rollout_buffer.costs.shape == (50, 2, 1)
    env.close()


def test_gradient_and_pid_updates_by_hand():
    env = make_vec_env(ToyCMDP, n_envs=1)
    grad = PPOLagrangian(env=env, lagrangian="gradient", lambda_lr=0.5)
    np.testing.assert_allclose(grad.update_multipliers(np.array([0.6])), [0.5 * (0.6 / 0.3 - 1)])
    np.testing.assert_allclose(grad.update_multipliers(np.array([0.0])), [0.0])  # projected at 0
    pid = PPOLagrangian(env=env, lagrangian="pid", pid_kp=1.0, pid_ki=0.1, pid_kd=2.0)
    # e = 1, I = 1, no derivative on the first update
    np.testing.assert_allclose(pid.update_multipliers(np.array([0.6])), [1.0 + 0.1])
    # e = 2, I = 3, rising cost: D = (0.9 - 0.6) / 0.3 = 1
    np.testing.assert_allclose(pid.update_multipliers(np.array([0.9])), [2.0 + 0.3 + 2.0])
    # e = -1, I = 2 (anti-windup keeps it >= 0), falling cost: D = 0 -> max(0, -1 + 0.2) = 0
    np.testing.assert_allclose(pid.update_multipliers(np.array([0.0])), [0.0])
    assert pid._pid_integral[0] == pytest.approx(2.0)


def test_pid_starts_from_lambda_init_through_its_integral():
    env = make_vec_env(ToyCMDP, n_envs=1)  # limit 0.3
    pid = PPOLagrangian(env=env, lagrangian="pid", lambda_init=2.0, pid_kp=1.0, pid_ki=0.1, pid_kd=0.5)
    assert pid.lambdas[0] == 2.0 and pid._pid_integral[0] == pytest.approx(20.0)
    # costs at the limit: e = 0, I = 20, no derivative on the first update -> 0.1 x 20
    np.testing.assert_allclose(pid.update_multipliers(np.array([0.3])), [2.0])
    # e = -0.5, I = 19.5, falling cost -> -0.5 + 1.95
    np.testing.assert_allclose(pid.update_multipliers(np.array([0.15])), [-0.5 + 1.95])
    with pytest.raises(ValueError, match=r"lambda_init=1\.0 with lagrangian='pid' needs pid_ki > 0"):
        PPOLagrangian(env=env, lagrangian="pid", lambda_init=1.0, pid_ki=0.0)


def test_cost_margin_moves_the_multipliers_target_inside_the_limit(tmp_path):
    env = make_vec_env(ToyCMDP, n_envs=1)  # limit 0.3
    model = PPOLagrangian(env=env, lagrangian="gradient", lambda_lr=0.5, cost_margin=0.2)
    assert model.cost_spec.limits == pytest.approx((0.24,))
    # a cost of 0.27 is within the env's limit but over the target 0.3 x 0.8: the multiplier rises
    np.testing.assert_allclose(model.update_multipliers(np.array([0.27])), [0.5 * (0.27 / 0.24 - 1)])
    plain = PPOLagrangian(env=env, lagrangian="gradient", lambda_lr=0.5)
    np.testing.assert_allclose(plain.update_multipliers(np.array([0.27])), [0.0])
    # on top of explicit limits, and kept by save / load
    both = PPOLagrangian(env=env, cost_limits=[0.5], cost_margin=0.1, n_steps=16, batch_size=16)
    assert both.cost_spec.limits == pytest.approx((0.45,))
    both.save(tmp_path / "m")
    loaded = PPOLagrangian.load(tmp_path / "m")
    assert loaded.cost_spec.limits == pytest.approx((0.45,)) and loaded.cost_margin == 0.1
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"cost_margin must be in \[0, 1\)"):
            PPOLagrangian(env=env, cost_margin=bad)


def test_save_load_round_trip(tmp_path):
    env = make_vec_env("edgegen/FedDiffusion-v0", n_envs=1, seed=3)
    model = PPOLagrangian("MlpPolicy", env, lagrangian="pid", n_steps=50, batch_size=50, seed=3)
    model.learn(100)
    model.save(tmp_path / "model")
    loaded = PPOLagrangian.load(tmp_path / "model")
    obs = env.reset()
    np.testing.assert_allclose(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    np.testing.assert_array_equal(model.lambdas, loaded.lambdas)
    assert loaded.cost_spec == model.cost_spec and loaded.lagrangian == "pid"
    loaded.set_env(env)
    loaded.learn(50)  # a loaded model keeps training


def test_entity_actor_is_shared_by_the_devices_and_survives_save_load(tmp_path):
    env = gym.make("edgegen/SFLAM-v0", num_rounds=5, max_episode_steps=5)  # 10 devices x (2 obs, 3 actions)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        n_steps=32,
        batch_size=32,
        seed=0,
        policy_kwargs={"entity_layout": "env", "net_arch": [16]},
    )
    assert model.policy.entity_layout == (2, 3)
    model.learn(64)
    obs = np.random.default_rng(0).uniform(0, 1, (4, 21)).astype(np.float32)
    perm = np.random.default_rng(1).permutation(10)
    permuted = obs.copy()
    permuted[:, :20] = obs[:, :20].reshape(4, 10, 2)[:, perm].reshape(4, 20)
    action = model.predict(obs, deterministic=True)[0]
    # device k's three actions move with its features
    np.testing.assert_allclose(
        model.predict(permuted, deterministic=True)[0].reshape(4, 10, 3),
        action.reshape(4, 10, 3)[:, perm],
        atol=1e-6,
    )
    changed = obs.copy()
    changed[:, :2] += 0.5  # device 0's features alone set its actions
    moved = model.predict(changed, deterministic=True)[0]
    np.testing.assert_allclose(moved[:, 3:], action[:, 3:], atol=1e-6)
    assert np.abs(moved[:, :3] - action[:, :3]).max() > 1e-5
    # one rule for every device: the actor's size does not depend on how many devices there are
    small = PPOLagrangian(
        "MlpPolicy",
        gym.make("edgegen/SFLAM-v0", preset="small"),
        policy_kwargs={"entity_layout": "env", "net_arch": [16]},
    )

    def actor_size(m):
        return sum(
            p.numel() for n, p in m.policy.named_parameters() if "policy_net" in n or "action_net" in n
        )

    assert actor_size(small) == actor_size(model) == (2 + 1) * 16 + 16 + 16 * 3 + 3
    model.save(tmp_path / "entity")
    loaded = PPOLagrangian.load(tmp_path / "entity.zip")
    assert loaded.policy.entity_layout == (2, 3)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


@pytest.mark.parametrize("entity", [True, False])
def test_action_mean_init_sets_the_initial_mean_action_and_is_saved(tmp_path, entity):
    env = gym.make("edgegen/SFLAM-v0", num_rounds=5, max_episode_steps=5)  # 10 devices x 3 actions
    init = [0.25, 0.0, -0.5] if entity else list(np.linspace(-0.6, 0.6, 30))
    layout = {"entity_layout": "env"} if entity else {}

    def build(**extra):
        kwargs = {"net_arch": [16], **layout, **extra}
        return PPOLagrangian("MlpPolicy", env, n_steps=32, batch_size=32, seed=3, policy_kwargs=kwargs)

    obs = np.random.default_rng(0).uniform(0, 1, (4, 21)).astype(np.float32)
    plain = build().predict(obs, deterministic=True)[0]
    model = build(action_mean_init=init)
    shifted = model.predict(obs, deterministic=True)[0]
    # same seed, same weights: the deterministic action moves by the bias alone, on every state
    expected = np.tile(init, 10) if entity else np.asarray(init)
    np.testing.assert_allclose(shifted - plain, np.broadcast_to(expected, shifted.shape), atol=1e-6)
    assert np.abs(plain).max() < 0.1  # SB3's start: the mean near 0
    model.save(tmp_path / "init")
    loaded = PPOLagrangian.load(tmp_path / "init.zip")
    assert loaded.policy.action_mean_init == pytest.approx(init)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], shifted)


def test_action_mean_init_of_the_wrong_length_names_the_setting():
    env = gym.make("edgegen/SFLAM-v0")
    with pytest.raises(ValueError, match=r"action_mean_init must hold 3 finite values \(per device action"):
        PPOLagrangian(
            "MlpPolicy", env, policy_kwargs={"entity_layout": "env", "action_mean_init": [0.0] * 30}
        )
    with pytest.raises(ValueError, match=r"action_mean_init must hold 30 finite values \(per action\)"):
        PPOLagrangian("MlpPolicy", env, policy_kwargs={"action_mean_init": [0.0, 0.0, -0.5]})
    with pytest.raises(ValueError, match="action_mean_init must hold 3 finite values"):
        PPOLagrangian(
            "MlpPolicy",
            env,
            policy_kwargs={"entity_layout": "env", "action_mean_init": [0.0, float("nan"), 0.0]},
        )


def test_entity_context_lets_a_device_see_its_round_and_keeps_the_device_order_free(tmp_path):
    env = gym.make("edgegen/SFLAM-v0", num_rounds=5, max_episode_steps=5)
    kwargs = {"entity_layout": "env", "net_arch": [16], "entity_context": 8}
    model = PPOLagrangian("MlpPolicy", env, n_steps=32, batch_size=32, seed=0, policy_kwargs=kwargs)
    model.learn(32)
    obs = np.random.default_rng(0).uniform(0, 1, (4, 21)).astype(np.float32)
    action = model.predict(obs, deterministic=True)[0]
    # by hand: device k's latent is the actor MLP of (its features, the global one, the mean code)
    extractor = model.policy.mlp_extractor
    with th.no_grad():
        x = th.as_tensor(obs)
        inputs = th.cat([x[:, :20].reshape(4, 10, 2), x[:, 20:].reshape(4, 1, 1).expand(4, 10, 1)], dim=-1)
        codes = th.stack([extractor.context_net(inputs[:, k]) for k in range(10)], dim=1)
        mean_code = codes.sum(dim=1, keepdim=True).expand(4, 10, 8) / 10
        latent = extractor.policy_net(th.cat([inputs, mean_code], dim=-1))
        mean = model.policy.action_net.linear(latent).reshape(4, 30).clamp(-1, 1).numpy()
    np.testing.assert_allclose(action, mean, atol=1e-6)
    # one device's features now move every device's actions ...
    changed = obs.copy()
    changed[:, :2] += 0.5
    moved = model.predict(changed, deterministic=True)[0]
    assert np.abs(moved[:, 3:] - action[:, 3:]).max() > 1e-5
    # ... and the actions still follow the devices, whatever their order
    perm = np.random.default_rng(1).permutation(10)
    permuted = obs.copy()
    permuted[:, :20] = obs[:, :20].reshape(4, 10, 2)[:, perm].reshape(4, 20)
    np.testing.assert_allclose(
        model.predict(permuted, deterministic=True)[0].reshape(4, 10, 3),
        action.reshape(4, 10, 3)[:, perm],
        atol=1e-6,
    )
    model.save(tmp_path / "context")
    loaded = PPOLagrangian.load(tmp_path / "context.zip")
    assert loaded.policy.entity_context == 8
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)
    with pytest.raises(ValueError, match="entity_context needs an entity_layout"):
        PPOLagrangian("MlpPolicy", env, policy_kwargs={"entity_context": 8})
    with pytest.raises(ValueError, match=r"entity_context must be an int >= 0 \(0: no context\), got -1"):
        PPOLagrangian("MlpPolicy", env, policy_kwargs={"entity_layout": "env", "entity_context": -1})


def test_entity_layouts_that_do_not_fit_or_are_missing_raise():
    with pytest.raises(ValueError, match=r"entity_layout=\(4, 3\) does not fit observations of 21"):
        PPOLagrangian("MlpPolicy", gym.make("edgegen/SFLAM-v0"), policy_kwargs={"entity_layout": (4, 3)})
    with pytest.raises(
        ValueError, match='PPOLagrangian policy_kwargs entity_layout="env": the env declares no'
    ):
        PPOLagrangian("MlpPolicy", gym.make("edgegen/MEG-v0"), policy_kwargs={"entity_layout": "env"})


def test_bad_arguments():
    env = make_vec_env(ToyCMDP, n_envs=1)
    with pytest.raises(ValueError, match="lagrangian must be 'gradient' or 'pid'"):
        PPOLagrangian(env=env, lagrangian="adam")
    with pytest.raises(ValueError, match="lambda_lr must be >= 0"):
        PPOLagrangian(env=env, lambda_lr=-1.0)
    # each multiplier refuses the other's settings instead of training without them
    with pytest.raises(ValueError, match=r"\['pid_ki', 'pid_kp'\] do not apply to lagrangian='gradient'"):
        PPOLagrangian(env=env, pid_kp=2.0, pid_ki=0.2)
    with pytest.raises(ValueError, match=r"\['lambda_lr'\] do not apply to lagrangian='pid'"):
        PPOLagrangian(env=env, lagrangian="pid", lambda_lr=0.3)
    pid = PPOLagrangian(env=env, lagrangian="pid")
    assert (pid.pid_kp, pid.pid_ki, pid.pid_kd, PPOLagrangian(env=env).lambda_lr) == (1.0, 0.1, 0.5, 0.1)
    with pytest.raises(ValueError, match=r"expected 1 limits"):
        PPOLagrangian(env=env, cost_limits=[0.1, 0.2])
    with pytest.raises(ValueError, match="declares no cost_spec"):
        PPOLagrangian(env="CartPole-v1")


def test_evaluate_policy_with_cost_counts_violations():
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)

    class AllLate:
        def predict(self, obs, state=None, episode_start=None, deterministic=True):
            return np.ones(10, np.float32), None

    late = evaluate_policy_with_cost(AllLate(), env, n_episodes=3)
    np.testing.assert_allclose(late.costs[:, 0], 5.0)  # every device late in every round
    assert late.violation_rate == 1.0 and late.lengths.tolist() == [5, 5, 5]
    np.testing.assert_allclose(late.metrics["energy_j"], -late.rewards * 10.0)
    oracle = evaluate_policy_with_cost(OraclePolicy(env), env, n_episodes=3)
    assert oracle.summary()["reward"] > late.summary()["reward"]
    with pytest.raises(ValueError, match="n_episodes must be >= 1"):
        evaluate_policy_with_cost(AllLate(), env, n_episodes=0)


class DeterministicCostByHand(BaseCallback):
    """At each rollout's end: the multiplier the next update must give, from the mean action's cost.

    Plays ``feedback_episodes`` ToyCMDP episodes with the deterministic policy by hand (the toy's cost
    is ``u0``; its episodes do not depend on the seed) and applies the gradient rule to their cost.
    """

    def __init__(self):
        super().__init__()
        self.expected, self.rollout_costs = [], []

    def _on_rollout_end(self) -> None:
        model = self.model
        cost = deterministic_cost_per_step(model, model.feedback_episodes)
        lam = max(0.0, model.lambdas[0] + model.lambda_lr * (cost / 0.3 - 1.0))
        self.expected.append(lam)
        self.rollout_costs.append(float(np.mean(model._finished_costs)))

    def _on_step(self) -> bool:
        return True


def test_deterministic_cost_feedback_feeds_the_mean_actions_cost_and_counts_its_steps():
    env = make_vec_env(ToyCMDP, n_envs=2, seed=0)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        cost_feedback="deterministic",
        feedback_episodes=3,
        lambda_lr=0.5,
        n_steps=20,
        batch_size=40,
        seed=0,
        policy_kwargs={"log_std_init": 0.5},  # wide noise: the rollouts' cost differs from the mean's
    )
    by_hand = DeterministicCostByHand()
    seen = []

    class Multipliers(BaseCallback):
        def _on_rollout_start(self) -> None:
            seen.append(float(self.model.lambdas[0]))

        def _on_step(self) -> bool:
            return True

    model.learn(120, callback=[by_hand, Multipliers()])
    # each update took its multiplier from three deterministic episodes, not from the rollouts
    np.testing.assert_allclose(seen[1:], by_hand.expected[: len(seen) - 1], rtol=1e-6)
    np.testing.assert_allclose(model.lambdas[0], by_hand.expected[-1], rtol=1e-6)
    rollout_rule = [max(0.0, 0.5 * (c / 0.3 - 1.0)) for c in by_hand.rollout_costs]
    assert abs(rollout_rule[0] - by_hand.expected[0]) > 1e-3
    # the evaluation episodes count: 40 rollout steps + 30 feedback steps per update, until >= 120
    assert model.num_timesteps == 2 * (40 + 30)


def test_deterministic_cost_feedback_survives_save_load(tmp_path):
    env = make_vec_env(ToyCMDP, n_envs=1, seed=1)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        cost_feedback="deterministic",
        feedback_episodes=1,
        n_steps=20,
        batch_size=20,
        seed=1,
    )
    model.learn(20)
    assert model._feedback_env is not None
    model.save(tmp_path / "model")
    loaded = PPOLagrangian.load(tmp_path / "model", env=env)
    assert loaded.cost_feedback == "deterministic" and loaded.feedback_episodes == 1
    assert loaded._feedback_env is None  # rebuilt from the env at its next update
    loaded.learn(20)
    assert loaded._feedback_env is not None


def test_deterministic_cost_feedback_plays_on_a_copy_without_the_monitor(tmp_path):
    """rl-zoo3 and ``make_vec_env`` put a Monitor writing a CSV file under the other wrappers."""
    env = make_vec_env(
        ToyCMDP,
        n_envs=1,
        seed=0,
        monitor_dir=str(tmp_path),
        wrapper_class=lambda e: gym.wrappers.TransformReward(e, lambda r: 2.0 * r),
    )
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        cost_feedback="deterministic",
        feedback_episodes=3,
        n_steps=20,
        batch_size=20,
        seed=0,
    )
    model.learn(70)  # the feedback's steps count: 20 + 30 < 70 <= 2 x (20 + 30)
    # two updates of 20 steps: 4 training episodes in the Monitor's file, none of the 6 deployed ones
    env.close()
    rows = (tmp_path / "0.monitor.csv").read_text().splitlines()
    assert len(rows) == 2 + 4  # the '#' metadata line and the header, then one row per episode
    assert model.num_timesteps == 2 * (20 + 30)
    copy = model._feedback_env
    assert isinstance(copy, gym.wrappers.TransformReward)  # the outer wrapper kept ...
    assert isinstance(copy.env, ToyCMDP)  # ... the Monitor under it dropped
    assert copy.env is not env.envs[0].unwrapped


def test_log_std_final_caps_the_std_on_a_linear_schedule():
    env = make_vec_env(ToyCMDP, n_envs=1, seed=2)
    model = PPOLagrangian(
        "MlpPolicy",
        env,
        n_steps=50,
        batch_size=50,
        seed=2,
        log_std_final=-2.0,
        policy_kwargs={"log_std_init": 0.0},
    )
    caps = []

    class Cap(BaseCallback):
        def _on_rollout_start(self) -> None:
            caps.append(float(self.model.policy.log_std.detach().max()))

        def _on_step(self) -> bool:
            return True

    model.learn(200, callback=Cap())
    # rollouts 2-4 start after 1/4, 2/4, 3/4 of the steps: caps 0 + (-2 - 0) * progress done
    assert caps[0] == pytest.approx(0.0, abs=0.05)  # the initial std (only the optimiser moves it)
    np.testing.assert_allclose(caps[1:], [-0.5, -1.0, -1.5], atol=1e-6)
    np.testing.assert_allclose(model.policy.log_std.detach().numpy(), -2.0, atol=1e-6)


def test_cost_feedback_arguments_are_checked():
    env = make_vec_env(ToyCMDP, n_envs=1)
    with pytest.raises(ValueError, match="cost_feedback must be 'rollout' or 'deterministic'"):
        PPOLagrangian(env=env, cost_feedback="mean")
    with pytest.raises(ValueError, match="feedback_episodes must be an int >= 1"):
        PPOLagrangian(env=env, feedback_episodes=0)
    subproc = SubprocVecEnv([ToyCMDP])
    model = PPOLagrangian(env=subproc, cost_feedback="deterministic", n_steps=10, batch_size=10)
    with pytest.raises(ValueError, match="needs a DummyVecEnv"):
        model.learn(10)
    model.env.close()
