"""The batched engine: N environments of one task distribution stepped in lock-step.

Meta-RL samples ``tasks x episodes`` environments per iteration (MAML-TRPO on HalfCheetahVel:
40 tasks x 20 episodes = 800 environments, Finn et al., 2017, "Model-Agnostic Meta-Learning for
Fast Adaptation of Deep Networks"). Stepping them one Gymnasium env at a time spends most of
the time in Python, so this engine keeps the whole batch as arrays:

* the physics runs in C threads with the GIL released: ``mujoco.batch.Batch`` (MuJoCo >= 4.0,
  one state row per environment, bit-identical to a loop over ``MjData``) for kernels that only
  read the state, or one ``MjData`` per environment stepped on a thread pool (``mj_step`` then
  ``mj_rnePostConstraint``, exactly Gymnasium's ``do_simulation``) for kernels that read
  ``cfrc_ext`` (Ant);
* rewards, terminations and observations are one vectorised NumPy call of the distribution's
  :class:`~metarl.envs.core.Kernel` (the same code the single Gymnasium env runs with N = 1);
* finished environments reset inside :meth:`step` (Gymnasium's ``AutoresetMode.SAME_STEP``).

Seeding convention: ``reset(seed=s)`` seeds environment ``i`` exactly as the single env
``gymnasium.make("metarl/<Name>-v0")`` is seeded by ``reset(seed=s + i)``: its reset noise is drawn
from ``gymnasium.utils.seeding.np_random(s + i)``, and later (auto)resets continue that stream as
the single env's later ``reset()`` calls do. Tasks are sampled from the vector env's own
``np_random``, seeded by ``np_random(s)``; so with the same tasks set on both, the same seeds and
the same actions, the batched env and N single envs give equal observations, rewards and flags.

MuJoCo instability (a NaN/Inf/huge ``qpos``, ``qvel``, ``qacc`` or ``ctrl``, on which MuJoCo warns
and resets the simulation, or a non-finite observation or reward) ends that environment's
episode as truncated with ``info["unstable"][i] = True``, reward 0 and the last finite
observation as ``final_obs``; the other environments are untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core import (
    Kernel,
    StepArrays,
    Task,
    check_positive,
    check_split,
    check_task_type,
)

# MuJoCo's instability warnings: on each of these it resets the simulation (mj_resetData).
_BAD_WARNINGS = np.array([int(mujoco.mjtWarning.mjWARN_BADQPOS),
                          int(mujoco.mjtWarning.mjWARN_BADQVEL),
                          int(mujoco.mjtWarning.mjWARN_BADQACC),
                          int(mujoco.mjtWarning.mjWARN_BADCTRL)])
_STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
VECTORIZATION_MODES = ("sync", "async")
PHYSICS_BACKENDS = ("auto", "batch", "data")
PRESETS = ("paper", "fast")

StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


def has_mujoco_batch() -> bool:
    """Whether this MuJoCo has ``mujoco.batch`` (4.0 and newer; Meta-World pins 3.3)."""
    try:
        from mujoco import batch  # noqa: F401
    except ImportError:
        return False
    return True


def physics_backend(name: str, needs_cfrc_ext: bool) -> type[BatchPhysics | DataPhysics]:
    """The physics class of ``name`` (one of ``PHYSICS_BACKENDS``).

    ``auto`` takes ``mujoco.batch`` (:class:`BatchPhysics`) when the kernel does not read
    ``cfrc_ext`` and this MuJoCo has it, else one ``MjData`` per env (:class:`DataPhysics`),
    which runs on any MuJoCo >= 3.2.
    """
    if name not in PHYSICS_BACKENDS:
        raise ValueError(f"'physics' must be one of {PHYSICS_BACKENDS}, got {name!r}")
    batch_ok = not needs_cfrc_ext and has_mujoco_batch()
    if name == "batch" and not batch_ok:
        why = "this kernel reads cfrc_ext" if needs_cfrc_ext else "this MuJoCo has no mujoco.batch"
        raise ValueError(f"'physics' cannot be 'batch': {why}; use 'auto' or 'data'")
    return BatchPhysics if batch_ok and name != "data" else DataPhysics


def default_num_threads() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def env_rngs(seed: int | None, num_envs: int) -> list[np.random.Generator]:
    """Per-environment generators: env ``i`` gets ``np_random(seed + i)`` (entropy if None)."""
    if seed is None:
        return [seeding.np_random(None)[0] for _ in range(num_envs)]
    return [seeding.np_random(int(seed) + i)[0] for i in range(num_envs)]


class BatchedTaskEnv(VectorEnv):
    """A vector env over one task distribution with one task per environment.

    Subclasses set ``num_envs``, the spaces and ``horizon``, and implement
    :meth:`sample_tasks`, :meth:`set_tasks`, :meth:`get_tasks`, ``reset`` and ``step``.
    ``step`` resets finished environments in the same call (``AutoresetMode.SAME_STEP``): the
    last observation of a finished episode is ``info["final_obs"][i]`` (a float64
    ``[num_envs, obs_dim]`` array) where the mask ``info["_final_obs"][i]`` is True;
    ``info["unstable"]`` is a bool ``[num_envs]`` array.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    horizon: int

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        raise NotImplementedError

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        raise NotImplementedError

    def get_tasks(self) -> list[Task]:
        raise NotImplementedError

    def _check_tasks(self, tasks: Sequence[Task], task_type: type[Task] | None) -> list[Task]:
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(f"'tasks' must hold num_envs={self.num_envs} tasks, got {len(tasks)}")
        if task_type is not None:
            for task in tasks:
                check_task_type(task, task_type)
        return tasks

    def _check_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions, dtype=np.float64)
        shape = (self.num_envs, *self.single_action_space.shape)  # type: ignore[misc]
        if a.shape != shape:
            raise ValueError(f"'actions' must have shape {shape}, got {a.shape}")
        return a


