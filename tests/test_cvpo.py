import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv
from toy_cmdp import ToyCMDP, deterministic_cost_per_step

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import evaluate_policy_with_cost
from edgegen.agents.cost_buffer import CostNStepReplayBuffer
from edgegen.agents.cvpo import (
    CVPO,
    Critics,
    CVPOConfig,
    CVPOPolicy,
    EntityCritics,
    EntityGaussianActor,
    SetCritics,
    centre_cost_q,
    cvpo_settings,
    decoupled_kl,
    estep_dual,
    particle_statistics,
    q_threshold,
    solve_estep_dual,
    weighted_log_likelihood,
)


def test_q_threshold_is_the_discounted_sum_of_the_per_step_limit():
    limit, gamma, horizon = 0.05, 0.97, 50
    by_hand = sum(limit * gamma**t for t in range(horizon))
    np.testing.assert_allclose(q_threshold(limit, gamma, horizon), by_hand, rtol=1e-12)
    # the MEG numbers of the reference notes: per-step 2.95 s over T = 64 at gamma 0.97 -> 84.4
    np.testing.assert_allclose(q_threshold(189 / 64, 0.97, 64), 84.4, atol=0.1)
    with pytest.raises(ValueError, match="gamma must be in"):
        q_threshold(1.0, 1.0, 10)
    # gamma = 0: a one-step Q, whose threshold is the per-step limit itself, whatever the horizon
    for h in (1, 50, math.inf):
        np.testing.assert_allclose(q_threshold(limit, 0.0, h), limit, rtol=0)


def test_infinite_horizon_threshold_is_the_limit_over_one_minus_gamma():
    assert q_threshold(0.05, 0.97, math.inf) == pytest.approx(0.05 / 0.03, rel=1e-12)
    env = gym.make("edgegen/MEG-v0")
    limits = env.unwrapped.cost_spec.limits_array
    episodic = CVPO("MlpPolicy", env, CVPOConfig(gamma=0.97)).thresholds
    infinite = CVPO("MlpPolicy", env, gamma=0.97, threshold_horizon="infinite").thresholds
    np.testing.assert_allclose(episodic, limits * (1 - 0.97**64) / 0.03, rtol=1e-12)  # T = 64 frames
    np.testing.assert_allclose(infinite, limits / 0.03, rtol=1e-12)
    with pytest.raises(ValueError, match="no max_episode_steps"):  # the episodic one needs T
        CVPO("MlpPolicy", ToyCMDP())
    assert CVPO("MlpPolicy", ToyCMDP(), threshold_horizon="infinite").thresholds.shape == (1,)
    fixed = CVPO("MlpPolicy", env, gamma=0.97, threshold_horizon=10).thresholds
    np.testing.assert_allclose(fixed, limits * (1 - 0.97**10) / 0.03, rtol=1e-12)
    with pytest.raises(ValueError, match=r"CVPOConfig\.threshold_horizon is out of range: 'forever'"):
        CVPOConfig(threshold_horizon="forever")


def _random_q(rng, b=16, k=8, n_costs=1):
    q_r = rng.normal(size=(b, k))
    q_c = rng.normal(loc=1.0, size=(n_costs, b, k))
    return q_r, q_c


def test_dual_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    q_r, q_c = _random_q(rng, n_costs=2)
    thr = np.array([1.1, 0.8])
    x = np.array([0.7, 0.3, 1.2])
    _, grad = estep_dual(x, q_r, q_c, 0.1, thr)
    for i in range(3):
        dx = np.zeros(3)
        dx[i] = 1e-6
        numeric = (
            estep_dual(x + dx, q_r, q_c, 0.1, thr)[0] - estep_dual(x - dx, q_r, q_c, 0.1, thr)[0]
        ) / 2e-6
        np.testing.assert_allclose(grad[i], numeric, rtol=1e-5, atol=1e-7)


