"""FedDiffusion-v0: config, energy model, env."""

from edgegen.envs.fed_diffusion.config import PRESETS, FedDiffusionConfig, make_config
from edgegen.envs.fed_diffusion.energy import RoundOutcome, RoundProblem, round_outcome

__all__ = ["PRESETS", "FedDiffusionConfig", "RoundOutcome", "RoundProblem", "make_config", "round_outcome"]