# --------------------------------------------------------------------------------------------
# Physics back-ends: both expose qpos/qvel (and cfrc_ext) as [N, ...] arrays the kernel reads.
# --------------------------------------------------------------------------------------------


class BatchPhysics:
    """``mujoco.batch.Batch``: state rows stepped on C threads (GIL released).

    Bit-identical to stepping one ``MjData`` per environment, warm start included, since the
    rows hold ``mjSTATE_INTEGRATION``. Used for kernels that do not read ``cfrc_ext``.
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int) -> None:
        from mujoco import batch as mj_batch  # MuJoCo >= 4.0 (the Meta-World venv pins 3.3)

        self._error = mj_batch.SimulationError
        self.batch = mj_batch.Batch(model, num_envs, nthread=num_threads)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self.cfrc_ext: np.ndarray | None = None
        self.batch.reset(stage=_STAGE_NONE)

    def set_models(self, models: Sequence[mujoco.MjModel] | None) -> None:
        self.batch.set_models(models)

    def reset(self, ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """``mj_resetData`` then the given state, as Gymnasium's ``reset``; its ``mj_forward``
        is skipped: the next ``mj_step`` recomputes everything it would have computed."""
        self.batch.reset(ids, stage=_STAGE_NONE)
        self.qpos[ids] = qpos
        self.qvel[ids] = qvel

    def bad_warnings(self) -> np.ndarray:
        return self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1)  # (lastinfo, number)

    def step(self, actions: np.ndarray, nstep: int) -> np.ndarray:
        """Apply ``actions`` for ``nstep`` physics steps; return the [N] unstable mask."""
        before = self.bad_warnings()
        self.ctrl[:] = actions
        failed = np.zeros(len(actions), dtype=bool)
        try:
            self.batch.step(nstep=nstep)
        except self._error as err:  # a mju_error in some simulations only
            failed[err.ids] = True
        return failed | (self.bad_warnings() > before)

    def close(self) -> None:
        """Nothing to release: the batch's threads end with it."""


