"""edgegen-gym: constrained MDPs for large generative and AI models at the wireless edge.

``import edgegen`` registers the env ids (``edgegen/FedDiffusion-v0``, ``edgegen/MEG-v0``,
``edgegen/SFLAM-v0``); ``gymnasium.make("edgegen:edgegen/MEG-v0")`` imports it in fresh processes
(Ray workers, ``spawn``). The parts: ``edgegen.envs`` (envs, cost tools), ``edgegen.solvers``
(oracles), ``edgegen.agents`` (learners, the protocol and the suite; the ``agents`` extra) and
``edgegen.train_agent`` (the ``edgegen-train`` command line).

One distinctive top-level name, so that a user's own ``envs/`` or ``agents/`` package cannot shadow
these. In a source checkout the code stays at the top (``envs/``, ``agents/``, ``solvers/``,
``train_agent.py``) and ``edgegen/`` holds symbolic links to it; the wheel holds the files themselves.
"""

from __future__ import annotations

from edgegen import envs as envs  # registers the ids

__version__ = "0.1.0"
__all__ = ["__version__", "envs"]
