"""The benchmark protocol against hand-derived numbers, and the suite's scoring of job results."""

import math

import numpy as np
import pytest

from edgegen.agents import protocol
from edgegen.agents.protocol import (
    FEASIBILITY_TOLERANCE,
    aggregate_gaps,
    cost_checks,
    gap_and_interval,
    headline,
    mean_interval,
    rank_key,
)
from edgegen.agents.suite import score_jobs

# Student t quantile 0.975 at 2 degrees of freedom, closed form (2p - 1) / sqrt(2p(1 - p)) (tables: 4.303)
T_975_2 = 0.95 / math.sqrt(2 * 0.975 * 0.025)


def test_mean_interval_is_the_t_interval():
    mean, low, high = mean_interval(np.array([1.0, 2.0, 3.0]))  # sd 1, n 3
    half = T_975_2 / math.sqrt(3)
    assert mean == 2.0
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half), rel=1e-12)
    assert mean_interval(np.array([5.0])) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        mean_interval(np.array([]))


def test_relative_gap_is_the_paired_mean_difference_over_the_oracle_mean():
    # d = (1, 2, 3): mean 2, sd 1; oracle mean 10
    gap, low, high = gap_and_interval(np.array([11.0, 12.0, 13.0]), np.array([10.0, 10.0, 10.0]), "relative")
    half = T_975_2 / math.sqrt(3)
    assert gap == pytest.approx(0.2, rel=1e-12)
    assert (low, high) == pytest.approx(((2 - half) / 10, (2 + half) / 10), rel=1e-12)
    # the oracle against itself: exactly 0, a zero-width interval
    assert gap_and_interval(np.array([3.0, 4.0]), np.array([3.0, 4.0]), "relative") == (0.0, 0.0, 0.0)


def test_absolute_gap_keeps_the_direction_for_negative_objectives():
    # ln MSE is negative: a policy at -4.5 against an oracle at -5.0 is 0.5 worse, not "0.9x"
    gap, _, _ = gap_and_interval(np.array([-4.4, -4.6]), np.array([-5.0, -5.0]), "absolute")
    assert gap == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(ValueError, match="positive oracle objective"):
        gap_and_interval(np.array([-4.4, -4.6]), np.array([-5.0, -5.0]), "relative")
    with pytest.raises(ValueError, match="paired episodes"):
        gap_and_interval(np.array([1.0, 2.0]), np.array([1.0]), "absolute")


def test_feasibility_uses_the_upper_end_of_the_interval_with_the_stated_tolerance():
    limit = 2.5
    at_limit = np.array([[2.5], [2.5], [2.5]])  # no spread: ci_high = mean = limit
    check = cost_checks(at_limit, ("latency_s",), (limit,))["latency_s"]
    assert check == {"mean": 2.5, "ci_high": 2.5, "limit": 2.5, "excess": 0.0, "feasible": True}
    # mean below the limit, but the interval's upper end 1 + half above it by more than the tolerance
    spread = np.array([[2.0], [2.5], [3.0]])  # mean 2.5, sd 0.5
    high = 2.5 + T_975_2 * 0.5 / math.sqrt(3)
    check = cost_checks(spread * 0.95, ("latency_s",), (limit,))["latency_s"]
    assert check["ci_high"] == pytest.approx(0.95 * high, rel=1e-12)
    assert check["excess"] == pytest.approx(0.95 * high / limit - 1, rel=1e-12)
    assert check["feasible"] is (0.95 * high / limit - 1 <= FEASIBILITY_TOLERANCE)
    assert check["feasible"] is False
    # within the tolerance: 1 % over
    assert cost_checks(at_limit * 1.01, ("latency_s",), (limit,))["latency_s"]["feasible"] is True
    assert cost_checks(at_limit * 1.03, ("latency_s",), (limit,))["latency_s"]["feasible"] is False