class DataPhysics:
    """One ``MjData`` per environment, stepped on a thread pool (MuJoCo releases the GIL).

    Each step is Gymnasium's ``do_simulation``: ``mj_step(nstep)`` then ``mj_rnePostConstraint``,
    so ``cfrc_ext`` equals the single env's (the in-step value a force sensor would trigger
    differs from it when contacts are active, so a sensor is no shortcut). The per-env loop
    holds the GIL between MuJoCo calls, so it touches only cached views of each ``MjData``.
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int) -> None:
        self.base_model = model
        self.models = [model] * num_envs
        self.datas = [mujoco.MjData(model) for _ in range(num_envs)]
        self._views = [(d.ctrl, d.qpos, d.qvel, d.cfrc_ext, d.warning.number[_BAD_WARNINGS[0]:
                        _BAD_WARNINGS[-1] + 1]) for d in self.datas]
        self.qpos = np.zeros((num_envs, model.nq))
        self.qvel = np.zeros((num_envs, model.nv))
        self.cfrc_ext: np.ndarray | None = np.zeros((num_envs, model.nbody, 6))
        self._cfrc = self.cfrc_ext
        self._bad = np.zeros(num_envs, dtype=bool)
        bounds = np.linspace(0, num_envs, min(num_threads, num_envs) + 1).astype(int)
        pairs = zip(bounds[:-1], bounds[1:], strict=True)
        self._chunks = [range(lo, hi) for lo, hi in pairs if hi > lo]
        self._pool = ThreadPoolExecutor(len(self._chunks)) if len(self._chunks) > 1 else None

    def set_models(self, models: Sequence[mujoco.MjModel] | None) -> None:
        n = len(self.datas)
        self.models = [self.base_model] * n if models is None else list(models)

    def reset(self, ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Gymnasium's reset: ``mj_resetData``, set the state, ``mj_forward``."""
        for k, i in enumerate(ids):
            m, d = self.models[i], self.datas[i]
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qpos[k]
            d.qvel[:] = qvel[k]
            mujoco.mj_forward(m, d)
            self._read(i)

    def _read(self, i: int) -> None:
        _, qpos, qvel, cfrc, _ = self._views[i]
        self.qpos[i] = qpos
        self.qvel[i] = qvel
        self._cfrc[i] = cfrc

    def _step_chunk(self, chunk: range, actions: np.ndarray, nstep: int) -> None:
        step, rne, models, datas = mujoco.mj_step, mujoco.mj_rnePostConstraint, self.models, \
            self.datas
        for i in chunk:
            ctrl, qpos, qvel, cfrc, warnings = self._views[i]
            ctrl[:] = actions[i]
            step(models[i], datas[i], nstep=nstep)
            rne(models[i], datas[i])
            self.qpos[i] = qpos
            self.qvel[i] = qvel
            self._cfrc[i] = cfrc
            if warnings.any():  # MuJoCo found a bad qpos/qvel/qacc/ctrl and reset the data
                self._bad[i] = True
                warnings[:] = 0

    def step(self, actions: np.ndarray, nstep: int) -> np.ndarray:
        """Apply ``actions`` for ``nstep`` physics steps; return the [N] unstable mask."""
        self._bad[:] = False
        if self._pool is None:
            for chunk in self._chunks:
                self._step_chunk(chunk, actions, nstep)
        else:
            jobs = [self._pool.submit(self._step_chunk, c, actions, nstep) for c in self._chunks]
            for job in jobs:
                job.result()
        return self._bad.copy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


# --------------------------------------------------------------------------------------------
# The MuJoCo engine.
# --------------------------------------------------------------------------------------------


