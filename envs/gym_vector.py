"""The Gymnasium fallback: any Gymnasium env (Meta-World included) behind the batched interface.

:class:`GymVectorTaskEnv` runs ``num_envs`` copies of a Gymnasium env on Gymnasium's own
``SyncVectorEnv`` / ``AsyncVectorEnv`` with same-step autoreset and gives them the
:class:`~metarl.envs.interface.BatchedTaskEnv` interface: tasks are sampled on the vector env's
own ``np_random`` and set per environment with :func:`set_vector_tasks`, and
``info["final_obs"]`` becomes the engine's float array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode

from .core import Task, check_positive, check_split
from .interface import StepResult, TaskVectorEnv

VECTORIZATION_MODES = ("sync", "async")


def check_vectorization_mode(mode: str) -> None:
    """Raise ``ValueError`` unless ``mode`` is one of ``VECTORIZATION_MODES``."""
    if mode not in VECTORIZATION_MODES:
        raise ValueError(f"'vectorization_mode' must be one of {VECTORIZATION_MODES}, "
                         f"got {mode!r}")


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


class GymVectorTaskEnv(TaskVectorEnv):
    """The :class:`~metarl.envs.interface.BatchedTaskEnv` interface over Gymnasium's
    ``SyncVectorEnv`` / ``AsyncVectorEnv``.

    Args:
        env_fns: one constructor per environment (each already limited to ``horizon`` steps).
        horizon: the episode length the constructors enforce.
        mode: ``"sync"`` or ``"async"``.
        seed: seeds the first ``reset()`` as ``reset(seed=seed)``: env ``i`` with ``seed + i``.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gymnasium.Env]], *, horizon: int,
                 mode: str = "sync", seed: int | None = None) -> None:
        check_vectorization_mode(mode)
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


class EnvFn:
    """A picklable env constructor (AsyncVectorEnv ships it to its worker processes)."""

    def __init__(self, env_id: str, horizon: int) -> None:
        self.env_id = env_id
        self.horizon = horizon

    def __call__(self) -> gymnasium.Env:
        return gymnasium.make(self.env_id, max_episode_steps=self.horizon)
