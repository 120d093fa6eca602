"""rl-baselines3-zoo with PPO-Lagrangian and this project's recipes, without editing the zoo.

The zoo knows its own algorithms only (``rl_zoo3.utils.ALGOS``), so ``--algo ppo`` on an edgegen env
trains unconstrained PPO and ignores the costs. This launcher adds ``ppo_lag``
(:class:`edgegen.agents.PPOLagrangian`) and ``ppo_pid`` (:class:`PPOPIDLagrangian`, the PID
multiplier) to that table in its own process and runs the zoo's own ``train``; every zoo flag works::

    python -m edgegen.integrations.rl_zoo3 --algo ppo_lag --env edgegen/MEG-v0 -n 60000 --seed 100

Unless given, it adds ``--gym-packages edgegen`` and the ``--conf-file`` of the algorithm's shipped
recipes: ``edgegen.integrations.rl_zoo3`` for ``ppo_lag`` (its :data:`hyperparams`:
``agents/hyperparams/ppo-lag.yml`` with the zoo's ``policy`` and ``n_timesteps`` keys) and
``edgegen.integrations.rl_zoo3_pid`` for ``ppo_pid`` (``ppo-pid.yml``). The training log shows
``rollout/cost_per_step/<name>`` and ``train/lambda/<name>``;
``python -m edgegen.integrations.rl_zoo3 enjoy --algo ppo_lag --env ... -f logs`` replays a trained
agent through the zoo's ``enjoy``.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any, Literal

from edgegen.agents import PPOLagrangian  # names the 'agents' extra if it is missing
from edgegen.agents.hyperparams import load_hyperparams

try:
    import rl_zoo3.utils
except ImportError as err:  # pragma: no cover - depends on the user's install
    raise ImportError(
        f"edgegen.integrations.rl_zoo3 needs rl-baselines3-zoo: pip install rl_zoo3 ({err})"
    ) from err

__all__ = ["ALGOS", "PPOPIDLagrangian", "enjoy", "hyperparams", "main", "register_algos", "zoo_entries"]


class PPOPIDLagrangian(PPOLagrangian):
    """:class:`~edgegen.agents.PPOLagrangian` with the PID multiplier by default: the zoo's ``ppo_pid``.

    (The zoo builds an algorithm from its class and the recipe's keywords only, so the variant is a
    default of the class here.)
    """

    def __init__(
        self,
        policy: Any = "MlpPolicy",
        env: Any = None,
        lagrangian: Literal["gradient", "pid"] = "pid",
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, env, lagrangian=lagrangian, **kwargs)


ALGOS: dict[str, Any] = {"ppo_lag": PPOLagrangian, "ppo_pid": PPOPIDLagrangian}
"""The algorithms this launcher adds to the zoo's table."""
_CONF_FILES = {"ppo_lag": __name__, "ppo_pid": f"{__package__}.rl_zoo3_pid"}

# Training steps of the agents' targets (the protocol's headline budgets, docs/protocol.md).
_N_TIMESTEPS = {"edgegen/FedDiffusion-v0": 100_000, "edgegen/MEG-v0": 60_000, "edgegen/SFLAM-v0": 100_000}


class _FreshEntries(dict[str, dict[str, Any]]):
    """A dict that hands out copies of its entries.

    The zoo turns an entry's values into objects in place (``learning_rate`` into a schedule), and a
    second run in the same process then failed.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        return copy.deepcopy(super().__getitem__(key))


def zoo_entries(algo: str) -> dict[str, dict[str, Any]]:
    """The zoo-format recipes of ``algo`` ("ppo-lag" or "ppo-pid"): ``default`` and every env's."""

    def entry(env_id: str) -> dict[str, Any]:
        settings, _ = load_hyperparams(algo, env_id)
        return {"policy": "MlpPolicy", "n_timesteps": _N_TIMESTEPS.get(env_id, 100_000), **settings}

    return _FreshEntries({"default": entry("default"), **{env_id: entry(env_id) for env_id in _N_TIMESTEPS}})


hyperparams: dict[str, dict[str, Any]] = zoo_entries("ppo-lag")
"""The zoo-format recipes of ``ppo_lag`` (``--conf-file edgegen.integrations.rl_zoo3``)."""


def register_algos() -> None:
    """Add :data:`ALGOS` to ``rl_zoo3.utils.ALGOS`` (this process only)."""
    rl_zoo3.utils.ALGOS.update(ALGOS)


def _with_defaults(argv: Sequence[str], conf_file: bool) -> list[str]:
    args = list(argv)
    if "--gym-packages" not in args:
        args += ["--gym-packages", "edgegen"]
    algo = args[args.index("--algo") + 1] if "--algo" in args else "ppo"
    if conf_file and algo in ALGOS and not {"--conf-file", "-conf"} & set(args):
        args += ["--conf-file", _CONF_FILES[algo]]
    return args


def _run(entry: Any, prog: str, argv: Sequence[str] | None, conf_file: bool) -> None:
    """Run a zoo entry point on ``argv`` (default: this process's) with :data:`ALGOS` registered."""
    register_algos()
    saved = sys.argv
    sys.argv = [prog, *_with_defaults(sys.argv[1:] if argv is None else argv, conf_file)]
    try:
        entry()
    finally:
        sys.argv = saved


def main(argv: Sequence[str] | None = None) -> None:
    """``rl_zoo3.train`` with :data:`ALGOS` known and the defaults above (``argv``: the zoo's flags)."""
    from rl_zoo3.train import train

    _run(train, "rl_zoo3.train", argv, conf_file=True)


def enjoy(argv: Sequence[str] | None = None) -> None:
    """``rl_zoo3.enjoy`` with :data:`ALGOS` known (to replay a trained agent)."""
    from rl_zoo3.enjoy import enjoy as zoo_enjoy

    _run(zoo_enjoy, "rl_zoo3.enjoy", argv, conf_file=False)


if __name__ == "__main__":
    if sys.argv[1:2] == ["enjoy"]:
        enjoy(sys.argv[2:])
    else:
        main()
