"""The batched engine against single Gymnasium envs: same tasks, seeds and actions give equal
observations, rewards and flags; autoreset; instability isolation; bad input; determinism; SB3.

The machinery tests use small kernels written here over Gymnasium's own HalfCheetah-v5 and
Ant-v5 (their v5 rewards, so the reference is Gymnasium itself); the tests at the end run the
suite's registered distributions through ``make_batched``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium
import mujoco
import numpy as np
import pytest

from metarl.envs.batched import (
    BatchPhysics,
    DataPhysics,
    EnvFn,
    GymVectorTaskEnv,
    MujocoBatchedEnv,
    check_positive,
    has_mujoco_batch,
)
from metarl.envs.core import Kernel, StepArrays, Task, check_range, check_split

needs_batch = pytest.mark.skipif(not has_mujoco_batch(),
                                 reason="needs mujoco.batch (MuJoCo >= 4.0)")
PHYSICS = [pytest.param("batch", marks=needs_batch), "data"]

# ---------------------------------------------------------------------------------------------
# Test kernels over Gymnasium's v5 envs.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory; SB3's logger
    writes to SB3_LOGDIR (a new folder in /tmp otherwise)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path))



@dataclasses.dataclass(frozen=True)
class MassTask(Task):
    """Scales every body mass: a randomised-physics task (one MjModel per task)."""

    mass_scale: float = 1.0

    def validate(self) -> None:
        check_range("mass_scale", self.mass_scale, 0.5, 2.0)


class MassDistribution(gymnasium.Env):
    """Task bookkeeping of a distribution over a Gymnasium base env (no stepping needed)."""

    task_type = MassTask

    def __init__(self, base_id: str, **kwargs: Any) -> None:
        base = gymnasium.make(base_id, **kwargs)
        self.observation_space = base.observation_space
        self.action_space = base.action_space
        self._task = MassTask()

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        check_split(split)
        return [MassTask(float(s)) for s in self.np_random.uniform(0.5, 2.0, n)]

    def set_task(self, task: Task) -> None:
        self._task = task  # type: ignore[assignment]

    def get_task(self) -> Task:
        return self._task


class _V5Kernel:
    base_kwargs: dict[str, Any] = {}
    frame_skip = 5

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return np.array([[t.mass_scale] for t in tasks])  # type: ignore[attr-defined]

    def task_model(self, base_model: Any, task: Task) -> Any:
        scale = task.mass_scale  # type: ignore[attr-defined]
        if scale == 1.0:
            return base_model
        model = copy.copy(base_model)
        model.body_mass[:] = base_model.body_mass * scale
        return model

    def reset_state(self, rng: np.random.Generator, init_qpos: np.ndarray,
                    init_qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        qpos = init_qpos + rng.uniform(low=-0.1, high=0.1, size=init_qpos.size)
        qvel = init_qvel + 0.1 * rng.standard_normal(init_qvel.size)
        return qpos, qvel


class CheetahKernel(_V5Kernel):
    """HalfCheetah-v5's own observation and reward."""

    base_id = "HalfCheetah-v5"
    needs_cfrc_ext = False

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: Any) -> np.ndarray:
        return np.concatenate([qpos[:, 1:], qvel], axis=1)

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict]:
        x_velocity = (s.qpos_after[:, 0] - s.qpos_before[:, 0]) / s.dt
        ctrl_cost = 0.1 * np.sum(np.square(s.action), axis=1)
        return x_velocity - ctrl_cost, {"reward_ctrl": -ctrl_cost}

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return np.zeros(len(qpos), dtype=bool)


ANT_KWARGS: dict[str, Any] = {"healthy_z_range": (0.35, 0.9)}  # terminations within ~100 steps


