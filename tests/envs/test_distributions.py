"""Every task distribution: API checkers, pickling, determinism, splits, JSON, errors."""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.core import Task, tasks_from_json, tasks_to_json
from metarl.envs.halfcheetah import HalfCheetahDirTask, HalfCheetahVelTask
from metarl.envs.navigation import Navigation2DEnv, Navigation2DTask, Navigation2DVec
from metarl.envs.rand_params import (
    FIELDS,
    HopperRandParamsTask,
    Walker2DRandParamsTask,
    identity_task,
)
from metarl.envs.registration import DISTRIBUTIONS, HORIZONS, TASK_TYPES, get_kernel

MUJOCO = tuple(n for n in DISTRIBUTIONS if n != "Navigation2D")
DISCRETE = ("HalfCheetahDir", "AntDir")
BASE = {"HalfCheetahVel": "HalfCheetah-v5", "HalfCheetahDir": "HalfCheetah-v5",
        "AntVel": "Ant-v5", "AntDir": "Ant-v5", "AntDir2D": "Ant-v5", "AntGoal": "Ant-v5",
        "HopperRandParams": "Hopper-v5", "Walker2DRandParams": "Walker2d-v5"}


def make(name: str, **kwargs: Any) -> Any:
    return gymnasium.make(f"metarl/{name}-v0", **kwargs)


def rollout(env: Any, seed: int, steps: int, action_seed: int = 0) -> list[Any]:
    rng = np.random.default_rng(action_seed)
    out: list[Any] = [env.reset(seed=seed)[0]]
    shape = env.action_space.shape
    for _ in range(steps):
        obs, rew, term, trunc, _ = env.step(rng.uniform(-1, 1, size=shape).astype(np.float32))
        out += [obs, rew, term, trunc]
        if term or trunc:
            out.append(env.reset()[0])
    return out


