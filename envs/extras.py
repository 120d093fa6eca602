"""Optional dependencies: a missing extra raises an ImportError that names the extra to install.

The base install (gymnasium, numpy, scipy, cvxpy) runs the envs, their oracles and the cost tools.
The extras: ``agents`` (torch, stable-baselines3, tensorboard, ...), ``live`` (the diffusers /
transformers / scikit-learn backends), ``suite`` (Ray Tune, rliable, tyro), ``all``.

>>> require_extra("agents", "numpy")  # present: nothing happens
>>> try:
...     require_extra("live", "no_such_module_xyz")
... except ImportError as err:
...     print(err)
no_such_module_xyz is missing: this needs edgegen-gym's 'live' extra: pip install 'edgegen-gym[live]'
"""

from __future__ import annotations

import importlib.util

__all__ = ["require_extra"]


def require_extra(extra: str, *modules: str) -> None:
    """Raise ``ImportError`` naming ``extra`` unless every one of ``modules`` can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ImportError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: this needs "
            f"edgegen-gym's {extra!r} extra: pip install 'edgegen-gym[{extra}]'"
        )