class AntKernel(_V5Kernel):
    """Ant-v5's observation (with contact forces) and reward terms but the forward one
    (Ant-v5 takes x_velocity from the torso xpos of the previous substep, not from qpos)."""

    base_id = "Ant-v5"
    base_kwargs = ANT_KWARGS
    needs_cfrc_ext = True

    def observation(self, qpos: np.ndarray, qvel: np.ndarray, cfrc_ext: Any) -> np.ndarray:
        forces = np.clip(cfrc_ext[:, 1:], -1.0, 1.0).reshape(len(qpos), -1)
        return np.concatenate([qpos[:, 2:], qvel, forces], axis=1)

    def _healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        low, high = ANT_KWARGS["healthy_z_range"]
        return finite & (qpos[:, 2] >= low) & (qpos[:, 2] <= high)

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict]:
        assert s.cfrc_ext is not None
        survive = self._healthy(s.qpos_after, s.qvel_after) * 1.0
        ctrl = -0.5 * np.sum(np.square(s.action), axis=1)
        contact = -5e-4 * np.square(np.clip(s.cfrc_ext, -1.0, 1.0)).sum(axis=(1, 2))
        parts = {"reward_survive": survive, "reward_ctrl": ctrl, "reward_contact": contact}
        return survive + ctrl + contact, parts

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return ~self._healthy(qpos, qvel)


def make_engine(kernel: Kernel, num_envs: int, horizon: int, seed: int = 0,
                num_threads: int = 2, physics: str = "auto") -> MujocoBatchedEnv:
    dist = MassDistribution(kernel.base_id, **kernel.base_kwargs)
    return MujocoBatchedEnv(kernel, dist, num_envs, horizon=horizon, seed=seed,
                            num_threads=num_threads, physics=physics)