class MujocoBatchedEnv(BatchedTaskEnv):
    """N MuJoCo environments of one distribution, one task each, stepped in lock-step.

    Args:
        kernel: the distribution's vectorised reward / observation / reset definition.
        distribution: the single env (``gymnasium.make("metarl/<Name>-v0")``); its unwrapped env
            supplies ``task_type``, ``sample_tasks`` (run on this env's ``np_random``), the
            default task (``get_task()``) and the spaces.
        num_envs: N >= 1.
        horizon: episode length; an episode still running after ``horizon`` steps is truncated.
        seed: seeds as ``reset(seed=seed)`` would (see the module docstring).
        num_threads: physics threads (default: all cores this process may use).
        physics: ``auto``, ``batch`` (``mujoco.batch``, MuJoCo >= 4) or ``data`` (one
            ``MjData`` per env on a thread pool); see :func:`physics_backend`.
    """

    def __init__(self, kernel: Kernel, distribution: gymnasium.Env, num_envs: int, *,
                 horizon: int, seed: int | None = None, num_threads: int | None = None,
                 physics: str = "auto") -> None:
        self.num_envs = check_positive("num_envs", num_envs)
        self.horizon = check_positive("horizon", horizon)
        threads = check_positive("num_threads",
                                 default_num_threads() if num_threads is None else num_threads)
        self.kernel = kernel
        self._dist: Any = distribution.unwrapped
        base: Any = gymnasium.make(kernel.base_id, **kernel.base_kwargs).unwrapped
        self._base_model: mujoco.MjModel = base.model
        self._init_qpos = np.array(base.init_qpos)
        self._init_qvel = np.array(base.init_qvel)
        self._dt = float(self._base_model.opt.timestep) * kernel.frame_skip
        backend = physics_backend(physics, kernel.needs_cfrc_ext)
        self._physics: BatchPhysics | DataPhysics = backend(self._base_model, num_envs, threads)
        self._init_spaces(distribution)
        self._tasks: list[Task] = []
        self.set_tasks([self._dist.get_task()] * num_envs)  # type: ignore[attr-defined]
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape))  # type: ignore[misc]
        self._seed(seed)

    def _init_spaces(self, distribution: gymnasium.Env) -> None:
        self.single_observation_space = distribution.observation_space
        self.single_action_space = distribution.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _seed(self, seed: int | None) -> None:
        self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._rngs = env_rngs(seed, self.num_envs)

    # ---- tasks ---------------------------------------------------------------------------

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks with the distribution's sampler on this env's ``np_random``."""
        check_split(split)
        self._dist.np_random = self.np_random
        return list(self._dist.sample_tasks(n, split=split))

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One task per environment; takes effect at once (call ``reset`` to start episodes).

        Randomised-physics tasks each get their own ``MjModel`` (``kernel.task_model``).
        """
        tasks = self._check_tasks(tasks, getattr(self._dist, "task_type", None))
        models = [self.kernel.task_model(self._base_model, t) for t in tasks]
        same = all(m is self._base_model for m in models)
        self._physics.set_models(None if same else models)
        self._params = np.asarray(self.kernel.task_params(tasks), dtype=np.float64)
        self._tasks = tasks

    def get_tasks(self) -> list[Task]:
        return list(self._tasks)

    # ---- reset / step --------------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every environment (or those of ``options["reset_mask"]``).

        ``seed=s`` seeds env ``i`` like the single env's ``reset(seed=s + i)``; a list gives
        each env its own seed (None keeps that env's stream).
        """
        if isinstance(seed, Sequence):
            self._seed_each(seed)
        elif seed is not None:
            self._seed(seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), "
                                 f"got {mask.shape}")
        self._reset_ids(np.flatnonzero(mask))
        return self._obs.copy(), {}

    def _seed_each(self, seeds: Sequence[int | None]) -> None:
        if len(seeds) != self.num_envs:
            raise ValueError(f"'seed' as a list must hold num_envs={self.num_envs} entries, "
                             f"got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(int(s))[0]
        if seeds[0] is not None:
            self._np_random, self._np_random_seed = seeding.np_random(int(seeds[0]))

    def _reset_ids(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        states = [self.kernel.reset_state(self._rngs[i], self._init_qpos, self._init_qvel)
                  for i in ids]
        self._physics.reset(ids, np.stack([s[0] for s in states]),
                            np.stack([s[1] for s in states]))
        phys = self._physics
        cfrc = None if phys.cfrc_ext is None else phys.cfrc_ext[ids]
        self._obs[ids] = self.kernel.observation(phys.qpos[ids], phys.qvel[ids], cfrc)
        self._elapsed[ids] = 0

    def step(self, actions: Any) -> StepResult:
        """Step every environment; finished ones reset in the same call (SAME_STEP)."""
        action = self._check_actions(actions)
        phys = self._physics
        qpos_before = phys.qpos.copy()
        unstable = phys.step(action, self.kernel.frame_skip)
        arrays = StepArrays(qpos_before, phys.qpos, phys.qvel, action, phys.cfrc_ext, self._dt)
        rewards, parts = self.kernel.reward(arrays, self._params)
        rewards = np.array(rewards, dtype=np.float64)
        terminated = np.array(self.kernel.terminated(phys.qpos, phys.qvel), dtype=bool)
        obs = np.array(self.kernel.observation(phys.qpos, phys.qvel, phys.cfrc_ext),
                       dtype=np.float64)
        unstable |= ~np.isfinite(obs).all(axis=1) | ~np.isfinite(rewards)
        self._elapsed += 1
        truncated = (self._elapsed >= self.horizon) | unstable
        terminated &= ~unstable
        info = self._step_info(parts, unstable)
        obs[unstable] = self._obs[unstable]  # the episode ends on its last finite observation
        rewards[unstable] = 0.0
        self._obs = obs
        done = terminated | truncated
        if done.any():
            info["final_obs"] = np.where(done[:, None], obs, 0.0)
            info["_final_obs"] = done
            self._reset_ids(np.flatnonzero(done))
        return self._obs.copy(), rewards, terminated, truncated, info

    def _step_info(self, parts: dict[str, np.ndarray], unstable: np.ndarray) -> dict[str, Any]:
        every = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {"unstable": unstable, "_unstable": every}
        for key, value in parts.items():
            info[key] = np.where(unstable, 0.0, value)
            info[f"_{key}"] = every
        return info

    def close_extras(self, **kwargs: Any) -> None:
        self._physics.close()


# --------------------------------------------------------------------------------------------
# Fallback: any other Gymnasium env (Meta-World included) over Gymnasium's vector envs.
# --------------------------------------------------------------------------------------------


def set_vector_tasks(vec: Any, tasks: Sequence[Task]) -> None:
    """``set_task(tasks[i])`` on env ``i`` of a Gymnasium ``SyncVectorEnv`` / ``AsyncVectorEnv``.

    ``AsyncVectorEnv.call`` sends the same arguments to every worker, so each worker pipe gets
    its own ``_call`` message; worker errors are re-raised here.
    """
    if isinstance(vec, gymnasium.vector.SyncVectorEnv):
        for env, task in zip(vec.envs, tasks, strict=True):
            env.unwrapped.set_task(task)  # type: ignore[attr-defined]
        return
    for pipe, task in zip(vec.parent_pipes, tasks, strict=True):
        pipe.send(("_call", ("set_task", (task,), {})))
    results = [pipe.recv() for pipe in vec.parent_pipes]
    vec._raise_if_errors([ok for _, ok in results])


class GymVectorTaskEnv(BatchedTaskEnv):
    """The :class:`BatchedTaskEnv` interface over ``SyncVectorEnv`` / ``AsyncVectorEnv``.

    Args:
        env_fns: one constructor per environment (each already limited to ``horizon`` steps).
        horizon: the episode length the constructors enforce.
        mode: ``"sync"`` or ``"async"``.
        seed: seeds the first ``reset()`` as ``reset(seed=seed)``: env ``i`` with ``seed + i``.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gymnasium.Env]], *, horizon: int,
                 mode: str = "sync", seed: int | None = None) -> None:
        if mode not in VECTORIZATION_MODES:
            raise ValueError(f"'vectorization_mode' must be one of {VECTORIZATION_MODES}, "
                             f"got {mode!r}")
        self.num_envs = check_positive("num_envs", len(env_fns))
        self.horizon = check_positive("horizon", horizon)
        cls: Any = gymnasium.vector.SyncVectorEnv if mode == "sync" else \
            gymnasium.vector.AsyncVectorEnv
        self.vec: Any = cls(list(env_fns), autoreset_mode=AutoresetMode.SAME_STEP)
        self.single_observation_space = self.vec.single_observation_space
        self.single_action_space = self.vec.single_action_space
        self.observation_space = self.vec.observation_space
        self.action_space = self.vec.action_space
        self._pending_seed = seed
        self._np_random, self._np_random_seed = seeding.np_random(seed)

    # Gymnasium's get_attr calls whatever is callable (a method, a task class), so the task
    # API is probed through get_wrapper_attr / has_wrapper_attr, which `call` runs with args.
    def _supports_tasks(self) -> bool:
        return all(self.vec.call("has_wrapper_attr", "sample_tasks"))

    def _task_type(self) -> type[Task] | None:
        task_type: type[Task] | None = self.vec.call("get_wrapper_attr", "task_type")[0]
        return task_type

    def _require_tasks(self) -> None:
        if not self._supports_tasks():
            raise ValueError("this environment is not a task distribution: it has no "
                             "'sample_tasks' / 'set_task' / 'get_task'")

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """Tasks drawn by the environments' sampler on this vector env's ``np_random``."""
        self._require_tasks()
        check_split(split)
        if isinstance(self.vec, gymnasium.vector.SyncVectorEnv):
            dist: Any = self.vec.envs[0].unwrapped
            dist.np_random = self.np_random
            return list(dist.sample_tasks(n, split=split))
        return list(self.vec.call("sample_tasks", n, split)[0])

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        self._require_tasks()
        set_vector_tasks(self.vec, self._check_tasks(tasks, self._task_type()))

    def get_tasks(self) -> list[Task]:
        self._require_tasks()
        return list(self.vec.call("get_task"))

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None and self._pending_seed is not None:
            seed = self._pending_seed
        self._pending_seed = None
        if isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        obs, info = self.vec.reset(seed=seed, options=options)
        return np.asarray(obs, dtype=np.float64), info

    def step(self, actions: Any) -> StepResult:
        obs, rewards, terminated, truncated, info = self.vec.step(self._check_actions(actions))
        info = dict(info)
        info["unstable"] = np.zeros(self.num_envs, dtype=bool)
        info["_unstable"] = np.ones(self.num_envs, dtype=bool)
        if "final_obs" in info:  # Gymnasium's object array -> the engine's float array
            final = np.zeros((self.num_envs, *self.single_observation_space.shape))  # type: ignore[misc]
            for i in np.flatnonzero(info["_final_obs"]):
                final[i] = info["final_obs"][i]
            info["final_obs"] = final
        return (np.asarray(obs, dtype=np.float64), np.asarray(rewards, dtype=np.float64),
                np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool), info)

    def close_extras(self, **kwargs: Any) -> None:
        self.vec.close()


