"""The generic single MuJoCo task environment and the NumPy helpers every kernel shares.

A distribution is one :class:`~metarl.envs.core.Kernel` (vectorised reward, termination,
observation, reset noise, per-task ``MjModel``) plus a task sampler. :class:`MujocoTaskEnv`
owns an *unwrapped* Gymnasium v5 base env, steps its physics with ``do_simulation`` and asks
the kernel (with N = 1) for everything else, so the single env and the batched engine
(``envs/batched.py``) share one definition of each task distribution.

References: Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks",
ICML 2017 (the HalfCheetah/Ant velocity and direction tasks); Rakelly et al., "Efficient
Off-Policy Meta-Reinforcement Learning via Probabilistic Context Variables" (PEARL), ICML 2019
(the randomised-physics tasks).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium
import numpy as np

from .core import (
    Kernel,
    StepArrays,
    Task,
    check_positive,
    check_split,
    check_task_type,
    test_split_rng,
)
from .models import make_base_env

# Training draws are rejected if they coincide with one of this many held-out tasks
# (a probability-zero event for continuous tasks; the check makes "never" literal).
TEST_GUARD = 1024


# --------------------------------------------------------------------------------------------
# Kernel helpers (vectorised over a leading dim N).
# --------------------------------------------------------------------------------------------


def x_velocity(s: StepArrays) -> np.ndarray:
    """[N] forward velocity ``(qpos_after[:, 0] - qpos_before[:, 0]) / dt`` (Gymnasium v5)."""
    return (s.qpos_after[:, 0] - s.qpos_before[:, 0]) / s.dt


def xy_velocity(s: StepArrays) -> np.ndarray:
    """[N, 2] planar velocity of the free root joint, from ``qpos[:, :2]``."""
    return (s.qpos_after[:, :2] - s.qpos_before[:, :2]) / s.dt


def ctrl_cost(action: np.ndarray, weight: float) -> np.ndarray:
    """[N] control cost ``weight * sum(a^2)`` over the action dim."""
    return weight * np.sum(np.square(action), axis=1)


def contact_cost(cfrc_ext: np.ndarray | None, weight: float) -> np.ndarray:
    """[N] contact cost ``weight * sum(clip(cfrc_ext, -1, 1)^2)`` over every body (Ant-v5)."""
    if cfrc_ext is None:
        raise ValueError("'cfrc_ext' must be given (the kernel sets needs_cfrc_ext=True)")
    n = cfrc_ext.shape[0]
    return weight * np.sum(np.square(np.clip(cfrc_ext, -1.0, 1.0)).reshape(n, -1), axis=1)


def uniform_normal_reset(rng: np.random.Generator, init_qpos: np.ndarray,
                         init_qvel: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """HalfCheetah/Ant/Walker2d-v5 ``reset_model``: qpos + U[-s, s], then qvel + s N(0, 1)."""
    qpos = init_qpos + rng.uniform(low=-scale, high=scale, size=init_qpos.shape[0])
    qvel = init_qvel + scale * rng.standard_normal(init_qvel.shape[0])
    return qpos, qvel


def uniform_uniform_reset(rng: np.random.Generator, init_qpos: np.ndarray,
                          init_qvel: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Hopper-v5 ``reset_model``: qpos + U[-s, s], then qvel + U[-s, s]."""
    qpos = init_qpos + rng.uniform(low=-scale, high=scale, size=init_qpos.shape[0])
    qvel = init_qvel + rng.uniform(low=-scale, high=scale, size=init_qvel.shape[0])
    return qpos, qvel


def stack_params(tasks: Any) -> np.ndarray:
    """[N, k] float64: each task's :meth:`Task.as_array` stacked."""
    return np.stack([t.as_array() for t in tasks]).astype(np.float64)


class RewardTaskKernel:
    """Base of kernels whose task lives in the reward only (velocity, direction, goal): the
    base env's default kwargs, the task's fields as reward parameters, one shared MjModel."""

    base_kwargs: dict[str, Any] = {}

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        return stack_params(tasks)

    def task_model(self, base_model: Any, task: Task) -> Any:
        return base_model


# --------------------------------------------------------------------------------------------
# The single environment.
# --------------------------------------------------------------------------------------------