def run_engine(env: MujocoBatchedEnv, seed: int, actions: np.ndarray) -> dict[str, np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out: dict[str, list] = {"obs0": [obs], "obs": [], "rew": [], "term": [], "trunc": [],
                            "final": [], "unstable": []}
    for a in actions:
        obs, rew, term, trunc, info = env.step(a)
        final = np.full_like(obs, np.nan)
        if "final_obs" in info:
            final[info["_final_obs"]] = info["final_obs"][info["_final_obs"]]
        for key, val in zip(("obs", "rew", "term", "trunc", "final", "unstable"),
                            (obs, rew, term, trunc, final, info["unstable"]), strict=True):
            out[key].append(val)
    return {k: np.array(v) for k, v in out.items()}


def run_singles(kernel: Kernel, tasks: Sequence[MassTask], seed: int, actions: np.ndarray,
                horizon: int, parts: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The reference: one Gymnasium env per row, reset with seed + i, autoreset by hand."""
    n = len(tasks)
    envs: list[Any] = [gymnasium.make(kernel.base_id, **kernel.base_kwargs).unwrapped
                       for _ in range(n)]
    for env, task in zip(envs, tasks, strict=True):
        env.model.body_mass[:] = env.model.body_mass * task.mass_scale
    obs0 = np.array([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    shape = (len(actions), n)
    out = {"obs": np.zeros((*shape, obs0.shape[1])), "rew": np.zeros(shape),
           "term": np.zeros(shape, bool), "trunc": np.zeros(shape, bool),
           "final": np.full((*shape, obs0.shape[1]), np.nan)}
    out.update({p: np.zeros(shape) for p in parts})
    steps = np.zeros(n, dtype=int)
    for t, a in enumerate(actions):
        for i, env in enumerate(envs):
            obs, rew, term, _, info = env.step(a[i])
            steps[i] += 1
            trunc = steps[i] >= horizon
            out["rew"][t, i], out["term"][t, i], out["trunc"][t, i] = rew, term, trunc
            for p in parts:
                out[p][t, i] = info[p]
            if term or trunc:
                out["final"][t, i] = obs
                obs, _ = env.reset()
                steps[i] = 0
            out["obs"][t, i] = obs
    out["obs0"] = obs0[None]
    return out


def random_actions(steps: int, n: int, dim: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (steps, n, dim))


# ---------------------------------------------------------------------------------------------
# Equivalence with the single Gymnasium env.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("physics", PHYSICS)
def test_halfcheetah_equals_gymnasium_with_autoresets(physics: str) -> None:
    kernel, horizon, seed = CheetahKernel(), 30, 7
    env = make_engine(kernel, 4, horizon, physics=physics)
    assert isinstance(env._physics, BatchPhysics if physics == "batch" else DataPhysics)
    actions = random_actions(70, 4, 6)
    got = run_engine(env, seed, actions)
    ref = run_singles(kernel, env.get_tasks(), seed, actions, horizon)
    for key in ("obs0", "obs", "rew", "term", "trunc", "final"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert got["trunc"][[29, 59]].all() and got["trunc"].sum() == 8  # resets at 30 and 60
    assert not got["unstable"].any()


@pytest.mark.parametrize("physics", PHYSICS)
def test_rand_params_per_task_models_equal_gymnasium(physics: str) -> None:
    kernel, horizon, seed = CheetahKernel(), 40, 3
    env = make_engine(kernel, 3, horizon, physics=physics)
    tasks = [MassTask(0.6), MassTask(1.0), MassTask(1.8)]
    env.set_tasks(tasks)
    actions = random_actions(45, 3, 6, seed=4)
    got = run_engine(env, seed, actions)
    ref = run_singles(kernel, tasks, seed, actions, horizon)
    for key in ("obs0", "obs", "rew", "term", "trunc", "final"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    # the tasks matter: env 0 and env 2 started from different seeds, so compare a run with
    # one task everywhere instead
    env.set_tasks([MassTask(1.0)] * 3)
    same = run_engine(env, seed, actions)
    assert np.abs(same["obs"][:, 0] - got["obs"][:, 0]).max() > 1e-3
    np.testing.assert_array_equal(same["obs"][:, 1], got["obs"][:, 1])


def test_ant_equals_gymnasium_with_terminations_and_contact_forces() -> None:
    kernel, horizon, seed = AntKernel(), 1000, 11
    env = make_engine(kernel, 4, horizon)
    assert isinstance(env._physics, DataPhysics)
    actions = random_actions(100, 4, 8, seed=5)
    parts = ("reward_survive", "reward_ctrl", "reward_contact")
    got = run_engine(env, seed, actions)
    ref = run_singles(kernel, env.get_tasks(), seed, actions, horizon, parts)
    for key in ("obs0", "obs", "term", "trunc", "final"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    np.testing.assert_allclose(got["rew"], sum(ref[p] for p in parts), rtol=0, atol=1e-12)
    assert got["term"].sum() >= 2  # terminations happened and were reset in the same step
    assert np.abs(got["obs"][:, :, 27:]).max() > 0  # contact forces are in the observations


# ---------------------------------------------------------------------------------------------
# Autoreset, instability, determinism.
# ---------------------------------------------------------------------------------------------


def test_same_step_autoreset_bookkeeping() -> None:
    env = make_engine(CheetahKernel(), 3, horizon=4)
    obs, _ = env.reset(seed=0)
    actions = random_actions(4, 3, 6)
    for a in actions[:3]:
        obs, _, _, trunc, info = env.step(a)
        assert not trunc.any() and "final_obs" not in info
    obs, _, term, trunc, info = env.step(actions[3])
    assert trunc.all() and not term.any() and info["_final_obs"].all()
    # the new observations are the second reset of each env's stream (seed + i)
    fresh = make_engine(CheetahKernel(), 3, horizon=4)
    fresh.reset(seed=0)
    expected = fresh.reset()[0]
    np.testing.assert_array_equal(obs, expected)
    assert not np.array_equal(info["final_obs"], obs)
    assert env.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP


@pytest.mark.parametrize("kernel_cls", [CheetahKernel, AntKernel])
def test_instability_truncates_only_that_env(kernel_cls: type) -> None:
    kernel = kernel_cls()
    dim = 6 if kernel_cls is CheetahKernel else 8
    actions = random_actions(20, 4, dim, seed=2)
    clean = run_engine(make_engine(kernel, 4, 1000), 5, actions)
    env = make_engine(kernel, 4, 1000)
    env.reset(seed=5)
    bad = actions.copy()
    bad[6, 2] = np.nan  # a NaN action in env 2
    records = []
    for t, a in enumerate(bad):
        if t == 10:  # a corrupted velocity in env 1
            corrupt_qvel(env, 1)
        records.append(env.step(a))
    for t, (obs, rew, term, trunc, info) in enumerate(records):
        hit = {6: 2, 10: 1}.get(t)
        np.testing.assert_array_equal(info["unstable"], np.arange(4) == hit if hit else False)
        ok = [0, 3] if t >= 10 else [0, 1, 3] if t >= 6 else [0, 1, 2, 3]
        np.testing.assert_array_equal(obs[ok], clean["obs"][t][ok])
        np.testing.assert_array_equal(rew[ok], clean["rew"][t][ok])
        if hit is not None:
            assert trunc[hit] and not term[hit] and rew[hit] == 0.0
            np.testing.assert_array_equal(info["final_obs"][hit], clean["obs"][t - 1][hit])
            assert np.isfinite(obs).all()


def corrupt_qvel(env: MujocoBatchedEnv, i: int) -> None:
    phys = env._physics
    if isinstance(phys, BatchPhysics):
        phys.qvel[i] = 1e12  # a view of the simulation's state row
    else:
        phys.datas[i].qvel[:] = 1e12


def test_determinism_and_thread_count_independence() -> None:
    actions = random_actions(25, 5, 6, seed=9)
    runs = [run_engine(make_engine(CheetahKernel(), 5, 10, num_threads=k), 2, actions)
            for k in (1, 2, 2)]
    for other in runs[1:]:
        for key in ("obs", "rew", "final"):
            np.testing.assert_array_equal(runs[0][key], other[key])
    env = make_engine(CheetahKernel(), 5, 10)
    assert not np.array_equal(run_engine(env, 3, actions)["obs"], runs[0]["obs"])


def test_tasks_sampled_from_own_seeded_rng() -> None:
    env = make_engine(CheetahKernel(), 4, 10)
    env.reset(seed=13)
    first = env.sample_tasks(4)
    env.reset(seed=13)
    assert env.sample_tasks(4) == first
    assert env.sample_tasks(4) != first
    env.set_tasks(first)
    assert env.get_tasks() == first


# ---------------------------------------------------------------------------------------------
# Bad input.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -3, 1.5, True, None])
def test_bad_counts_name_the_field(value: Any) -> None:
    with pytest.raises(ValueError, match="'num_envs' must be a positive integer"):
        make_engine(CheetahKernel(), value, 10)
    with pytest.raises(ValueError, match="'horizon' must be a positive integer"):
        make_engine(CheetahKernel(), 2, value)
    with pytest.raises(ValueError, match="'num_threads' must be a positive integer"):
        check_positive("num_threads", value)


def test_bad_actions_and_tasks() -> None:
    env = make_engine(CheetahKernel(), 3, 10)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"'actions' must have shape \(3, 6\)"):
        env.step(np.zeros((2, 6)))
    with pytest.raises(ValueError, match="'tasks' must hold num_envs=3 tasks, got 2"):
        env.set_tasks([MassTask()] * 2)
    with pytest.raises(ValueError, match="mass_scale"):
        env.set_tasks([MassTask(5.0)] * 3)
    with pytest.raises(ValueError, match="'split' must be one of"):
        env.sample_tasks(2, split="val")
    with pytest.raises(ValueError, match=r"options\['reset_mask'\]"):
        env.reset(options={"reset_mask": [True]})


# ---------------------------------------------------------------------------------------------
# Gymnasium fallback and stable-baselines3.
# ---------------------------------------------------------------------------------------------


def test_gym_fallback_equals_sync_vector_env() -> None:
    env = GymVectorTaskEnv([EnvFn("Pendulum-v1", 7) for _ in range(3)], horizon=7, seed=4)
    ref = gymnasium.vector.SyncVectorEnv([EnvFn("Pendulum-v1", 7) for _ in range(3)],
                                         autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, ref.reset(seed=4)[0])
    for a in random_actions(8, 3, 1, seed=6) * 2:
        got = env.step(a)
        want = ref.step(a)
        for g, w in zip(got[:4], want[:4], strict=True):
            np.testing.assert_array_equal(g, w)
    assert got[3].sum() == 0 and "final_obs" not in got[4]
    with pytest.raises(ValueError, match="not a task distribution"):
        env.sample_tasks(2)
    with pytest.raises(ValueError, match="'vectorization_mode' must be one of"):
        GymVectorTaskEnv([EnvFn("Pendulum-v1", 7)], horizon=7, mode="threads")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gym_fallback_runs_a_task_distribution(mode: str) -> None:
    """A task distribution behind Gymnasium's vector envs: sample, set and get tasks."""
    import metarl.envs  # noqa: F401  (registers the ids)
    from metarl.envs.navigation import Navigation2DTask

    env = GymVectorTaskEnv([EnvFn("metarl/Navigation2D-v0", 5) for _ in range(3)], horizon=5,
                           mode=mode, seed=0)
    env.reset(seed=0)
    tasks = env.sample_tasks(3)
    assert len(tasks) == 3 and all(isinstance(t, Navigation2DTask) for t in tasks)
    env.set_tasks(tasks)
    assert env.get_tasks() == tasks
    obs, _ = env.reset()
    _, rewards, _, _, _ = env.step(np.zeros((3, 2)))
    goals = np.array([t.goal for t in tasks])
    np.testing.assert_allclose(rewards, -np.linalg.norm(goals, axis=1))  # s = 0, no move
    with pytest.raises(ValueError, match="'task' must be a Navigation2DTask"):
        env.set_tasks([MassTask(1.0)] * 3)
    env.close()


def test_gym_fallback_async_equals_sync() -> None:
    fns = [EnvFn("Pendulum-v1", 4) for _ in range(2)]
    sync = GymVectorTaskEnv(fns, horizon=4, seed=1)
    asyn = GymVectorTaskEnv(fns, horizon=4, mode="async", seed=1)
    np.testing.assert_array_equal(sync.reset()[0], asyn.reset()[0])
    for a in random_actions(5, 2, 1, seed=3):
        for g, w in zip(sync.step(a)[:4], asyn.step(a)[:4], strict=True):
            np.testing.assert_array_equal(g, w)
    asyn.close()


def test_gym_fallback_final_obs_is_float_array() -> None:
    env = GymVectorTaskEnv([EnvFn("Pendulum-v1", 3) for _ in range(2)], horizon=3, seed=0)
    env.reset()
    for a in random_actions(3, 2, 1):
        obs, _, _, trunc, info = env.step(a)
    assert trunc.all() and info["final_obs"].shape == (2, 3)
    assert info["final_obs"].dtype == np.float64 and not np.array_equal(info["final_obs"], obs)


def test_sb3_vec_env_contract_and_ppo() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from metarl.envs.sb3_vec import to_sb3

    venv = to_sb3(make_engine(CheetahKernel(), 4, horizon=6))
    venv.seed(3)
    obs = venv.reset()
    reference = make_engine(CheetahKernel(), 4, horizon=6)
    np.testing.assert_array_equal(obs, reference.reset(seed=3)[0])  # seed + i convention
    for t, a in enumerate(random_actions(6, 4, 6)):
        venv.step_async(a)
        obs, rewards, dones, infos = venv.step_wait()
        assert obs.shape == (4, 17) and rewards.shape == (4,) and len(infos) == 4
        assert dones.all() == (t == 5)
    assert all(i["TimeLimit.truncated"] and i["terminal_observation"].shape == (17,)
               for i in infos)
    assert venv.get_attr("horizon") == [6] * 4
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=128)
    assert model.num_timesteps >= 128
    with pytest.raises(ValueError, match="'vec' must be a BatchedTaskEnv"):
        to_sb3(venv)


# ---------------------------------------------------------------------------------------------
# The suite's distributions through make_batched.
# ---------------------------------------------------------------------------------------------


def run_registered_singles(name: str, tasks: Sequence[Task], seed: int, actions: np.ndarray,
                           horizon: int) -> dict[str, np.ndarray]:
    envs = [gymnasium.make(f"metarl/{name}-v0", max_episode_steps=horizon) for _ in tasks]
    for env, task in zip(envs, tasks, strict=True):
        env.unwrapped.set_task(task)  # type: ignore[attr-defined]
    first = np.array([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    n = len(envs)
    out = {"obs": np.zeros((len(actions), n, first.shape[1])), "rew": np.zeros((len(actions), n)),
           "term": np.zeros((len(actions), n), bool), "trunc": np.zeros((len(actions), n), bool)}
    for t, a in enumerate(actions):
        for i, env in enumerate(envs):
            obs, rew, term, trunc, _ = env.step(a[i])
            if term or trunc:
                obs, _ = env.reset()
            out["obs"][t, i], out["rew"][t, i] = obs, rew
            out["term"][t, i], out["trunc"][t, i] = term, trunc
    out["obs0"] = first[None]
    return out


@pytest.mark.parametrize("name,steps,min_terms", [
    ("HalfCheetahVel", 60, 0), ("AntVel", 120, 1), ("HopperRandParams", 80, 1),
    ("Walker2DRandParams", 80, 1), ("Navigation2D", 60, 0)])
def test_registered_distribution_equals_single_env(name: str, steps: int, min_terms: int) -> None:
    """Same tasks (2+ distinct), seeds and actions: bit-identical to ``metarl/<Name>-v0``."""
    from metarl.envs.batched import make_batched

    horizon, seed = 50, 21
    env = make_batched(name, 4, horizon=horizon, seed=seed, num_threads=2)
    env.reset(seed=seed)
    tasks = env.sample_tasks(4)
    assert len(set(tasks)) >= 2
    env.set_tasks(tasks)
    dim = env.single_action_space.shape[0]  # type: ignore[index]
    actions = random_actions(steps, 4, dim, seed=8)
    obs, _ = env.reset(seed=seed)
    got: dict[str, list] = {"obs": [], "rew": [], "term": [], "trunc": []}
    for a in actions:
        o, r, te, tr, _ = env.step(a)
        for key, val in zip(("obs", "rew", "term", "trunc"), (o, r, te, tr), strict=True):
            got[key].append(val)
    ref = run_registered_singles(name, tasks, seed, actions, horizon)
    np.testing.assert_array_equal(obs, ref["obs0"][0])
    for key in ("obs", "rew", "term", "trunc"):
        np.testing.assert_array_equal(np.array(got[key]), ref[key], err_msg=key)
    assert ref["term"].sum() >= min_terms and (ref["term"] | ref["trunc"]).sum() >= 1


def test_make_batched_dispatch_and_errors() -> None:
    from metarl.envs.batched import _is_metaworld_name, make_batched

    fallback = make_batched("Pendulum-v1", 2, horizon=5, seed=0)
    assert isinstance(fallback, GymVectorTaskEnv) and fallback.horizon == 5
    with pytest.raises(ValueError, match="'num_envs' must be a positive integer"):
        make_batched("Pendulum-v1", 0)
    with pytest.raises(ValueError, match="'preset' must be one of"):
        make_batched("Pendulum-v1", 2, preset="slow")
    with pytest.raises(ValueError, match="'num_threads' must be a positive integer"):
        make_batched("Pendulum-v1", 2, num_threads=0)
    with pytest.raises(ValueError, match="'name' must be a metarl distribution"):
        make_batched("NoSuchEnv-v9", 2, horizon=5)
    assert _is_metaworld_name("ML10") and _is_metaworld_name("MetaWorld/ML45")
    assert not _is_metaworld_name("Pendulum-v1") and not _is_metaworld_name("ML7")


@needs_batch
def test_mujoco_batch_reset_matches_mj_reset_data() -> None:
    """The Batch back-end's reset keeps MuJoCo's defaults (time 0, zero warm start)."""
    model = gymnasium.make("HalfCheetah-v5").unwrapped.model  # type: ignore[attr-defined]
    phys = BatchPhysics(model, 2, 1)
    phys.step(np.ones((2, 6)), 5)
    phys.reset(np.array([1]), np.zeros((1, model.nq)), np.zeros((1, model.nv)))
    data = mujoco.MjData(model)
    assert phys.batch.bind("time")[1] == data.time == 0.0
    np.testing.assert_array_equal(phys.batch.bind("qacc_warmstart")[1], data.qacc_warmstart)
    assert phys.batch.bind("time")[0] > 0.0


@needs_batch
def test_physics_backend_choice_and_mujoco3_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` takes mujoco.batch when it can, and one MjData per env on MuJoCo 3.x."""
    from metarl.envs import physics

    assert physics.physics_backend("auto", needs_cfrc_ext=False) is BatchPhysics
    assert physics.physics_backend("auto", needs_cfrc_ext=True) is DataPhysics
    assert physics.physics_backend("data", needs_cfrc_ext=False) is DataPhysics
    with pytest.raises(ValueError, match="'physics' cannot be 'batch': this kernel reads"):
        physics.physics_backend("batch", needs_cfrc_ext=True)
    with pytest.raises(ValueError,
                       match=r"'physics' must be one of \('auto', 'batch', 'data', 'warp'\)"):
        physics.physics_backend("gpu", needs_cfrc_ext=False)
    monkeypatch.setattr(physics, "has_mujoco_batch", lambda: False)  # as on MuJoCo 3.x
    assert physics.physics_backend("auto", needs_cfrc_ext=False) is DataPhysics
    assert isinstance(make_engine(CheetahKernel(), 2, 5)._physics, DataPhysics)
    with pytest.raises(ValueError, match="this MuJoCo has no mujoco.batch"):
        physics.physics_backend("batch", needs_cfrc_ext=False)
