"""Analytic oracles of the edgegen envs."""

from edgegen.solvers.fed_energy import FedEnergyResult, solve_round_cvxpy, solve_round_energy

__all__ = ["FedEnergyResult", "solve_round_cvxpy", "solve_round_energy"]
