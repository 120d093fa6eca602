"""Doctest collection: skip the glue modules of RL libraries that are not installed here.

``edgegen/integrations/<library>.py`` imports its library at import time (it is glue for it);
``make test-integration`` installs them all and collects every module.
"""

import importlib.util

# RLlib ships inside ray but needs ray[rllib]'s extra packages (dm-tree is imported as ``tree``).
_GLUE = {"rllib.py": ("ray.rllib", "tree"), "rl_zoo3.py": ("rl_zoo3",)}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package (ray) is missing too
        return True


collect_ignore = [
    f"edgegen/integrations/{name}" for name, modules in _GLUE.items() if any(map(_missing, modules))
]