def assert_same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_checkers_pass(name: str) -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = make(name)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(make(name), warn=False)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_determinism_same_seed_same_tasks_and_trajectory(name: str) -> None:
    runs = []
    for _ in range(2):
        env = make(name, max_episode_steps=30)
        env.reset(seed=5)
        tasks = env.unwrapped.sample_tasks(3)
        env.unwrapped.set_task(tasks[1])
        runs.append((tasks, rollout(env, seed=5, steps=40)))
    assert runs[0][0] == runs[1][0]
    assert_same(runs[0][1], runs[1][1])
    other = make(name, max_episode_steps=30)
    other.reset(seed=6)
    assert other.unwrapped.sample_tasks(3) != runs[0][0] or name in DISCRETE


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_pickle_round_trip_continues_identically(name: str) -> None:
    env = make(name)
    env.reset(seed=3)
    env.unwrapped.set_task(env.unwrapped.sample_tasks(1)[0])
    env.reset(seed=3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        env.step(rng.uniform(-1, 1, size=env.action_space.shape))
    clone = pickle.loads(pickle.dumps(env))
    assert clone.unwrapped.get_task() == env.unwrapped.get_task()
    assert_same(rollout_steps(env, 15), rollout_steps(clone, 15))
    assert_same([env.reset()[0]], [clone.reset()[0]])  # the RNG stream was pickled too


def rollout_steps(env: Any, steps: int) -> list[Any]:
    rng = np.random.default_rng(9)
    out: list[Any] = []
    for _ in range(steps):
        out += list(env.step(rng.uniform(-1, 1, size=env.action_space.shape))[:4])
    return out


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_json_round_trip(name: str, tmp_path: Path) -> None:
    env = make(name)
    env.reset(seed=0)
    tasks = env.unwrapped.sample_tasks(4) + env.unwrapped.sample_tasks(2, split="test")
    tasks_to_json(tasks, tmp_path / "tasks.json")
    loaded = tasks_from_json(tmp_path / "tasks.json")
    assert loaded == tasks and all(type(t) is TASK_TYPES[name] for t in loaded)
    env.unwrapped.set_task(loaded[0])
    assert env.unwrapped.get_task() == tasks[0]


def as_numpy(value: Any) -> Any:
    """A task field as NumPy gives it: a float64 scalar or a float64 array."""
    return np.array(value) if isinstance(value, tuple) else np.float64(value)


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_tasks_built_from_numpy_equal_float_tasks(name: str, tmp_path: Path) -> None:
    """NumPy scalars, arrays and lists become floats and tuples: equal, hash-equal, JSON."""
    cls = TASK_TYPES[name]
    floats = make(name).unwrapped.sample_tasks(2, split="test")
    fields = [f.name for f in dataclasses.fields(cls)]
    from_numpy = [cls(**{f: as_numpy(getattr(t, f)) for f in fields}) for t in floats]
    from_lists = [cls(**{f: np.atleast_1d(getattr(t, f)).tolist() if isinstance(
        getattr(t, f), tuple) else getattr(t, f) for f in fields}) for t in floats]
    for task in from_numpy + from_lists:
        for f in fields:
            value = getattr(task, f)
            assert type(value) is float or (type(value) is tuple and all(
                type(v) is float for v in value)), (f, value)
    assert from_numpy == floats == from_lists
    assert [hash(t) for t in from_numpy] == [hash(t) for t in floats]
    tasks_to_json(from_numpy, tmp_path / "tasks.json")
    loaded = tasks_from_json(tmp_path / "tasks.json")
    assert loaded == floats and {*loaded} == {*floats}


def test_task_fields_reject_values_of_the_wrong_kind() -> None:
    with pytest.raises(ValueError, match="task field 'velocity' must be a real number, got 'fast'"):
        HalfCheetahVelTask("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task field 'direction' must be a real number, got True"):
        HalfCheetahDirTask(True)
    with pytest.raises(ValueError, match="task field 'goal' must be a 1-D sequence of numbers"):
        Navigation2DTask(np.zeros((2, 2)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task field 'goal' must be a 1-D sequence of numbers"):
        Navigation2DTask("ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"task field 'goal\[1\]' must be a real number"):
        Navigation2DTask((0.1, None))  # type: ignore[arg-type]


def test_metaworld_task_fields_normalise_without_metaworld() -> None:
    from metarl.envs.metaworld_tasks import MetaWorldTask

    task = MetaWorldTask(np.str_("ML1"), "reach-v3", "train", np.int64(3), np.int64(0),
                         np.array([0.1, 0.2]))  # type: ignore[arg-type]
    assert task == MetaWorldTask("ML1", "reach-v3", "train", 3, 0, (0.1, 0.2))
    assert type(task.index) is int and type(task.benchmark) is str
    assert json.loads(json.dumps(task.to_dict()))["rand_vec"] == [0.1, 0.2]
    with pytest.raises(ValueError, match="task field 'index' must be an integer, got 2.5"):
        MetaWorldTask("ML1", "reach-v3", "train", 2.5, 0, (0.1,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task field 'env_name' must be a string, got 3"):
        MetaWorldTask("ML1", 3, "train", 2, 0, (0.1,))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_splits(name: str) -> None:
    a, b = make(name), make(name)
    a.reset(seed=1)
    b.reset(seed=2)
    test_a = a.unwrapped.sample_tasks(30, split="test")
    assert test_a == b.unwrapped.sample_tasks(30, split="test")
    assert test_a[:10] == b.unwrapped.sample_tasks(10, split="test")  # a prefix of one sequence
    train_a, train_b = a.unwrapped.sample_tasks(30), b.unwrapped.sample_tasks(30)
    if name in DISCRETE:  # both splits are the same two tasks, by definition
        assert {t.direction for t in test_a + train_a} == {-1.0, 1.0}
        return
    assert train_a != train_b
    held_out = set(a.unwrapped.sample_tasks(1024, split="test"))
    assert not held_out.intersection(train_a + train_b)
    a.reset(seed=1)
    assert a.unwrapped.sample_tasks(30) == train_a  # training draws follow the reset seed


def test_training_split_rejects_test_tasks() -> None:
    """A generator replaying the held-out sequence yields only non-held-out training tasks."""
    from metarl.envs.core import test_split_rng

    env = make("HalfCheetahVel").unwrapped
    env._np_random = test_split_rng("HalfCheetahVel")  # would reproduce the test tasks
    train = env.sample_tasks(5)
    assert not set(train).intersection(env.sample_tasks(1024, split="test"))


def test_task_ranges_and_moments() -> None:
    env = make("HalfCheetahVel").unwrapped
    env.reset(seed=0)
    v = np.array([t.velocity for t in env.sample_tasks(4000)])
    assert v.min() >= 0 and v.max() <= 2
    assert abs(v.mean() - 1.0) < 0.05 and abs(v.var() - 4 / 12) < 0.03
    ant = make("AntVel").unwrapped
    ant.reset(seed=0)
    v = np.array([t.velocity for t in ant.sample_tasks(4000)])
    assert v.min() >= 0 and v.max() <= 3 and abs(v.mean() - 1.5) < 0.08
    goal = make("AntGoal").unwrapped
    goal.reset(seed=0)
    g = np.array([t.goal for t in goal.sample_tasks(4000)])
    assert np.abs(g).max() <= 3 and np.all(np.abs(g.mean(0)) < 0.1)
    assert np.allclose(g.var(0), 36 / 12, atol=0.2)
    d = make("AntDir2D").unwrapped
    d.reset(seed=0)
    u = np.array([t.direction for t in d.sample_tasks(4000)])
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-12)
    assert np.all(np.abs(u.mean(0)) < 0.05)
    cheetah = make("HalfCheetahDir").unwrapped
    cheetah.reset(seed=0)
    dirs = np.array([t.direction for t in cheetah.sample_tasks(4000)])
    assert set(dirs) == {-1.0, 1.0} and abs(dirs.mean()) < 0.05


def test_navigation_goal_moments() -> None:
    env = Navigation2DEnv()
    env.reset(seed=0)
    g = np.array([t.goal for t in env.sample_tasks(4000)])
    assert np.abs(g).max() <= 0.5 and np.allclose(g.var(0), 1 / 12, atol=0.01)


@pytest.mark.parametrize("name", ["HopperRandParams", "Walker2DRandParams"])
def test_rand_params_change_physics(name: str) -> None:
    env = make(name).unwrapped
    env.reset(seed=0)
    base = {f: getattr(env._base_model, f).copy() for f in FIELDS}
    task = env.sample_tasks(1)[0]
    env.set_task(task)
    model = env.model
    for f in FIELDS:
        scale = np.asarray(getattr(task, f)).reshape(base[f].shape)
        np.testing.assert_array_equal(getattr(model, f), base[f] * scale)
        base_f = 1.3 if f == "dof_damping" else 1.5  # rand_param_envs' bases
        logs = np.log(np.asarray(getattr(task, f))) / np.log(base_f)
        assert np.all(np.abs(logs) <= 3 + 1e-12) and np.ptp(logs) > 0.5
    assert not np.array_equal(model.body_mass[1:], base["body_mass"][1:])
    env.set_task(identity_task(type(task)))  # back to the unmodified physics
    np.testing.assert_array_equal(model.body_mass, base["body_mass"])
    # Different physics, same seed and actions => different trajectories.
    env.set_task(task)
    moved = rollout(env, seed=0, steps=10)
    env.set_task(identity_task(type(task)))
    assert not np.array_equal(moved[1], rollout(env, seed=0, steps=10)[1])
    tasks = env.sample_tasks(2000)
    for f, base_f in (("body_mass", 1.5), ("dof_damping", 1.3), ("geom_friction", 1.5)):
        logs = np.log([getattr(t, f) for t in tasks]) / np.log(base_f)
        assert abs(logs.mean()) < 0.1 and abs(logs.var() - 3.0) < 0.2  # U[-3, 3]: var 36/12


@pytest.mark.parametrize("name", MUJOCO)
def test_model_data_and_dt_are_the_live_simulation(name: str) -> None:
    """``env.unwrapped.model`` / ``data`` / ``dt`` as on Gymnasium's own MuJoCo envs."""
    env = make(name)
    sim = env.unwrapped
    obs, _ = env.reset(seed=0)
    qpos = sim.data.qpos.copy()
    obs, *_ = env.step(np.full(env.action_space.shape, 0.5, dtype=np.float32))
    assert not np.array_equal(sim.data.qpos, qpos)  # the live MjData, not a snapshot
    skip = 2 if BASE[name] == "Ant-v5" else 1  # the observation drops the root x (and y)
    nq = sim.model.nq
    np.testing.assert_array_equal(obs[:nq - skip], sim.data.qpos[skip:])
    np.testing.assert_array_equal(obs[nq - skip:nq - skip + sim.model.nv].clip(-10, 10),
                                  sim.data.qvel.clip(-10, 10))  # Hopper/Walker clip qvel
    assert sim.dt == sim.model.opt.timestep * sim.kernel.frame_skip
    assert sim.dt == gymnasium.make(BASE[name]).unwrapped.dt  # Gymnasium's own value
    sim.model.opt.timestep *= 2  # the live MjModel: dt follows it
    assert sim.dt == pytest.approx(2 * gymnasium.make(BASE[name]).unwrapped.dt)


@pytest.mark.parametrize("name", MUJOCO)
def test_observation_and_reset_equal_base_env(name: str) -> None:
    """Same seed and actions: the observation equals the v5 base env's ``_get_obs()``."""
    env = make(name).unwrapped
    base = gymnasium.make(BASE[name]).unwrapped
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(env.reset(seed=11)[0], base.reset(seed=11)[0])
    for _ in range(20):
        a = rng.uniform(-1, 1, size=env.action_space.shape)
        obs, rew, term, _, info = env.step(a)
        bobs, brew, bterm, _, binfo = base.step(a)
        np.testing.assert_array_equal(obs, bobs)
        assert term == bterm
        if name.endswith("RandParams"):  # identity task: the base env's reward exactly
            assert rew == pytest.approx(brew, rel=0, abs=1e-12)
        if name.startswith("HalfCheetah"):
            assert info["x_velocity"] == pytest.approx(binfo["x_velocity"], rel=0, abs=1e-12)


def test_horizons_paper_and_fast() -> None:
    for name in DISTRIBUTIONS:
        assert make(name).spec.max_episode_steps == HORIZONS[name]["paper"]
        assert make(name, max_episode_steps=HORIZONS[name]["fast"]).spec.max_episode_steps \
            == HORIZONS[name]["fast"]
    assert HORIZONS["HalfCheetahVel"] == {"paper": 200, "fast": 100}
    assert HORIZONS["Navigation2D"] == {"paper": 100, "fast": 100}


def test_names_presets_and_horizons_have_one_source() -> None:
    """The preset names, the horizons and the ids come from registration alone."""
    from metarl.envs import batched, navigation, registration

    assert registration.PRESET_NAMES == ("paper", "fast")
    assert all(tuple(HORIZONS[name]) == registration.PRESET_NAMES for name in DISTRIBUTIONS)
    assert HORIZONS["Navigation2D"]["paper"] == navigation.HORIZON
    for preset in registration.PRESET_NAMES:
        assert batched.resolve_horizon("AntVel", None, preset) == HORIZONS["AntVel"][preset]
    with pytest.raises(ValueError, match=r"'preset' must be one of \('paper', 'fast'\)"):
        batched.resolve_horizon("AntVel", None, "slow")
    assert not hasattr(batched, "PRESETS")  # the old copy of the preset names
    assert batched.gym_id is registration.gym_id
    assert registration.gym_id("AntVel") == "metarl/AntVel-v0"
    assert registration.gym_id("Pendulum-v1") == "Pendulum-v1"  # any other Gymnasium id
    env = make("HalfCheetahVel", max_episode_steps=100)
    env.reset(seed=0)
    steps = [env.step(env.action_space.sample())[3] for _ in range(100)]
    assert steps[-1] and not any(steps[:-1])


@pytest.mark.parametrize("name,bad", [
    ("HalfCheetahVel", HalfCheetahVelTask(2.5)),
    ("HalfCheetahVel", HalfCheetahDirTask(1.0)),
    ("HalfCheetahDir", HalfCheetahDirTask(0.5)),
    ("Navigation2D", Navigation2DTask((0.7, 0.0))),
    ("HopperRandParams", identity_task(Walker2DRandParamsTask)),
])
def test_set_task_rejects_bad_tasks(name: str, bad: Task) -> None:
    env = make(name).unwrapped
    before = env.get_task()
    with pytest.raises(ValueError, match="'task'|task field"):
        env.set_task(bad)
    assert env.get_task() == before


def test_error_messages_name_field_and_allowed_values() -> None:
    env = make("AntGoal").unwrapped
    with pytest.raises(ValueError, match=r"'split' must be one of \('train', 'test'\)"):
        env.sample_tasks(2, split="val")
    for n in (0, -3):
        with pytest.raises(ValueError, match="'n' must be a positive integer"):
            env.sample_tasks(n)
    with pytest.raises(ValueError, match=r"'goal\[1\]' must be a finite number in \[-3.0, 3.0\]"):
        env.set_task(type(env.get_task())((0.0, 3.5)))
    with pytest.raises(ValueError, match="'direction' must be one of"):
        make("AntDir").unwrapped.set_task(TASK_TYPES["AntDir"](0.0))
    with pytest.raises(ValueError, match="'direction' must be a unit vector"):
        make("AntDir2D").unwrapped.set_task(TASK_TYPES["AntDir2D"]((1.0, 1.0)))
    bad_scale = identity_task(HopperRandParamsTask)
    bad_scale = HopperRandParamsTask((9.0,) * 5, *[getattr(bad_scale, f) for f in FIELDS[1:]])
    with pytest.raises(ValueError, match="'body_mass' must hold finite factors in"):
        make("HopperRandParams").unwrapped.set_task(bad_scale)
    with pytest.raises(ValueError, match="'name' must be one of"):
        get_kernel("Cartpole")
    with pytest.raises(ValueError, match="task 'type' must be one of"):
        Task.from_dict({"type": "Nope", "velocity": 1.0})


# ---- Navigation2D: batched == single ----------------------------------------------------------


def test_navigation_vec_equals_single_envs() -> None:
    n, horizon = 5, 25
    vec = Navigation2DVec(n, horizon=horizon, seed=4)
    tasks = vec.sample_tasks(n)
    tasks[0] = Navigation2DTask((0.05, 0.0))  # reachable in one step: terminates early
    vec.set_tasks(tasks)
    assert vec.get_tasks() == tasks
    singles: list[Any] = [gymnasium.make("metarl/Navigation2D-v0", max_episode_steps=horizon)
               for _ in range(n)]
    for env, task in zip(singles, tasks, strict=True):
        env.unwrapped.set_task(task)
        env.reset(seed=0)
    obs, _ = vec.reset(seed=4)
    assert obs.dtype == np.float64 and obs.shape == (n, 2)
    rng = np.random.default_rng(2)
    finals = 0
    for t in range(60):
        actions = rng.uniform(-0.2, 0.2, size=(n, 2))
        if t == 0:
            actions[0] = (0.05, 0.0)
        o, r, te, tr, info = vec.step(actions)
        for i, env in enumerate(singles):
            so, sr, ste, str_, _ = env.step(actions[i])
            if ste or str_:
                np.testing.assert_array_equal(info["final_obs"][i], so)
                assert info["_final_obs"][i]
                finals += 1
                so, _ = env.reset()
            np.testing.assert_array_equal(o[i], so)
            assert (r[i], te[i], tr[i]) == (sr, ste, str_)
    assert finals >= n * 2 and te.dtype == bool


def test_navigation_vec_errors_and_spaces() -> None:
    vec = Navigation2DVec(3)
    assert vec.horizon == 100 and vec.metadata["autoreset_mode"].name == "SAME_STEP"
    assert vec.observation_space.shape == (3, 2) and vec.single_action_space.shape == (2,)
    with pytest.raises(ValueError, match="'tasks' must hold num_envs=3 tasks"):
        vec.set_tasks(vec.sample_tasks(2))
    with pytest.raises(ValueError, match="'task' must be a Navigation2DTask"):
        vec.set_tasks([HalfCheetahVelTask(1.0)] * 3)
    with pytest.raises(ValueError, match="'num_envs' must be a positive integer"):
        Navigation2DVec(0)