class MujocoTaskEnv(gymnasium.Env):  # type: ignore[type-arg]
    """A Gymnasium env for one task of a MuJoCo task distribution, defined by a kernel.

    Subclasses set the class attributes ``name``, ``kernel``, ``task_type``, ``default_task``,
    ``draw`` (``draw(rng, n) -> tasks``) and ``discrete`` (True when the support is a finite
    set, in which case the held-out split is the same set as the training split).

    ``sample_tasks(n)`` draws from ``self.np_random`` (seeded by ``reset(seed=)``);
    ``sample_tasks(n, "test")`` returns the first ``n`` tasks of the fixed sequence drawn from
    :func:`~metarl.envs.core.test_split_rng`, the same in every run.

    ``model``, ``data`` and ``dt`` are the live simulation, as on Gymnasium's MuJoCo envs
    (``env.unwrapped.data.qpos``).
    """

    name: ClassVar[str]
    kernel: ClassVar[Kernel]
    task_type: ClassVar[type[Task]]
    default_task: ClassVar[Task]
    discrete: ClassVar[bool] = False

    @staticmethod
    def draw(rng: np.random.Generator, n: int) -> list[Task]:
        """``n`` tasks drawn from ``rng`` (each subclass sets its distribution's sampler)."""
        raise NotImplementedError

    def __init__(self, render_mode: str | None = None, task: Task | None = None) -> None:
        kwargs = dict(self.kernel.base_kwargs)
        if render_mode is not None:
            kwargs["render_mode"] = render_mode
        self.render_mode = render_mode
        self._base: Any = make_base_env(self.kernel.base_id, **kwargs)
        self._base_model = copy.deepcopy(self._base.model)  # the pristine model tasks scale
        self.metadata = dict(self._base.metadata)
        self.observation_space = self._base.observation_space
        self.action_space = self._base.action_space
        self._task = self.default_task
        self.set_task(task if task is not None else self.default_task)

    # ---- the simulation, as Gymnasium's MuJoCo envs expose it ---------------------------

    @property
    def model(self) -> Any:
        """The live ``MjModel`` of the wrapped base env (a task's physics is written into it)."""
        return self._base.model

    @property
    def data(self) -> Any:
        """The live ``MjData`` of the wrapped base env: the state the observation reports."""
        return self._base.data

    @property
    def dt(self) -> float:
        """Seconds per env step: ``model.opt.timestep * kernel.frame_skip``."""
        return float(self._base.model.opt.timestep) * self.kernel.frame_skip

    # ---- task distribution -------------------------------------------------------------

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """``n`` tasks of ``split`` ("train": from ``np_random``; "test": fixed held-out set)."""
        check_positive("n", n)
        check_split(split)
        if split == "test":
            return self.test_tasks(n)
        draw = type(self).draw
        if self.discrete:
            return draw(self.np_random, n)
        guard = held_out_guard(type(self), TEST_GUARD)
        out: list[Task] = []
        while len(out) < n:
            out.extend(t for t in draw(self.np_random, n - len(out)) if t not in guard)
        return out

    @classmethod
    def test_tasks(cls, n: int) -> list[Task]:
        """The first ``n`` tasks of the held-out sequence (independent of any seed)."""
        check_positive("n", n)
        return cls.draw(test_split_rng(cls.name), n)

    def set_task(self, task: Task) -> None:
        """Switch to ``task`` (``ValueError`` on a wrong type or an out-of-range field)."""
        check_task_type(task, self.task_type)
        model = self.kernel.task_model(self._base_model, task)
        if model is not self._base_model:
            _assign_model_params(self._base.model, model)
        self._task = task
        self._params = self.kernel.task_params([task])

    def get_task(self) -> Task:
        return self._task

    # ---- gymnasium.Env -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        import mujoco

        mujoco.mj_resetData(self._base.model, self._base.data)
        qpos, qvel = self.kernel.reset_state(self.np_random, self._base.init_qpos,
                                             self._base.init_qvel)
        self._base.set_state(qpos, qvel)
        return self._obs(), {"task": self._task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        data = self._base.data
        qpos_before = data.qpos.copy()
        self._base.do_simulation(a, self.kernel.frame_skip)
        s = StepArrays(qpos_before[None], data.qpos.copy()[None], data.qvel.copy()[None],
                       a[None], self._cfrc(), self.dt)
        rewards, parts = self.kernel.reward(s, self._params)
        terminated = bool(self.kernel.terminated(s.qpos_after, s.qvel_after)[0])
        info: dict[str, Any] = {k: float(v[0]) for k, v in parts.items()}
        info.setdefault("x_velocity", float(x_velocity(s)[0]))
        if self.render_mode == "human":
            self._base.render()
        return self._obs(), float(rewards[0]), terminated, False, info

    def render(self) -> Any:
        return self._base.render()

    def close(self) -> None:
        self._base.close()

    # ---- internals ---------------------------------------------------------------------

    def _cfrc(self) -> np.ndarray | None:
        return self._base.data.cfrc_ext.copy()[None] if self.kernel.needs_cfrc_ext else None

    def _obs(self) -> np.ndarray:
        data = self._base.data
        return np.asarray(self.kernel.observation(data.qpos[None], data.qvel[None],
                                                  self._cfrc())[0], dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the task, the RNG and MuJoCo's integration state (not the renderer)."""
        rng = self._np_random.bit_generator.state if self._np_random is not None else None
        return {"render_mode": self.render_mode, "task": self._task, "rng": rng,
                "state": _get_state(self._base.model, self._base.data)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        type(self).__init__(self, render_mode=state["render_mode"], task=state["task"])
        if state["rng"] is not None:
            self._np_random = np.random.Generator(np.random.PCG64())
            self._np_random.bit_generator.state = state["rng"]
        _set_state(self._base.model, self._base.data, state["state"])


_GUARDS: dict[tuple[str, int], frozenset[Task]] = {}


def held_out_guard(cls: type[MujocoTaskEnv], n: int) -> frozenset[Task]:
    """The first ``n`` held-out tasks of ``cls``, computed once per process (training draws
    are checked against them on every call)."""
    key = (cls.name, n)
    if key not in _GUARDS:
        _GUARDS[key] = frozenset(cls.test_tasks(n))
    return _GUARDS[key]


# The physics fields randomised-parameter tasks change (as rand_param_envs / PEARL).
PHYSICS_FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")


def _assign_model_params(target: Any, source: Any) -> None:
    """Copy the randomisable physics fields of ``source`` into ``target`` in place (so the
    base env's ``MjData`` and renderer stay valid)."""
    for field in PHYSICS_FIELDS:
        getattr(target, field)[:] = getattr(source, field)


def _get_state(model: Any, data: Any) -> np.ndarray:
    """MuJoCo's full integration state (time, qpos, qvel, act, warm start, controls, ...)."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    return state


def _set_state(model: Any, data: Any, state: np.ndarray) -> None:
    import mujoco

    mujoco.mj_setState(model, data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(model, data)
    mujoco.mj_rnePostConstraint(model, data)  # cfrc_ext for the observation