# --------------------------------------------------------------------------------------------
# Dispatch.
# --------------------------------------------------------------------------------------------


def _registration() -> Any:
    from . import registration  # the distributions' module, imported when needed

    return registration


def _mujoco_kernel(name: str) -> Kernel | None:
    reg = _registration()
    if name == "Navigation2D" or name not in reg.DISTRIBUTIONS:
        return None
    try:
        kernel = reg.get_kernel(name)
    except (KeyError, ValueError):
        return None
    return kernel if isinstance(kernel, Kernel) else None


def resolve_horizon(name: str, horizon: int | None, preset: str) -> int | None:
    """``horizon`` if given, else ``HORIZONS[name][preset]`` (None for names it lacks)."""
    if preset not in PRESETS:
        raise ValueError(f"'preset' must be one of {PRESETS}, got {preset!r}")
    if horizon is not None:
        return check_positive("horizon", horizon)
    horizons = _registration().HORIZONS
    return int(horizons[name][preset]) if name in horizons else None


def gym_id(name: str) -> str:
    """``metarl/<name>-v0`` for the suite's distributions, else ``name`` itself."""
    return f"metarl/{name}-v0" if name in _registration().DISTRIBUTIONS else name


def make_batched(name: str, num_envs: int, *, horizon: int | None = None, preset: str = "paper",
                 seed: int | None = None, num_threads: int | None = None,
                 vectorization_mode: str = "sync", physics: str = "auto") -> BatchedTaskEnv:
    """N environments of distribution ``name``, one task each, as one :class:`BatchedTaskEnv`.

    MuJoCo distributions run on the batched engine (:class:`MujocoBatchedEnv`),
    ``"Navigation2D"`` on its NumPy vector env (``Navigation2DVec``), a Meta-World benchmark
    name (``"ML1-reach-v3"``, ``"ML10"``, ``"ML45"``) on ``MetaWorldVecEnv``, and any other
    Gymnasium id on :class:`GymVectorTaskEnv` over Gymnasium's Sync/AsyncVectorEnv
    (``vectorization_mode``); all four expose the same interface.

    Args:
        name: a distribution of ``metarl.envs.registration.DISTRIBUTIONS`` or a Gymnasium id.
        num_envs: number of environments (e.g. tasks x episodes per task), >= 1.
        horizon: episode length; default ``HORIZONS[name][preset]`` (or the env's TimeLimit).
        preset: ``"paper"`` or ``"fast"``.
        seed: env ``i`` resets like the single env seeded ``seed + i``.
        num_threads: physics threads of the MuJoCo engine (default: every core available).
        vectorization_mode: ``"sync"`` or ``"async"``, for Meta-World and the Gymnasium
            fallback.
        physics: the MuJoCo engine's back-end, ``"auto"``, ``"batch"`` or ``"data"``.
    """
    num_envs = check_positive("num_envs", num_envs)
    if num_threads is not None:
        check_positive("num_threads", num_threads)
    if vectorization_mode not in VECTORIZATION_MODES:
        raise ValueError(f"'vectorization_mode' must be one of {VECTORIZATION_MODES}, "
                         f"got {vectorization_mode!r}")
    steps = resolve_horizon(name, horizon, preset)
    if name == "Navigation2D":
        from .navigation import Navigation2DVec

        env: BatchedTaskEnv = Navigation2DVec(num_envs, horizon=steps, seed=seed)  # type: ignore[assignment]
        return env
    kernel = _mujoco_kernel(name)
    if kernel is not None and steps is not None:
        return MujocoBatchedEnv(kernel, gymnasium.make(gym_id(name)), num_envs, horizon=steps,
                                seed=seed, num_threads=num_threads, physics=physics)
    if _is_metaworld_name(name):
        from . import metaworld

        vec: Any = metaworld.make_metaworld(
            name, num_envs, horizon=steps or metaworld.HORIZON, seed=seed,
            vectorization_mode=vectorization_mode)
        return vec  # type: ignore[no-any-return]  # MetaWorldVecEnv: the same interface
    return _fallback(name, num_envs, steps, vectorization_mode, seed)


