"""The contract every registered ``edgegen/`` env keeps (see ``envs/base.py``).

A new env gets every check here by being registered. Per-env test files hold only model tests.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import edgegen
from edgegen.envs.base import EdgeGenEnv
from edgegen.envs.cmdp import SingleCostWrapper
from edgegen.envs.oracle_result import ORACLE_STATUSES, OracleResult

IDS = sorted(i for i in gym.registry if i.startswith("edgegen/"))
# Every id with its default preset, plus the cheap presets.
CASES = [(i, {}) for i in IDS] + [
    ("edgegen/FedDiffusion-v0", {"preset": "static"}),
    ("edgegen/FedDiffusion-v0", {"preset": "large"}),
    ("edgegen/MEG-v0", {"preset": "fading"}),
    ("edgegen/SFLAM-v0", {"preset": "small"}),
]
CASE_IDS = [f"{i.split('/')[1]}{'-' + kw['preset'] if kw else ''}" for i, kw in CASES]
# Cases whose oracle is cheap enough to call on every step of a few episodes (SFLAM's BCD takes
# seconds per round at M = 10).
ORACLE_CASES = [(i, kw) for i, kw in CASES if not (i == "edgegen/SFLAM-v0" and not kw)]
ORACLE_CASE_IDS = [c for c, case in zip(CASE_IDS, CASES, strict=True) if case in ORACLE_CASES]


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, **kwargs)


def test_every_env_subclasses_the_base():
    assert IDS == ["edgegen/FedDiffusion-v0", "edgegen/MEG-v0", "edgegen/SFLAM-v0"]
    for env_id in IDS:
        assert isinstance(make(env_id).unwrapped, EdgeGenEnv)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_checkers_pass_without_warnings(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(make(env_id, **kwargs).unwrapped, skip_render_check=False)
        sb3_check_env(make(env_id, **kwargs), warn=True)


def _rollout(env: gym.Env, seed: int, steps: int) -> list:
    rng = np.random.default_rng(123)
    obs, info = env.reset(seed=seed)
    out = [(obs.copy(), {k: np.copy(v) for k, v in info.items()})]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(
            rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        )
        out.append((obs.copy(), reward, terminated, truncated, {k: np.copy(v) for k, v in info.items()}))
        if terminated or truncated:
            obs, info = env.reset()
    return out


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, dict):
                assert u.keys() == v.keys()
                for key in u:
                    np.testing.assert_array_equal(u[key], v[key], err_msg=key)
            else:
                np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_seeding_reproduces_the_trajectory(env_id, kwargs):
    first = _rollout(make(env_id, **kwargs), seed=7, steps=45)
    second = _rollout(make(env_id, **kwargs), seed=7, steps=45)
    _assert_same(first, second)
    other = _rollout(make(env_id, **kwargs), seed=8, steps=45)
    assert not np.array_equal(first[0][0], other[0][0]) or not np.array_equal(first[1][0], other[1][0])


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_info_keys_dtypes_and_numpy_scalars(env_id, kwargs):
    env = make(env_id, **kwargs)
    spec = env.unwrapped.cost_spec
    _, reset_info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(env.action_space.sample())
    _, _, _, _, clipped_info = env.step(np.full(env.action_space.shape, 3.0, np.float32))
    assert reset_info.keys() == step_info.keys() == clipped_info.keys()
    for info in (reset_info, step_info):
        for key, value in info.items():
            # TorchRL's info readers call .dtype: no Python floats, ints or bools.
            assert isinstance(value, np.ndarray | np.generic), (key, type(value))
        assert info["costs"].dtype == np.float64 and info["costs"].shape == (spec.num_costs,)
        assert isinstance(info["cost"], np.float64)
        assert isinstance(info["action_clipped"], np.bool_)
    for key in reset_info:
        assert np.asarray(reset_info[key]).dtype.kind == np.asarray(step_info[key]).dtype.kind, key
        assert np.shape(reset_info[key]) == np.shape(step_info[key]), key
    np.testing.assert_array_equal(reset_info["costs"], 0.0)
    assert reset_info["cost"] == 0.0
    assert not step_info["action_clipped"] and clipped_info["action_clipped"]
    ratio = step_info["costs"] / spec.limits_array
    assert step_info["cost"] == pytest.approx(ratio.max(), rel=1e-12)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_out_of_range_actions_are_clipped(env_id, kwargs):
    a, b = make(env_id, **kwargs), make(env_id, **kwargs)
    a.reset(seed=3)
    b.reset(seed=3)
    action = np.random.default_rng(0).uniform(-3, 3, a.action_space.shape).astype(np.float32)
    out_a = a.step(action)
    out_b = b.step(np.clip(action, -1, 1))
    np.testing.assert_array_equal(out_a[0], out_b[0])
    assert out_a[1] == out_b[1]
    np.testing.assert_array_equal(out_a[4]["costs"], out_b[4]["costs"])
    assert out_a[4]["action_clipped"] and not out_b[4]["action_clipped"]


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_bad_actions_name_the_env_and_entries(env_id, kwargs):
    env = make(env_id, **kwargs)
    env.reset(seed=0)
    name = env.unwrapped.env_name
    action = np.zeros(env.action_space.shape)
    action[0] = np.nan
    action[-1] = -np.inf
    with pytest.raises(ValueError, match=rf"{name} action has NaN/inf at entries \[0, {action.size - 1}\]"):
        env.step(action)
    with pytest.raises(ValueError, match=rf"{name} action must have shape"):
        env.step(np.zeros(action.size + 1))


@pytest.mark.parametrize("env_id", IDS)
def test_bad_keywords_and_values(env_id):
    env = make(env_id).unwrapped
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        make(env_id, frameskip=4)  # TorchRL's GymEnv probes with frameskip= and tolerates only TypeError
    horizon = env.horizon_field
    for bad in (0, 2.5, True, "10"):
        with pytest.raises(ValueError, match=rf"{env.config_class.__name__}.{horizon}"):
            make(env_id, **{horizon: bad})
    with pytest.raises(ValueError, match="preset"):
        make(env_id, preset="no-such-preset")
    # gymnasium.make warns about an unknown render mode before the env refuses it
    with pytest.raises(ValueError, match="render_mode"), pytest.warns(UserWarning, match="human-ish"):
        make(env_id, render_mode="human-ish")


@pytest.mark.parametrize("env_id", IDS)
def test_every_float_field_must_be_finite(env_id):
    config = make(env_id).unwrapped.config
    for field in dataclasses.fields(config):
        if isinstance(getattr(config, field.name), float):
            for bad in (float("nan"), float("inf"), -float("inf")):
                with pytest.raises(ValueError, match=field.name):
                    make(env_id, **{field.name: bad})


@pytest.mark.parametrize("env_id", IDS)
def test_limits_are_config_fields_named_after_the_costs(env_id):
    env = make(env_id).unwrapped
    spec = env.cost_spec
    for name, limit in zip(spec.names, spec.limits, strict=True):
        assert getattr(env.config, f"{name}_limit") == limit
        changed = make(env_id, **{f"{name}_limit": limit * 2}).unwrapped.cost_spec
        assert changed.limits[spec.index(name)] == limit * 2


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("change", [-3, 7])
def test_horizon_overrides_set_the_episode_length(env_id, change):
    default = make(env_id).unwrapped
    horizon = default.horizon + change
    kwargs = {default.horizon_field: horizon}
    env = make(env_id, **kwargs)
    assert env.spec.max_episode_steps == horizon
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
        assert steps <= horizon
    assert steps == horizon
    # the same through make_vec: the sub-envs truncate after the configured horizon
    vec = gym.make_vec(env_id, num_envs=2, vectorization_mode="sync", **kwargs)
    vec.reset(seed=0)
    for step in range(1, horizon + 1):
        _, _, _, truncated_v, _ = vec.step(vec.action_space.sample())
        assert truncated_v.all() == (step == horizon)
    assert all(sub.spec.max_episode_steps == horizon for sub in vec.envs)


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
@pytest.mark.parametrize("mode", [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP])
def test_vector_envs_keep_costs_aligned(env_id, kwargs, mode):
    spec = make(env_id, **kwargs).unwrapped.cost_spec
    vec = gym.make_vec(
        env_id, num_envs=3, vectorization_mode="sync", vector_kwargs={"autoreset_mode": mode}, **kwargs
    )
    vec.reset(seed=1)
    for _ in range(make(env_id, **kwargs).unwrapped.horizon + 2):
        _, _, _, _, info = vec.step(vec.action_space.sample())
        assert info["costs"].shape == (3, spec.num_costs) and info["costs"].dtype == np.float64
        assert info["cost"].shape == (3,)


def _check_result(env: gym.Env, result: OracleResult, kind: str | None = None) -> None:
    assert isinstance(result, OracleResult)
    assert result.action.dtype == np.float32 and env.action_space.contains(result.action)
    assert not result.action.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.objective = 0.0  # type: ignore[misc]
    assert result.status in ORACLE_STATUSES
    assert result.lower_bound <= result.objective + 1e-9 * abs(result.objective)
    assert np.isfinite(result.objective) and result.iterations >= 0 and result.solve_time_s >= 0
    if result.status == "optimal":
        assert result.gap <= 1e-6
    np.testing.assert_array_equal(env.unwrapped.oracle_action(kind), result.action)


@pytest.mark.parametrize(("env_id", "kwargs"), ORACLE_CASES, ids=ORACLE_CASE_IDS)
def test_oracle_result_is_consistent_with_the_step(env_id, kwargs):
    env = make(env_id, **kwargs)
    unwrapped = env.unwrapped
    spec = unwrapped.cost_spec
    assert unwrapped.oracle_kinds[0] == "cmdp"  # the yardstick is the default everywhere
    steps = {"edgegen/SFLAM-v0": 6}.get(env_id, 3 * unwrapped.horizon)
    for kind in unwrapped.oracle_kinds:
        env.reset(seed=11)
        for _ in range(steps):
            result = unwrapped.oracle(kind)
            _check_result(env, result, kind)
            _, _, _, truncated, info = env.step(result.action)
            if unwrapped.oracle_objective_is_per_step(kind):
                # the objective is the env's own per-step objective at the returned action
                assert info[unwrapped.objective_key] == pytest.approx(result.objective, rel=1e-12)
                if result.status != "infeasible":  # never a limit-breaking action without saying so
                    assert np.all(info["costs"] <= spec.limits_array * (1 + 1e-12)), info["costs"]
            if truncated:
                env.reset()
    with pytest.raises(ValueError, match="oracle kind must be one of"):
        unwrapped.oracle("exact")


# The CMDP oracles are stationary policies: over fresh episodes their mean objective per step is
# their objective, and their mean cost per step is within each limit, up to sampling noise (3 SE;
# episodes are the independent units, since an episode's rounds share its devices).
CMDP_CASES = [
    ("edgegen/MEG-v0", {}, 20),
    ("edgegen/FedDiffusion-v0", {}, 40),
    ("edgegen/SFLAM-v0", {"preset": "small"}, 12),
]


@pytest.mark.parametrize(("env_id", "kwargs", "episodes"), CMDP_CASES, ids=[c[0][8:] for c in CMDP_CASES])
def test_cmdp_oracle_objective_and_costs_are_its_means_per_step(env_id, kwargs, episodes):
    env = make(env_id, **kwargs)
    unwrapped = env.unwrapped
    objectives, costs = [], []
    for seed in range(episodes):
        env.reset(seed=1000 + seed)
        for _ in range(unwrapped.horizon):
            _, _, _, _, info = env.step(unwrapped.oracle_action("cmdp"))
            objectives.append(info[unwrapped.objective_key])
            costs.append(info["costs"])
    per_episode = np.asarray(objectives).reshape(episodes, -1).mean(axis=1)
    cost_episodes = np.asarray(costs).reshape(episodes, unwrapped.horizon, -1).mean(axis=1)
    env.reset(seed=0)
    result = unwrapped.oracle("cmdp")
    half_width = 3.0 * per_episode.std(ddof=1) / np.sqrt(episodes)
    assert abs(per_episode.mean() - result.objective) <= half_width
    cost_half = 3.0 * cost_episodes.std(axis=0, ddof=1) / np.sqrt(episodes)
    assert np.all(cost_episodes.mean(axis=0) <= unwrapped.cost_spec.limits_array + cost_half)


@pytest.mark.parametrize("env_id", IDS)
def test_oracle_outside_an_episode_raises(env_id):
    env = make(env_id).unwrapped
    with pytest.raises(RuntimeError, match="call reset"):
        env.oracle()
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(env.action_space.sample())


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_render_modes(env_id, kwargs):
    for mode in ("ansi", "rgb_array"):
        env = make(env_id, render_mode=mode, **kwargs)
        env.reset(seed=0)
        first = env.render()
        env.step(env.action_space.sample())
        second = env.render()
        for frame in (first, second):
            if mode == "ansi":
                assert isinstance(frame, str) and frame
            else:
                assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    with pytest.warns(UserWarning, match="without a render_mode"):
        assert make(env_id).unwrapped.render() is None


@pytest.mark.parametrize("env_id", IDS)
def test_single_cost_wrapper_raw_and_normalised(env_id):
    base = make(env_id)
    spec = base.unwrapped.cost_spec
    name = spec.names[-1]
    raw = SingleCostWrapper(make(env_id), cost=name, normalize=False)
    norm = SingleCostWrapper(make(env_id), cost=name)
    for env in (base, raw, norm):
        env.reset(seed=5)
    action = base.action_space.sample()
    info = base.step(action)[4]
    raw_info, norm_info = raw.step(action)[4], norm.step(action)[4]
    value = info["costs"][spec.index(name)]
    assert raw_info["cost"] == value and isinstance(raw_info["cost"], np.float64)
    assert norm_info["cost"] == pytest.approx(value / spec.limits[spec.index(name)], rel=1e-15)
    assert raw.cost_spec.limits == (spec.limits[spec.index(name)],)


def test_env_import_direction_and_no_cvxpy_for_the_scheduler():
    # The env's model (including SFLAM's scheduler) must import without the oracles' cvxpy.
    code = (
        "import sys; import edgegen.envs.sflam.scheduler, edgegen.envs.sflam.system, "
        "edgegen.envs.meg.cost_model, edgegen.envs.fed_diffusion.energy; "
        "print('cvxpy' in sys.modules, 'edgegen.solvers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_registry_lists_the_contract_envs():
    assert set(IDS) <= set(gym.registry)
    assert edgegen.envs.EdgeGenEnv is EdgeGenEnv


def test_importing_the_envs_twice_registers_them_once_without_a_warning():
    """A source checkout holds the files as ``edgegen.envs`` and as the top-level ``envs``."""
    code = "import edgegen, envs, gymnasium as gym; print(gym.spec('edgegen/MEG-v0').entry_point)"
    root = Path(edgegen.__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        capture_output=True, text=True, cwd=root,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "edgegen.envs.meg.env:MEGEnv"


def _extreme_values(value: float) -> list[float]:
    return [value * 1e6, value * 1e-6, value * 1e12, -value * 1e6, 1e-300, 1e300]


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("edgegen/FedDiffusion-v0", {}),
        ("edgegen/MEG-v0", {}),
        pytest.param("edgegen/SFLAM-v0", {"preset": "small"}, marks=pytest.mark.slow),
    ],
    ids=["FedDiffusion-v0", "MEG-v0", "SFLAM-v0-small"],
)
def test_extreme_config_values_work_or_raise_a_clear_value_error(env_id, kwargs):
    # Either the config rejects the value with ValueError naming the field, or the env and its oracle
    # work: a finite action, observation, reward and costs. Never a NaN action or a raw solver error.
    # (MEG's oracle may say, with ValueError, that no action meets a limit on average.)
    config = make(env_id, **kwargs).unwrapped.config
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not isinstance(value, float) or value == 0.0:
            continue
        for extreme in _extreme_values(value):
            try:
                env = make(env_id, **kwargs, **{field.name: extreme})
            except ValueError as err:
                assert f"{type(config).__name__}." in str(err)  # names the (or a dependent) field
                continue
            env.reset(seed=0)
            try:
                result = env.unwrapped.oracle()
            except ValueError as err:
                assert "cannot be met" in str(err), (field.name, extreme, err)
                continue
            obs, reward, _, _, info = env.step(result.action)
            finite = [result.action, obs, reward, info["costs"], result.objective]
            assert all(np.all(np.isfinite(x)) for x in finite), (field.name, extreme)


# An info entry per entity that the last action value of that entity's block drives.
ENTITY_INFO = {"edgegen/FedDiffusion-v0": "compute_time_s", "edgegen/SFLAM-v0": "power_w"}


@pytest.mark.parametrize(("env_id", "kwargs"), CASES, ids=CASE_IDS)
def test_entity_layout_matches_the_spaces_and_each_block_drives_its_own_entity(env_id, kwargs):
    env = make(env_id, **kwargs)
    layout = env.unwrapped.entity_layout
    if layout is None:
        assert env_id not in ENTITY_INFO
        return
    entity_obs, entity_act = layout
    (act_dim,), (obs_dim,) = env.action_space.shape, env.observation_space.shape
    entities, rest = divmod(act_dim, entity_act)
    assert rest == 0 and obs_dim - entities * entity_obs >= 0
    key = ENTITY_INFO[env_id]
    base = np.zeros(act_dim, dtype=np.float32)
    env.reset(seed=3)
    reference = env.unwrapped.step(base)[4][key]
    assert len(reference) == entities
    for k in range(entities):
        env.reset(seed=3)
        moved = base.copy()
        moved[k * entity_act + entity_act - 1] = 0.7
        changed = env.unwrapped.step(moved)[4][key] != reference
        assert changed.tolist() == [i == k for i in range(entities)], (k, changed)
