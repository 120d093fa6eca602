"""edgegen-gym environments. Importing this package registers every ``edgegen/...`` id.

>>> import gymnasium as gym, edgegen
>>> sorted(i for i in gym.registry if i.startswith("edgegen/"))
['edgegen/FedDiffusion-v0', 'edgegen/MEG-v0', 'edgegen/SFLAM-v0']
"""

from gymnasium.envs.registration import register

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.cmdp import CostSpec
from edgegen.envs.oracle_result import OracleResult

__all__ = ["CostSpec", "EdgeGenEnv", "OracleResult"]

# No max_episode_steps here: each env truncates itself after its configured horizon (``horizon`` /
# ``num_rounds``) and reports it as ``env.spec.max_episode_steps``, so that an override of the horizon
# is never cut short by a registered TimeLimit.

register(
    id="edgegen/FedDiffusion-v0",
    entry_point="edgegen.envs.fed_diffusion.env:FedDiffusionEnv",
    vector_entry_point="edgegen.envs.fed_diffusion.vector:FedDiffusionVectorEnv",
)

register(
    id="edgegen/MEG-v0",
    entry_point="edgegen.envs.meg.env:MEGEnv",
    vector_entry_point="edgegen.envs.meg.vector:MEGVectorEnv",
)

register(
    id="edgegen/SFLAM-v0",
    entry_point="edgegen.envs.sflam.env:SFLAMEnv",
    vector_entry_point="edgegen.envs.sflam.vector:SFLAMVectorEnv",
)