def _is_metaworld_name(name: str) -> bool:
    """Whether ``name`` is a Meta-World benchmark name (``"ML1-reach-v3"``, ``"ML10"``, ...)."""
    if name in gymnasium.registry:
        return False
    from . import metaworld  # imports without the metaworld package

    try:
        metaworld.parse_name(name)
    except ValueError:
        return False
    return True


def _fallback(name: str, num_envs: int, horizon: int | None, mode: str,
              seed: int | None) -> GymVectorTaskEnv:
    env_id = gym_id(name)
    if env_id not in gymnasium.registry:
        raise ValueError(f"'name' must be a metarl distribution, a registered Gymnasium id or a "
                         f"Meta-World benchmark name ('ML1-<class>', 'ML10', 'ML45'), got {name!r}")
    steps = horizon if horizon is not None else gymnasium.spec(env_id).max_episode_steps
    if steps is None:
        raise ValueError(f"'horizon' must be given for {name!r}: its Gymnasium spec has no "
                         "max_episode_steps")
    fns = [EnvFn(env_id, int(steps)) for _ in range(num_envs)]
    return GymVectorTaskEnv(fns, horizon=int(steps), mode=mode, seed=seed)


class EnvFn:
    """A picklable env constructor (AsyncVectorEnv ships it to its worker processes)."""

    def __init__(self, env_id: str, horizon: int) -> None:
        self.env_id = env_id
        self.horizon = horizon

    def __call__(self) -> gymnasium.Env:
        return gymnasium.make(self.env_id, max_episode_steps=self.horizon)
