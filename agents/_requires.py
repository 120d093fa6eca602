"""Imported first by ``edgegen.agents``: without its extra, one ImportError that names it."""

from edgegen.envs.extras import require_extra

require_extra("agents", "torch", "stable_baselines3")