def test_an_infeasible_policy_ranks_below_every_feasible_one_whatever_its_gap():
    # the MEG case: an infeasible PPO-Lag with a small gap vs a feasible fixed action
    feasible = {"feasible": True, "optimality_gap": 0.6, "costs": {"c": {"excess": -0.1}}}
    infeasible = {
        "feasible": False,
        "optimality_gap": 0.05,
        "costs": {"c": {"excess": 0.3}, "d": {"excess": 0.7}},
    }
    assert rank_key(feasible) < rank_key(infeasible)
    assert rank_key(infeasible) == (1, 0.7)  # worst relative excess
    rows = sorted([infeasible, feasible], key=rank_key)
    assert rows[0] is feasible
    # no oracle job (suite --no-baselines): no gap; still feasible, so above the infeasible row
    no_gap = {"feasible": True, "optimality_gap": None, "costs": {"c": {"excess": -0.2}}}
    assert sorted([infeasible, no_gap, feasible], key=rank_key) == [feasible, no_gap, infeasible]


def test_iqm_aggregation_is_rliables_trimmed_mean():
    gaps = np.array([[0.1, 0.2], [0.15, 0.25], [0.12, 0.3]])  # 3 seeds x 2 envs
    out = aggregate_gaps({"a": gaps}, reps=200)["a"]
    # IQM of the 6 scores: drop the lowest and the highest 25 % (one each), mean of the rest
    assert out["iqm"] == pytest.approx(np.mean([0.12, 0.15, 0.2, 0.25]), rel=1e-12)
    assert out["low"] <= out["iqm"] <= out["high"]


def test_seed_blocks_are_disjoint_and_headlines_name_the_envs_objective():
    assert not set(protocol.TUNING_TRAIN_SEEDS) & set(protocol.TRAIN_SEEDS)
    assert protocol.TUNING_EVAL_SEED + 40_000 <= protocol.EVAL_SEED  # the tuning block's episodes end
    import gymnasium as gym

    import edgegen  # noqa: F401  (registers the edgegen ids)

    for env_id, head in protocol.HEADLINES.items():
        assert gym.make(env_id).unwrapped.objective_key == head.metric
    assert headline("edgegen:edgegen/MEG-v0").gap == "absolute"
    with pytest.raises(ValueError, match="no protocol headline"):
        headline("CartPole-v1")


def _job(policy, seed, objective, cost, kind="train"):
    return {
        "env": "edgegen/FedDiffusion-v0",
        "policy": policy,
        "seed": seed,
        "kind": kind,
        "timesteps": 0 if kind == "baseline" else 100,
        "objective": objective,
        "cost_per_step": [[c] for c in cost],
        "cost_names": ["deadline_miss_fraction"],
        "limits": [0.05],
    }


def test_scoring_pairs_each_policy_with_the_oracle_and_ranks_feasible_first():
    results = [
        _job("ppo-lag", 100, [11.0, 12.0, 13.0], [0.2, 0.2, 0.2]),  # better energy, misses too often
        _job("oracle", None, [10.0, 10.0, 10.0], [0.05, 0.05, 0.05], kind="baseline"),
        _job("equal_split", None, [15.0, 15.0, 15.0], [0.0, 0.0, 0.0], kind="baseline"),
    ]
    rows = score_jobs(results)
    assert [r["policy"] for r in rows] == ["oracle", "equal_split", "ppo-lag"]
    by = {r["policy"]: r for r in rows}
    assert by["oracle"]["optimality_gap"] == 0.0 and by["oracle"]["feasible"]
    assert by["equal_split"]["optimality_gap"] == pytest.approx(0.5, rel=1e-12)
    assert by["ppo-lag"]["optimality_gap"] == pytest.approx(0.2, rel=1e-12)
    assert by["ppo-lag"]["feasible"] is False
    assert by["ppo-lag"]["costs"]["deadline_miss_fraction"]["excess"] == pytest.approx(3.0, rel=1e-12)
    for row in rows:
        assert {"env", "policy", "seed", "feasible", "optimality_gap", "costs"} <= set(row)
        assert set(row["costs"]["deadline_miss_fraction"]) >= {"mean", "ci_high", "limit"}
