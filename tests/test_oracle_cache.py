"""The oracle's evaluation is computed once per env config and episode block, then read back."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from edgegen.agents import OraclePolicy, evaluate_policy_with_cost
from edgegen.agents.evaluation import evaluate_oracle_cached, oracle_cache_key


def _env(**kw):
    return gym.make("edgegen/FedDiffusion-v0", num_rounds=6, **kw)


def test_second_evaluation_reads_the_cache_and_equals_the_first(tmp_path, monkeypatch):
    env = _env()
    first = evaluate_oracle_cached(OraclePolicy(env), env, 3, seed=40, cache=tmp_path)
    direct = evaluate_policy_with_cost(OraclePolicy(env), env, 3, seed=40)
    np.testing.assert_array_equal(first.rewards, direct.rewards)
    np.testing.assert_array_equal(first.costs, direct.costs)

    def no_solving(*args, **kwargs):
        raise AssertionError("the oracle was asked again")

    monkeypatch.setattr(OraclePolicy, "predict", no_solving)
    again = evaluate_oracle_cached(OraclePolicy(env), env, 3, seed=40, cache=tmp_path)
    for field in ("rewards", "lengths", "costs"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    np.testing.assert_array_equal(again.metrics["energy_j"], first.metrics["energy_j"])
    with pytest.raises(AssertionError, match="asked again"):  # another episode block is not cached
        evaluate_oracle_cached(OraclePolicy(env), env, 3, seed=41, cache=tmp_path)


def test_the_key_holds_the_config_the_episodes_and_the_metrics():
    key = oracle_cache_key(_env(), 3, 40, ("energy_j",))
    assert key == oracle_cache_key(_env(), 3, 40, ("energy_j",))
    assert key != oracle_cache_key(_env(deadline_miss_fraction_limit=0.1), 3, 40, ("energy_j",))
    assert key != oracle_cache_key(_env(), 4, 40, ("energy_j",))
    assert key != oracle_cache_key(_env(), 3, 40, ("energy_j", "ln_mse"))


def test_a_damaged_cache_file_is_evaluated_again_and_replaced(tmp_path):
    env = _env()
    first = evaluate_oracle_cached(OraclePolicy(env), env, 2, seed=7, cache=tmp_path)
    (path,) = tmp_path.glob("*.json")
    path.write_text('{"rewards": [1.0')  # cut short
    again = evaluate_oracle_cached(OraclePolicy(env), env, 2, seed=7, cache=tmp_path)
    np.testing.assert_array_equal(again.rewards, first.rewards)
    assert path.read_text().startswith('{"rewards": [') and path.stat().st_size > 30
