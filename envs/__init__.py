"""edgegen-gym environments. Importing this package registers every ``edgegen/...`` id.

>>> import gymnasium as gym, envs
>>> sorted(i for i in gym.registry if i.startswith("edgegen/"))
['edgegen/FedDiffusion-v0', 'edgegen/MEG-v0', 'edgegen/SFLAM-v0']
"""

from gymnasium.envs.registration import register

from envs.cmdp import CostSpec

__all__ = ["CostSpec"]

register(
    id="edgegen/FedDiffusion-v0",
    entry_point="envs.fed_diffusion.env:FedDiffusionEnv",
    max_episode_steps=50,
)

register(
    id="edgegen/MEG-v0",
    entry_point="envs.meg.env:MEGEnv",
    max_episode_steps=64,
)

register(
    id="edgegen/SFLAM-v0",
    entry_point="envs.sflam.env:SFLAMEnv",
    max_episode_steps=20,
)
