"""The zoo-format recipes of ``ppo_pid`` (``--conf-file edgegen.integrations.rl_zoo3_pid``).

rl-baselines3-zoo reads a Python conf file's ``hyperparams`` attribute, one file per algorithm:
this one holds ``agents/hyperparams/ppo-pid.yml`` for :mod:`edgegen.integrations.rl_zoo3`'s
``ppo_pid``, which adds it by itself.
"""

from __future__ import annotations

from typing import Any

from edgegen.integrations.rl_zoo3 import zoo_entries

__all__ = ["hyperparams"]

hyperparams: dict[str, dict[str, Any]] = zoo_entries("ppo-pid")
"""The zoo-format recipes of ``ppo_pid``."""