def _dual_on_grid(etas, lams, q_r, q_c, eps, thr):
    """The same dual written independently, evaluated on a whole (eta, lambda) grid at once."""
    e, lam = etas[:, None, None, None], lams[None, :, None, None]
    z = (q_r[None, None] - lam * q_c[0][None, None]) / e  # (E, L, B, K)
    zmax = z.max(-1, keepdims=True)
    log_mean_exp = (zmax[..., 0] + np.log(np.mean(np.exp(z - zmax), -1))).mean(-1)  # (E, L)
    return etas[:, None] * eps + lams[None, :] * thr + etas[:, None] * log_mean_exp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dual_solution_matches_a_brute_force_grid(seed):
    rng = np.random.default_rng(seed)
    q_r, q_c = _random_q(rng)
    thr = np.array([float(np.mean(q_c))])  # binding at the old policy's average
    solution = solve_estep_dual(q_r, q_c, 0.1, thr, init=np.array([1.0, 0.0]))
    etas, lams = np.geomspace(1e-3, 20, 600), np.linspace(0, 20, 601)
    grid = _dual_on_grid(etas, lams, q_r, q_c, 0.1, thr[0])
    value = estep_dual(solution, q_r, q_c, 0.1, thr)[0]
    np.testing.assert_allclose(_dual_on_grid(solution[:1], solution[1:], q_r, q_c, 0.1, thr[0])[0, 0], value)
    assert value <= grid.min() + 1e-9  # at least as good as the best grid point
    i, j = np.unravel_index(grid.argmin(), grid.shape)
    assert abs(solution[0] - etas[i]) / etas[i] < 0.05
    assert abs(solution[1] - lams[j]) <= 2 * (lams[1] - lams[0])


def test_dual_leaves_critic_outputs_untouched():
    rng = np.random.default_rng(3)
    q_r, q_c = _random_q(rng, n_costs=2)
    before = (q_r.copy(), q_c.copy())
    solve_estep_dual(q_r, q_c, 0.1, np.array([0.5, 0.5]), np.array([1.0, 0.5, 0.5]))
    np.testing.assert_array_equal(q_r, before[0])
    np.testing.assert_array_equal(q_c, before[1])


def test_cost_value_baseline_makes_the_dual_blind_to_per_state_offsets():
    rng = np.random.default_rng(4)
    q_r, q_c = _random_q(rng)
    shifted = q_c + rng.normal(0.5, 1.0, q_c.shape[1])[None, :, None]  # states with other cost levels
    thr, init = np.array([float(np.mean(q_c))]), np.array([1.0, 0.0])
    value = np.array([float(np.mean(q_c)) + 0.05])  # running value a little over the threshold
    lam_plain = [solve_estep_dual(q_r, q, 0.1, thr, init)[1] for q in (q_c, shifted)]
    centred = [centre_cost_q(q, value, 0.0) for q in (q_c, shifted)]
    lam_centred = [solve_estep_dual(q_r, c, 0.1, thr, init)[1] for c, _ in centred]
    assert abs(lam_plain[0] - lam_plain[1]) > 0.1  # the offsets move the batch constraint
    assert lam_centred[0] == pytest.approx(lam_centred[1], abs=1e-6)
    assert lam_centred[0] > 0  # the running value is over the threshold: the constraint binds
    c, v = centred[0]
    np.testing.assert_allclose(c.mean(axis=(1, 2)), value)
    np.testing.assert_allclose(c - c.mean(axis=2, keepdims=True), q_c - q_c.mean(axis=2, keepdims=True))
    _, v = centre_cost_q(q_c, value, 0.25)  # Polyak step towards this batch's mean
    np.testing.assert_allclose(v, value + 0.25 * (q_c.mean() - value))
    np.testing.assert_allclose(centre_cost_q(q_c, None, 0.25)[1], [q_c.mean()])


def test_decoupled_kl_by_hand():
    m0, s0 = th.tensor([[0.0, 1.0]]), th.tensor([[1.0, 2.0]])
    kl_mean, kl_std = decoupled_kl(m0, s0, th.tensor([[1.0, 1.0]]), th.tensor([[1.0, 1.0]]))
    assert kl_mean.item() == pytest.approx(0.5)
    # KL(N(0, 2^2) || N(0, 1)) = ln(1/2) + 4/2 - 1/2
    assert kl_std.item() == pytest.approx(np.log(0.5) + 2.0 - 0.5)


def test_weighted_log_likelihood_equals_the_weighted_sum_of_normal_log_densities():
    # the M-step's likelihood from the particles' weighted mean and spread, against
    # sum_k w_k sum_d log N(x_kd; mu_d, s_d) summed particle by particle
    gen = th.Generator().manual_seed(0)
    particles = th.rand(16, 5, 3, generator=gen, dtype=th.float64) * 2 - 1  # (K, B, A)
    weights = th.softmax(th.randn(16, 5, generator=gen, dtype=th.float64), dim=0)  # (K, B)
    mean = th.randn(5, 3, generator=gen, dtype=th.float64)
    std = th.rand(5, 3, generator=gen, dtype=th.float64) + 0.1
    by_particle = (weights * th.distributions.Normal(mean, std).log_prob(particles).sum(-1)).sum(0)
    fast = weighted_log_likelihood(particle_statistics(particles, weights), mean, std)
    np.testing.assert_allclose(fast.numpy(), by_particle.numpy(), rtol=1e-12)
    # unnormalised weights: the weight sum enters the log-normaliser term
    fast = weighted_log_likelihood(particle_statistics(particles, 3 * weights), mean, std)
    np.testing.assert_allclose(fast.numpy(), 3 * by_particle.numpy(), rtol=1e-12)


