"""Stop training at the first non-finite observation, reward or cost, and say where it came from.

A NaN cost that reaches a learner surfaces steps later as torch's "Expected parameter loc ... of
distribution Normal", which names neither the env nor the step nor the field. Both agents call
:func:`check_transition` on every vectorised step (a few ``np.isfinite`` reductions on small arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["NonFiniteTransitionError", "check_transition", "env_label"]


class NonFiniteTransitionError(ValueError):
    """An env returned NaN or inf in an observation, reward or cost."""


def env_label(env: Any) -> str:
    """The env's id (``spec.id``) for messages, from a Gymnasium env or an SB3 VecEnv."""
    try:
        spec = env.get_attr("spec", [0])[0] if hasattr(env, "get_attr") else env.spec
    except Exception:
        spec = None
    return getattr(spec, "id", None) or type(getattr(env, "unwrapped", env)).__name__


def check_transition(
    label: str,
    step: int,
    obs: Any,
    rewards: np.ndarray,
    costs: np.ndarray,
    infos: list[dict[str, Any]] | tuple[dict[str, Any], ...] = (),
) -> None:
    """Raise :class:`NonFiniteTransitionError` naming the env, the step and the field if any is not finite.

    ``obs`` may be an array or a dict of arrays (one row per sub-env); ``costs`` is (n_envs, n_costs);
    ``infos`` (SB3's per-env dicts) are searched for the ``terminal_observation`` of finished episodes,
    which the learners bootstrap from.
    """
    for i, info in enumerate(infos):
        terminal = info.get("terminal_observation")
        if terminal is not None and not np.all(np.isfinite(np.asarray(terminal, dtype=np.float64))):
            raise NonFiniteTransitionError(
                f"{label} (sub-env {i}) returned a non-finite observation (the terminal one) at training "
                f"step {step}; training stopped before it reached the networks"
            )
    fields: list[tuple[str, np.ndarray]] = [("reward", np.asarray(rewards, dtype=np.float64))]
    fields.append(("info['costs']", np.asarray(costs, dtype=np.float64)))
    if isinstance(obs, dict):
        fields += [(f"observation[{k!r}]", np.asarray(v, dtype=np.float64)) for k, v in obs.items()]
    else:
        fields.append(("observation", np.asarray(obs, dtype=np.float64)))
    for name, values in fields:
        if np.all(np.isfinite(values)):
            continue
        rows = values.reshape(values.shape[0], -1) if values.ndim else values.reshape(1, 1)
        bad_env = int(np.flatnonzero(~np.all(np.isfinite(rows), axis=1))[0])
        bad = rows[bad_env][~np.isfinite(rows[bad_env])]
        raise NonFiniteTransitionError(
            f"{label} (sub-env {bad_env}) returned a non-finite {name} at training step {step}: "
            f"{bad.tolist()}; training stopped before it reached the networks"
        )
