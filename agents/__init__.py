"""Agents and policies for the edgegen envs (stable-baselines3 interface: learn, predict, save, load)."""

from edgegen.agents import _requires  # noqa: F401  (the 'agents' extra, named if missing)
from edgegen.agents.cvpo import CVPO, CVPOConfig
from edgegen.agents.evaluation import EvaluationResult, evaluate_policy_with_cost
from edgegen.agents.hyperparams import load_hyperparams
from edgegen.agents.oracle import BaselinePolicy, OraclePolicy, RandomPolicy
from edgegen.agents.ppo_lagrangian import PPOLagrangian
from edgegen.agents.vec_env import SB3VecEnv

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