@pytest.mark.parametrize("entity", [False, True, "set"])
def test_particle_scores_equal_the_critics_on_the_repeated_states(entity):
    # over_particles splits the first layer and reuses scratch tensors: it must give the forward pass
    # of every (state, particle) pair, twice in a row (the scratch is reused), for each action width
    th.manual_seed(0)
    for entity_act, hidden in ((1, (16, 8)), (2, (16, 8)), (1, (12,)), (2, ())):
        if entity == "set" and not hidden:
            continue  # a set head needs a width for its codes
        if entity:
            actor = EntityGaussianActor(4 * 3 + 2, 4 * entity_act, (8,), 0.0, None, (3, entity_act))
            critics = (SetCritics if entity == "set" else EntityCritics)(actor, 2, hidden, entity_act)
        else:
            critics = Critics(7, entity_act, 2, hidden)
        obs_dim = 14 if entity else 7
        act_dim = 4 * entity_act if entity else entity_act
        for k, b in ((5, 3), (2, 9)):
            obs, particles = th.randn(b, obs_dim), th.rand(k, b, act_dim) * 2 - 1
            q_r, q_c = critics.over_particles(obs, particles)
            with th.no_grad():
                flat_obs = obs.expand(k, b, obs_dim).reshape(k * b, -1)
                ref_r, ref_c = critics(flat_obs, particles.reshape(k * b, -1))
            assert q_r.shape == (2, k, b) and q_c.shape == (2, k, b)
            np.testing.assert_allclose(q_r.numpy(), ref_r.reshape(2, k, b).numpy(), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(q_c.numpy(), ref_c.reshape(2, k, b).numpy(), rtol=1e-5, atol=1e-6)


def test_set_critic_is_order_invariant_and_learns_a_max_that_a_sum_critic_cannot():
    # entities e = 0..4 with one feature x_e and one action a_e, target y = max_e (x_e + a_e) (a round's
    # latency is its slowest device's). Order invariance: permuting the entities (features and
    # actions together) leaves every head's Q unchanged.
    th.manual_seed(0)
    entities = 5
    actor = EntityGaussianActor(entities + 1, entities, (8,), 0.0, None, (1, 1))
    perm = th.tensor([3, 0, 4, 1, 2])
    obs, act = th.randn(64, entities + 1), th.rand(64, entities) * 2 - 1
    permuted_obs = th.cat([obs[:, :entities][:, perm], obs[:, entities:]], dim=1)
    critics = SetCritics(actor, 1, (16, 16), 1)
    with th.no_grad():
        q_r, q_c = critics(obs, act)
        q_r_p, q_c_p = critics(permuted_obs, act[:, perm])
    np.testing.assert_allclose(q_r_p.numpy(), q_r.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(q_c_p.numpy(), q_c.numpy(), rtol=1e-5, atol=1e-6)

    def fit(critics: th.nn.Module) -> float:
        gen = th.Generator().manual_seed(1)
        opt = th.optim.Adam(critics.parameters(), lr=3e-3)
        for _ in range(600):
            o, a = th.randn(128, entities + 1, generator=gen), th.rand(128, entities, generator=gen) * 2 - 1
            y = (o[:, :entities] + a).amax(1)
            _, q_c = critics(o, a)
            loss = ((q_c[0] - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        o, a = th.randn(2000, entities + 1, generator=gen), th.rand(2000, entities, generator=gen) * 2 - 1
        with th.no_grad():
            return float(((critics(o, a)[1][0] - (o[:, :entities] + a).amax(1)) ** 2).mean())

    th.manual_seed(0)
    set_mse = fit(SetCritics(actor, 1, (16, 16), 1))
    th.manual_seed(0)
    sum_mse = fit(EntityCritics(actor, 1, (16, 16), 1))
    # a sum of per-entity terms can fit only the target's additive part
    # measured: 0.0006 against 0.12
    assert set_mse < 0.01 and sum_mse > 0.05, (set_mse, sum_mse)


def _cost_buffer(capacity: int = 10) -> CostNStepReplayBuffer:
    box = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    return CostNStepReplayBuffer(capacity, box, box, "cpu", n_envs=1, n_steps=3, gamma=0.5, n_costs=1)


def _add(buf: CostNStepReplayBuffer, t: int, trunc: bool = False, term: bool = False) -> None:
    info = {"costs": np.array([2.0]), "TimeLimit.truncated": trunc}
    buf.add(
        np.array([[t]]),
        np.array([[t + 1]]),
        np.zeros((1, 1)),
        np.array([1.0]),
        np.array([trunc or term]),
        [info],
    )


def _by_start(buf: CostNStepReplayBuffer) -> dict[float, tuple[float, float, float, float]]:
    batch = buf.sample(200)
    bootstrap = (batch.discounts * (1 - batch.dones)).squeeze(-1)
    return {
        float(o[0]): (float(r[0]), float(c[0]), float(n[0]), float(d))
        for o, r, c, n, d in zip(
            batch.observations, batch.rewards, batch.costs, batch.next_observations, bootstrap, strict=True
        )
    }


def test_n_step_returns_stop_at_episode_ends_and_bootstrap_truncation():
    buf = _cost_buffer()
    # step 0, 1 (truncated), 2, 3 (terminated); reward 1 and cost 2 every step
    for t, (trunc, term) in enumerate([(0, 0), (1, 0), (0, 0), (0, 1)]):
        _add(buf, t, bool(trunc), bool(term))
    by_start = _by_start(buf)
    assert by_start[0.0] == pytest.approx((1.5, 3.0, 2.0, 0.25))  # stops at the truncation, bootstraps
    assert by_start[1.0] == pytest.approx((1.0, 2.0, 2.0, 0.5))
    assert by_start[2.0] == pytest.approx((1.5, 3.0, 4.0, 0.0))  # terminated: no bootstrap
    assert by_start[3.0] == pytest.approx((1.0, 2.0, 4.0, 0.0))


def test_n_step_returns_stop_at_the_newest_step():
    buf = _cost_buffer()
    for t in range(2):  # an episode still running: the sum must not read the empty slot after step 1
        _add(buf, t)
    by_start = _by_start(buf)
    assert by_start[0.0] == pytest.approx((1.5, 3.0, 2.0, 0.25))
    assert by_start[1.0] == pytest.approx((1.0, 2.0, 2.0, 0.5))
    buf = _cost_buffer(capacity=4)  # full and wrapped: the newest step is slot 1, the oldest slot 2
    for t in range(6):
        _add(buf, t)
    by_start = _by_start(buf)
    assert set(by_start) == {2.0, 3.0, 4.0, 5.0}
    assert by_start[2.0] == pytest.approx((1.75, 3.5, 5.0, 0.125))  # the oldest: three whole steps
    assert by_start[3.0] == pytest.approx((1.75, 3.5, 6.0, 0.125))  # slots 3, 0, 1: across the wrap
    assert by_start[4.0] == pytest.approx((1.5, 3.0, 6.0, 0.25))  # slots 0, 1: cut at the newest
    assert by_start[5.0] == pytest.approx((1.0, 2.0, 6.0, 0.5))


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    model = CVPO(
        "MlpPolicy",
        env,
        learning_starts=20,
        batch_size=16,
        num_particles=4,
        policy_kwargs={"net_arch": (16,)},
        seed=0,
    )
    model.learn(60)
    model.save(tmp_path / "cvpo")
    loaded = CVPO.load(tmp_path / "cvpo.zip")
    obs = np.random.default_rng(0).uniform(0, 1, (7, 31)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    np.testing.assert_array_equal(model.dual, loaded.dual)
    resumed = CVPO.load(tmp_path / "cvpo.zip", env=env)
    resumed.learn(10, reset_num_timesteps=False)
    assert resumed.num_timesteps == model.num_timesteps + 10
    assert resumed.num_updates == model.num_updates + 5  # 0.5 updates per step, learning has started


def test_logs_through_sb3_logger(tmp_path):
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    model = CVPO(
        "MlpPolicy",
        env,
        CVPOConfig(learning_starts=10, batch_size=8, num_particles=4),
        policy_kwargs={"net_arch": (8,)},
        seed=1,
        tensorboard_log=str(tmp_path),
    )
    model.learn(40, log_interval=1)
    logged = model.logger.name_to_value  # last dump's keys stay until the next record
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in (
        "rollout/ep_rew_mean",
        "rollout/ep_cost_mean/deadline_miss_fraction",
        "train/eta",
        "train/lambda/deadline_miss_fraction",
        "train/kl_mean",
        "train/kl_std",
        "train/critic_loss",
    ):
        assert tag in tags, tag
    assert isinstance(logged, dict)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"CVPOConfig\.gamma is out of range: 1\.0 \(allowed: in \[0, 1\)"):
        CVPOConfig(gamma=1.0)
    with pytest.raises(ValueError, match="needs a Box action space"):
        CVPO("MlpPolicy", gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="no max_episode_steps"):
        CVPO("MlpPolicy", ToyCMDP())
    with pytest.raises(TypeError, match="num_particle"):
        CVPO("MlpPolicy", ToyCMDP(), num_particle=4)
    with pytest.raises(ValueError, match="is not a CVPO checkpoint"):
        CVPO.load("nowhere.zip")


def test_pessimistic_cost_takes_each_costs_largest_head_and_trains_every_head(tmp_path):
    box = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    policy = CVPOPolicy(box, box, lambda _: 1e-3, n_costs=2, net_arch=(8,), n_cost_critics=3)
    _, q_c = policy.critics(th.zeros(4, 3), th.zeros(4, 3))
    assert q_c.shape == (6, 4)  # head j * n_costs + i: critic j of cost i
    heads = th.tensor([[1.0], [9.0], [5.0], [2.0], [3.0], [4.0]])  # cost 0: 1, 5, 3; cost 1: 9, 2, 4
    np.testing.assert_array_equal(policy.pessimistic_cost(heads).numpy(), [[5.0], [9.0]])
    with pytest.raises(ValueError, match=r"n_cost_critics is out of range: 0 \(allowed: an integer >= 1\)"):
        CVPOPolicy(box, box, lambda _: 1e-3, n_cost_critics=0)
    # in training every head moves (each regresses on the pessimistic target), and the setting survives
    # save/load
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    config = CVPOConfig(learning_starts=20, batch_size=16, num_particles=4)
    model = CVPO("MlpPolicy", env, config, policy_kwargs={"n_cost_critics": 2, "net_arch": (16,)}, seed=0)
    before = [p.detach().clone() for p in model.policy.critics.heads.nets[3].parameters()]
    model.learn(40)
    after = list(model.policy.critics.heads.nets[3].parameters())  # cost critic 2 of the one cost
    assert any(not th.equal(b, a) for b, a in zip(before, after, strict=True))
    model.save(tmp_path / "two_cost_critics")
    assert CVPO.load(tmp_path / "two_cost_critics.zip").policy.n_cost_critics == 2


@pytest.mark.parametrize("env_id", [i for i in gym.registry if i.startswith("edgegen/")])
def test_runs_on_every_registered_env(env_id):
    model = CVPO(
        "MlpPolicy",
        gym.make(env_id),
        CVPOConfig(learning_starts=16, batch_size=8, num_particles=4),
        policy_kwargs={"net_arch": (8,)},
        seed=2,
    )
    model.learn(48)
    assert model.num_updates > 0 and np.all(np.isfinite(model.dual))


def test_reaches_the_toy_constrained_optimum():
    """ToyCMDP: optimum u* = (0.3, 1), reward 1.3 per step; long episodes make thr = limit / (1 - gamma)."""
    th.set_num_threads(1)
    horizon = 100
    config = CVPOConfig(gamma=0.9, threshold_horizon=horizon, learning_starts=500, batch_size=128)
    model = CVPO("MlpPolicy", ToyCMDP(horizon=horizon), config, seed=0)
    model.learn(3_500)
    result = evaluate_policy_with_cost(model, ToyCMDP(horizon=horizon), n_episodes=2)
    cost = result.cost_per_step[:, 0].mean()
    assert abs(cost - 0.3) <= 0.3 * 0.15
    assert result.rewards.mean() / horizon >= 1.3 * 0.9


def test_entity_actor_is_shared_by_the_devices_and_survives_save_load(tmp_path):
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    config = CVPOConfig(learning_starts=20, batch_size=16, num_particles=4)
    model = CVPO("MlpPolicy", env, config, policy_kwargs={"net_arch": (16,), "entity_layout": (3, 1)}, seed=0)
    model.learn(60)
    obs = np.random.default_rng(0).uniform(0, 1, (5, 31)).astype(np.float32)
    perm = np.random.default_rng(1).permutation(10)
    permuted = obs.copy()
    permuted[:, :30] = obs[:, :30].reshape(5, 10, 3)[:, perm].reshape(5, 30)
    action, action_permuted = (
        model.predict(obs, deterministic=True)[0],
        model.predict(permuted, deterministic=True)[0],
    )
    np.testing.assert_allclose(action_permuted, action[:, perm], atol=1e-6)  # device k's action moves with it
    # one device's features alone set its action: changing device 0's leaves the others' unchanged
    changed = obs.copy()
    changed[:, :3] += 0.5
    moved = model.predict(changed, deterministic=True)[0]
    np.testing.assert_allclose(moved[:, 1:], action[:, 1:], atol=1e-6)
    assert np.abs(moved[:, 0] - action[:, 0]).max() > 1e-4
    model.save(tmp_path / "entity")
    loaded = CVPO.load(tmp_path / "entity.zip")
    assert loaded.policy_kwargs["entity_layout"] == (3, 1)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], action)


def test_entity_layouts_that_do_not_fit_the_spaces_raise():
    env = gym.make("edgegen/FedDiffusion-v0")  # 31 observations, 10 actions
    with pytest.raises(ValueError, match=r"entity_layout=\(4, 1\) does not fit observations of 31"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (4, 1)})
    with pytest.raises(ValueError, match=r"entity_layout=\(3, 3\) does not fit"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (3, 3)})
    with pytest.raises(ValueError, match=r"policy_kwargs entity_layout is out of range"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (0, 1)})
    with pytest.raises(TypeError, match=r"unknown CVPO policy_kwargs \['hidden'\]"):
        CVPO("MlpPolicy", env, policy_kwargs={"hidden": (8,)})


