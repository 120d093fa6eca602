"""SFLAM-v0: quantized split federated fine-tuning of a ViT (config, system model, env)."""

from edgegen.envs.sflam.config import PRESETS, SFLAMConfig, make_config

__all__ = ["PRESETS", "SFLAMConfig", "make_config"]
