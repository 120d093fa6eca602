"""Agents and policies for the edgegen envs."""

from agents.oracle import OraclePolicy

__all__ = ["OraclePolicy"]