def test_entity_layout_env_takes_the_layout_the_env_declares():
    layout = {"net_arch": (8,), "entity_layout": "env"}
    fed = CVPO("MlpPolicy", gym.make("edgegen/FedDiffusion-v0"), policy_kwargs=layout)
    assert fed.policy_kwargs["entity_layout"] == (3, 1) and fed.policy.actor.entities == 10
    sflam = CVPO("MlpPolicy", gym.make("edgegen/SFLAM-v0", preset="small"), policy_kwargs=layout)
    assert sflam.policy_kwargs["entity_layout"] == (2, 3) and sflam.policy.actor.entities == 3
    with pytest.raises(ValueError, match="the env declares no entity_layout"):
        CVPO("MlpPolicy", gym.make("edgegen/MEG-v0"), policy_kwargs={"entity_layout": "env"})


def test_settings_of_the_first_release_are_translated_or_refused_with_their_replacement():
    old = {"gamma": 0.5, "infinite_horizon_threshold": True, "episode_length": None, "policy_average": None}
    assert CVPOConfig.from_dict(old) == CVPOConfig(gamma=0.5, threshold_horizon="infinite")
    assert CVPOConfig.from_dict({"episode_length": 12}).threshold_horizon == 12
    assert CVPOConfig.from_dict({"normalize_costs": False}) == CVPOConfig()
    with pytest.raises(ValueError, match="NormalizeCosts"):
        CVPOConfig.from_dict({"normalize_costs": True})
    with pytest.raises(ValueError, match="policy_average was removed"):
        CVPOConfig.from_dict({"policy_average": 0.01})
    # the network fields of a first-release CVPOConfig move into policy_kwargs under their new names
    old_layout = {
        "gamma": 0.5,
        "hidden": [16],
        "entity_dims": [3, 1],
        "entity_critic_hidden": [8],
        "min_std": 0.2,
    }
    config, policy_kwargs = cvpo_settings(old_layout)
    assert config == CVPOConfig(gamma=0.5)
    assert policy_kwargs == {
        "net_arch": (16,),
        "entity_layout": (3, 1),
        "entity_critic_arch": (8,),
        "min_std": 0.2,
    }
    # a flat key wins over the same key in policy_kwargs (a --algo-kwargs override over a recipe)
    assert cvpo_settings({"policy_kwargs": {"min_std": 0.2, "net_arch": [4]}, "min_std": 0.3})[1] == {
        "min_std": 0.3,
        "net_arch": (4,),
    }
    with pytest.raises(TypeError, match="unknown CVPO policy_kwargs"):
        cvpo_settings({"policy_kwargs": {"width": 3}})


