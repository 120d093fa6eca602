"""Agents and policies for the edgegen envs (stable-baselines3 interface: learn, predict, save, load)."""

from agents.cvpo import CVPO, CVPOConfig
from agents.evaluation import EvaluationResult, evaluate_policy_with_cost
from agents.oracle import BaselinePolicy, OraclePolicy, RandomPolicy
from agents.ppo_lagrangian import PPOLagrangian

__all__ = [
    "CVPO",
    "BaselinePolicy",
    "CVPOConfig",
    "EvaluationResult",
    "OraclePolicy",
    "PPOLagrangian",
    "RandomPolicy",
    "evaluate_policy_with_cost",
]
