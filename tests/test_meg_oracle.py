"""MEG oracle: limits met on fresh frames, no fixed action beats it, it matches an independently solved LP."""

import gymnasium as gym
import numpy as np
import pytest
from scipy.optimize import linprog

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.meg.channel import iid_frame_snr, rate_bps
from edgegen.envs.meg.config import make_config
from edgegen.envs.meg.cost_model import latent_bits, merged_token_count, task_energy_j, task_latency_s
from edgegen.envs.meg.quality import load_profile
from edgegen.solvers.meg_oracle import action_grid, best_fixed_action, frame_rewards, solve_meg_oracle


def _policy_averages(oracle, config, profile, rate, rng):
    sigma = np.float64(config.feature_noise_std)
    rewards = frame_rewards(profile, oracle.grid, sigma)
    idx = oracle.choose(rate, rewards, rng.random(rate.size))
    latency, energy = oracle.grid.costs(rate, config.tx_power_w)
    rows = np.arange(rate.size)
    return rewards[idx].mean(), latency[rows, idx].mean(), energy[rows, idx].mean()


@pytest.mark.parametrize("preset", ["paper", "fading"])
def test_oracle_meets_both_limits_within_one_percent_on_fresh_frames(preset):
    config, profile = make_config(preset), load_profile()
    oracle = solve_meg_oracle(config, profile, n_frames=10_000, seed=0)
    assert oracle.binding == (True, True)  # the defaults make both constraints bind
    rate = rate_bps(config, iid_frame_snr(config, np.random.default_rng(123), 10_000))
    reward, latency, energy = _policy_averages(oracle, config, profile, rate, np.random.default_rng(5))
    assert 0.99 * 3.8 <= latency <= 1.01 * 3.8
    assert 0.99 * 650.0 <= energy <= 1.01 * 650.0
    assert reward == pytest.approx(oracle.expected_reward, abs=0.02)


def test_no_fixed_action_that_meets_the_limits_beats_the_oracle():
    config, profile = make_config(), load_profile()
    oracle = solve_meg_oracle(config, profile, n_frames=10_000, seed=0)
    rate = rate_bps(config, iid_frame_snr(config, np.random.default_rng(0), 10_000))
    model = config.compute_model
    best = -np.inf
    for steps in range(4, 13):
        for rho in np.linspace(0.0, 0.75, 301):  # finer than the oracle's grid
            tx = latent_bits(merged_token_count(rho, 4096)) / rate
            latency = task_latency_s(model, steps, tx).mean()
            energy = task_energy_j(model, steps, tx, config.tx_power_w).mean()
            if latency <= 3.8 and energy <= 650.0:
                best = max(best, -float(profile.ln_mse(steps, rho, 0.1)[0]))
    assert np.isfinite(best)
    assert best <= oracle.expected_reward
    steps, rho, reward, costs = best_fixed_action(config, profile)
    assert reward <= best + 1e-12 and costs[0] <= 3.8 and costs[1] <= 650.0


@pytest.mark.parametrize("preset", ["paper", "fading"])
def test_dual_decomposition_reaches_the_linear_program_optimum(preset):
    """The best randomised stationary policy on a set of frames is an LP; HiGHS solves it independently."""
    config, profile = make_config(preset), load_profile()
    rate = rate_bps(config, iid_frame_snr(config, np.random.default_rng(7), 300))
    grid = action_grid(config, profile)
    rewards = frame_rewards(profile, grid, np.float64(0.1))
    latency, energy = grid.costs(rate, config.tx_power_w)
    n_frames, n_actions = latency.shape
    c = -np.tile(rewards, n_frames) / n_frames
    a_ub = np.vstack([latency.ravel(), energy.ravel()]) / n_frames
    a_eq = np.kron(np.eye(n_frames), np.ones(n_actions))
    lp = linprog(
        c, A_ub=a_ub, b_ub=[3.8, 650.0], A_eq=a_eq, b_eq=np.ones(n_frames), bounds=(0, 1), method="highs"
    )
    assert lp.status == 0
    oracle = solve_meg_oracle(config, profile, rate=rate)
    assert oracle.expected_costs[0] <= 3.8 * (1 + 1e-9) and oracle.expected_costs[1] <= 650.0 * (1 + 1e-9)
    assert oracle.expected_reward <= -lp.fun + 1e-9
    assert oracle.expected_reward == pytest.approx(-lp.fun, abs=1e-6)


def test_env_oracle_action_beats_baselines_and_meets_limits():
    env = gym.make("edgegen/MEG-v0").unwrapped
    out = {}
    for policy in ("oracle", "best_fixed", "random"):
        rng = np.random.default_rng(0)
        rewards, costs = [], []
        for seed in range(20):
            env.reset(seed=seed)
            for _ in range(64):
                if policy == "oracle":
                    a = env.oracle_action()
                elif policy == "best_fixed":
                    a = env.baseline_action("best_fixed")
                else:
                    a = rng.uniform(-1, 1, 2).astype(np.float32)
                _, r, _, _, info = env.step(a)
                rewards.append(r)
                costs.append(info["costs"])
        out[policy] = (np.mean(rewards), np.mean(costs, axis=0))
    assert out["oracle"][0] > out["best_fixed"][0] > out["random"][0]
    # 20 episodes of 64 frames: sampling error of a few percent at most
    assert out["oracle"][1][0] <= 3.8 * 1.03 and out["oracle"][1][1] <= 650.0 * 1.03


def test_pareto_pruning_keeps_exactly_the_undominated_actions():
    from edgegen.solvers.meg_oracle import pareto_actions

    rng = np.random.default_rng(3)
    r, lat, en = (rng.integers(0, 6, (40, 30)).astype(float) for _ in range(3))  # many ties
    r[:, 4], lat[:, 4], en[:, 4] = r[:, 9], lat[:, 9], en[:, 9]  # exact duplicates: keep the first
    kept = pareto_actions(r, lat, en, chunk=7)
    for i in range(40):
        expected = {
            b
            for b in range(30)
            if not any(
                r[i, a] >= r[i, b]
                and lat[i, a] <= lat[i, b]
                and en[i, a] <= en[i, b]
                and ((r[i, a], lat[i, a], en[i, a]) != (r[i, b], lat[i, b], en[i, b]) or a < b)
                for a in range(30)
                if a != b
            )
        }
        assert set(kept[i].tolist()) == expected
        # and the Lagrangian maximum over the kept actions is the maximum over all of them
        for lam in ((0.0, 0.0), (0.3, 1.2), (2.0, 0.1)):
            score = r[i] - lam[0] * lat[i] - lam[1] * en[i]
            assert score[kept[i]].max() == score.max()