def test_a_recipe_env_wrapper_wraps_the_env_and_the_thresholds_use_its_limits():
    from edgegen.envs.cmdp import NormalizeCosts

    model = CVPO.for_env(gym.make("edgegen/MEG-v0"))  # the MEG recipe normalises the costs
    assert model.cost_spec.limits == (1.0, 1.0)
    np.testing.assert_allclose(model.thresholds, 1.0 / (1 - 0.5), rtol=1e-12)  # infinite horizon, gamma 0.5
    assert model.env.env_is_wrapped(NormalizeCosts) == [True]
    plain = CVPO.for_env(gym.make("edgegen/MEG-v0"), env_wrapper=None)
    assert plain.cost_spec.limits == (3.8, 650.0)
    with pytest.raises(ValueError, match="wraps its env in NormalizeCosts: pass a gymnasium env"):
        CVPO.for_env(DummyVecEnv([lambda: gym.make("edgegen/MEG-v0")]))


def test_entity_critics_are_permutation_invariant_sums_over_devices(tmp_path):
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    config = CVPOConfig(learning_starts=20, batch_size=16, num_particles=4)
    layout = {"net_arch": (16,), "entity_layout": (3, 1), "entity_critic_arch": (8,)}
    model = CVPO("MlpPolicy", env, config, policy_kwargs=layout, seed=0)
    model.learn(40)
    rng = np.random.default_rng(0)
    obs = th.as_tensor(rng.uniform(0, 1, (6, 31)), dtype=th.float32)
    act = th.as_tensor(rng.uniform(-1, 1, (6, 10)), dtype=th.float32)
    perm = rng.permutation(10)
    obs_p, act_p = obs.clone(), act[:, perm]
    obs_p[:, :30] = obs[:, :30].reshape(6, 10, 3)[:, perm].reshape(6, 30)
    with th.no_grad():
        q_r, q_c = model.policy.critics(obs, act)
        q_r_p, q_c_p = model.policy.critics(obs_p, act_p)
        np.testing.assert_allclose(q_r_p.numpy(), q_r.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(q_c_p.numpy(), q_c.numpy(), rtol=1e-5, atol=1e-5)
        # additive: device 0's action moves Q by the same amount whatever the other devices do
        moved, other = act.clone(), act.clone()
        moved[:, 0] = -act[:, 0]
        other[:, 1:] = th.as_tensor(rng.uniform(-1, 1, (6, 9)), dtype=th.float32)
        other_moved = other.clone()
        other_moved[:, 0] = -act[:, 0]
        delta = model.policy.critics(obs, moved)[0] - q_r
        delta_other = model.policy.critics(obs, other_moved)[0] - model.policy.critics(obs, other)[0]
        np.testing.assert_allclose(delta_other.numpy(), delta.numpy(), atol=1e-5)
        assert delta.abs().max() > 1e-4
    model.save(tmp_path / "entity_critic")
    loaded = CVPO.load(tmp_path / "entity_critic.zip")
    assert loaded.policy_kwargs["entity_critic_arch"] == (8,)
    with th.no_grad():
        np.testing.assert_array_equal(loaded.policy.critics(obs, act)[0].numpy(), q_r.numpy())
    with pytest.raises(ValueError, match=r"entity_critic_arch needs entity_layout"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_critic_arch": (8,)})
    with pytest.raises(ValueError, match=r"policy_kwargs entity_critic_arch is out of range"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (3, 1), "entity_critic_arch": (0,)})
    with pytest.raises(ValueError, match=r"policy_kwargs entity_critic is out of range: 'max'"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (3, 1), "entity_critic": "max"})
    with pytest.raises(ValueError, match=r"entity_critic='set' needs entity_critic_arch with at least one"):
        CVPO("MlpPolicy", env, policy_kwargs={"entity_layout": (3, 1), "entity_critic": "set"})
    with pytest.raises(ValueError, match=r"entity_critic='set' needs entity_critic_arch with at least one"):
        CVPO(
            "MlpPolicy",
            env,
            policy_kwargs={"entity_layout": (3, 1), "entity_critic": "set", "entity_critic_arch": ()},
        )
    # a set critic saves and loads like the sum critic
    set_kwargs = {
        "net_arch": (16,),
        "entity_layout": (3, 1),
        "entity_critic_arch": (8,),
        "entity_critic": "set",
    }
    model = CVPO("MlpPolicy", env, policy_kwargs=set_kwargs, seed=0)
    model.save(tmp_path / "set_critic")
    loaded = CVPO.load(tmp_path / "set_critic.zip")
    assert isinstance(loaded.policy.critics, SetCritics) and loaded.policy_kwargs["entity_critic"] == "set"
    with th.no_grad():
        np.testing.assert_array_equal(
            loaded.policy.critics(obs, act)[0].numpy(), model.policy.critics(obs, act)[0].numpy()
        )


