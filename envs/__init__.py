"""edgegen-gym environments. Importing this package registers every ``edgegen/...`` id.

>>> import gymnasium as gym, edgegen
>>> sorted(i for i in gym.registry if i.startswith("edgegen/"))
['edgegen/FedDiffusion-v0', 'edgegen/MEG-v0', 'edgegen/SFLAM-v0']
"""

from gymnasium.envs.registration import register, registry

from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.cmdp import CostSpec
from edgegen.envs.oracle_result import OracleResult

__all__ = ["CostSpec", "EdgeGenEnv", "OracleResult"]

# No max_episode_steps here: each env truncates itself after its configured horizon (``horizon`` /
# ``num_rounds``) and reports it as ``env.spec.max_episode_steps``, so that an override of the horizon
# is never cut short by a registered TimeLimit.


def _register(env_id: str, entry_point: str, vector_entry_point: str) -> None:
    # A source checkout can import these files twice (as ``edgegen.envs`` and as the top-level
    # ``envs``): the same registration again is skipped instead of overriding it with a warning.
    spec = registry.get(env_id)
    if spec is None or spec.entry_point != entry_point:
        register(id=env_id, entry_point=entry_point, vector_entry_point=vector_entry_point)


_register(
    "edgegen/FedDiffusion-v0",
    "edgegen.envs.fed_diffusion.env:FedDiffusionEnv",
    "edgegen.envs.fed_diffusion.vector:FedDiffusionVectorEnv",
)
_register("edgegen/MEG-v0", "edgegen.envs.meg.env:MEGEnv", "edgegen.envs.meg.vector:MEGVectorEnv")
_register("edgegen/SFLAM-v0", "edgegen.envs.sflam.env:SFLAMEnv", "edgegen.envs.sflam.vector:SFLAMVectorEnv")
