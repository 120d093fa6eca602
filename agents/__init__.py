"""Agents and policies for the edgegen envs (stable-baselines3 interface: learn, predict, save, load)."""

from agents.cvpo import CVPO, CVPOConfig
from agents.evaluation import EvaluationResult, evaluate_policy_with_cost
from agents.hyperparams import load_hyperparams
from agents.oracle import BaselinePolicy, OraclePolicy, RandomPolicy
from agents.ppo_lagrangian import PPOLagrangian
from agents.vec_env import SB3VecEnv

__all__ = [
    "CVPO",
    "BaselinePolicy",
    "CVPOConfig",
    "EvaluationResult",
    "OraclePolicy",
    "PPOLagrangian",
    "RandomPolicy",
    "SB3VecEnv",
    "evaluate_policy_with_cost",
    "load_hyperparams",
]
