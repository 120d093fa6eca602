"""``OracleResult``: what every env's ``oracle()`` returns, whatever solver stands behind it.

The objective is the env's per-step objective in physical units, lower is better (FedDiffusion-v0: the
round energy in J; MEG-v0: the expected ln MSE per frame; SFLAM-v0: the weighted round objective).
``lower_bound`` is a certified bound on the optimum of the problem the oracle solves: equal to
``objective`` where the solver is exact, ``-inf`` where it has no certificate.

>>> import numpy as np
>>> r = OracleResult(np.zeros(2, np.float32), objective=2.0, lower_bound=1.5, status="feasible")
>>> r.gap
0.25
>>> r.action.flags.writeable
False
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["ORACLE_STATUSES", "OracleResult", "OracleStatus"]

OracleStatus = Literal["optimal", "feasible", "infeasible"]
ORACLE_STATUSES: tuple[str, ...] = ("optimal", "feasible", "infeasible")


@dataclass(frozen=True)
class OracleResult:
    """The oracle's decision in the current state, its value and how good it is proven to be.

    Attributes:
        action: the action in the env's action space (float32, read-only).
        objective: the env's per-step objective at ``action``, physical units, lower is better.
        lower_bound: a certified lower bound on the optimum (``objective`` when exact, ``-inf`` when
            the solver has none).
        status: ``"optimal"`` (proven), ``"feasible"`` (meets the limits, not proven optimal) or
            ``"infeasible"`` (no action meets the limits; ``action`` is the least-violating one).
        iterations: iterations of the solver (0 when it has none, e.g. a cached lookup).
        solve_time_s: wall time of the solve that produced this result.
        details: solver-specific figures (JSON-friendly scalars).
    """

    action: np.ndarray
    objective: float
    lower_bound: float
    status: OracleStatus
    iterations: int = 0
    solve_time_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        action = np.array(self.action, dtype=np.float32)  # a private copy
        action.flags.writeable = False
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "objective", float(self.objective))
        object.__setattr__(self, "lower_bound", float(self.lower_bound))
        if self.status not in ORACLE_STATUSES:
            raise ValueError(f"OracleResult.status must be one of {ORACLE_STATUSES}, got {self.status!r}")
        if math.isnan(self.objective) or math.isnan(self.lower_bound):
            raise ValueError(
                f"OracleResult objective and lower_bound must not be NaN, got {self.objective}, "
                f"{self.lower_bound}"
            )
        tolerance = 1e-9 * max(1.0, abs(self.objective))
        if self.lower_bound > self.objective + tolerance:
            raise ValueError(
                f"OracleResult.lower_bound ({self.lower_bound}) exceeds objective ({self.objective})"
            )

    @property
    def gap(self) -> float:
        """Certified relative gap ``(objective - lower_bound) / |objective|`` (inf without a bound)."""
        if math.isinf(self.lower_bound):
            return math.inf
        return max(self.objective - self.lower_bound, 0.0) / max(abs(self.objective), 1e-300)