@pytest.mark.parametrize("entity_layout", [None, (3, 1)])
def test_min_std_floors_the_policy_std_and_survives_save_load(tmp_path, entity_layout):
    env = gym.make("edgegen/FedDiffusion-v0", num_rounds=5, max_episode_steps=5)
    layout = {"net_arch": (8,), "min_std": 0.3, "entity_layout": entity_layout}
    model = CVPO("MlpPolicy", env, policy_kwargs=layout, seed=0)
    obs = th.zeros(4, 31)
    with th.no_grad():
        model.policy.actor.log_std.fill_(-5.0)  # a collapsed std is held at the floor
        np.testing.assert_allclose(model.policy.actor(obs)[1].numpy(), 0.3, rtol=1e-6)
        model.policy.actor.log_std.fill_(-1.0)  # above the floor it is the policy's own
        np.testing.assert_allclose(model.policy.actor(obs)[1].numpy(), np.exp(-1.0), rtol=1e-6)
    model.save(tmp_path / "floored")
    loaded = CVPO.load(tmp_path / "floored.zip")
    with th.no_grad():
        loaded.policy.actor.log_std.fill_(-5.0)
        np.testing.assert_allclose(loaded.policy.actor(obs)[1].numpy(), 0.3, rtol=1e-6)
    with pytest.raises(
        ValueError, match=r"policy_kwargs min_std is out of range: .* \(allowed: None or in \(0, 1\)\)"
    ):
        CVPO("MlpPolicy", env, policy_kwargs={"min_std": 0.0})


