"""MEG-v0: mobile edge generation (config, channel, cost model, quality profile, env)."""

from edgegen.envs.meg.config import PRESETS, MEGConfig, make_config

__all__ = ["PRESETS", "MEGConfig", "make_config"]
