"""Test session setup: a private cache folder; no doctests of glue for RL libraries not installed here.

``edgegen/integrations/<library>.py`` imports its library at import time (it is glue for it);
``make test-integration`` installs them all and collects every module.
"""

import importlib.util
import os
import tempfile

# Tests never read or fill the user's cache (~/.cache/edgegen: the oracle's evaluations).
os.environ["EDGEGEN_CACHE_DIR"] = tempfile.mkdtemp(prefix="edgegen-test-cache-")

# RLlib ships inside ray but needs ray[rllib]'s extra packages (dm-tree is imported as ``tree``).
_GLUE = {"rllib.py": ("ray.rllib", "tree"), "rl_zoo3.py": ("rl_zoo3",), "rl_zoo3_pid.py": ("rl_zoo3",)}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:  # a parent package (ray) is missing too
        return True


collect_ignore = [
    f"edgegen/integrations/{name}" for name, modules in _GLUE.items() if any(map(_missing, modules))
]