def test_cost_feedback_rescales_the_thresholds_by_the_deterministic_policys_cost(tmp_path):
    env = DummyVecEnv([ToyCMDP])
    model = CVPO(
        "MlpPolicy",
        env,
        threshold_horizon=10,
        cost_feedback="deterministic",
        feedback_every=100,
        feedback_episodes=3,
        feedback_gain=0.5,
        learning_starts=50,
        batch_size=16,
        num_particles=4,
        updates_per_step=0.1,
        seed=0,
    )
    # the E-step reads the rescaled thresholds; record what it gets
    seen = []
    solve = CVPO._update.__globals__["solve_estep_dual"]

    def spy(q_r, q_c, eps, thresholds, dual, dual_max):
        seen.append(np.array(thresholds))
        return solve(q_r, q_c, eps, thresholds, dual, dual_max)

    CVPO._update.__globals__["solve_estep_dual"] = spy
    try:
        model.learn(99)  # no feedback yet: the thresholds are the configured ones
        np.testing.assert_array_equal(model.threshold_scale, [1.0])
        np.testing.assert_allclose(seen[-1], model.thresholds)
        cost = deterministic_cost_per_step(model, 3)
        before = model.num_timesteps
        model.learn(1, reset_num_timesteps=False)  # step 100 reaches feedback_every: one feedback
        expected = np.clip(np.exp(-0.5 * (cost / 0.3 - 1.0)), 0.25, 4.0)
        np.testing.assert_allclose(model.threshold_scale, [expected], rtol=1e-6)
        assert abs(expected - 1.0) > 1e-3  # the untrained mean action is not at the limit
        # one env step plus three 10-step feedback episodes; the next feedback 100 steps later
        assert model.num_timesteps == before + 1 + 30
        assert model._next_feedback == model.num_timesteps + 100
        updates = len(seen)
        model.learn(20, reset_num_timesteps=False)  # 0.1 updates per step: two more E-steps
        assert len(seen) == updates + 2
        np.testing.assert_allclose(seen[-1], model.thresholds * expected, rtol=1e-6)
    finally:
        CVPO._update.__globals__["solve_estep_dual"] = solve
    model.save(tmp_path / "cvpo")
    loaded = CVPO.load(tmp_path / "cvpo.zip", env=env)
    np.testing.assert_array_equal(loaded.threshold_scale, model.threshold_scale)
    assert loaded._feedback_env is None and loaded.config.cost_feedback == "deterministic"


def test_cost_feedback_settings_are_checked():
    with pytest.raises(ValueError, match=r"CVPOConfig\.cost_feedback is out of range: 'mean'"):
        CVPOConfig(cost_feedback="mean")
    with pytest.raises(ValueError, match=r"CVPOConfig\.feedback_every is out of range: 0"):
        CVPOConfig(feedback_every=0)
    with pytest.raises(ValueError, match=r"CVPOConfig\.feedback_gain is out of range"):
        CVPOConfig(feedback_gain=0.0)
