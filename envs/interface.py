"""The batched-env interface: N environments of one task distribution, one task each.

:class:`BatchedTaskEnv` is a structural :class:`typing.Protocol`. The MuJoCo engine
(:class:`~metarl.envs.engine.MujocoBatchedEnv`), Navigation2D's NumPy vector env
(:class:`~metarl.envs.navigation.Navigation2DVec`), the Gymnasium fallback
(:class:`~metarl.envs.gym_vector.GymVectorTaskEnv`) and the Meta-World adapter
(:class:`~metarl.envs.metaworld.MetaWorldVecEnv`) all satisfy it; mypy checks each of them
against it in :mod:`metarl.envs.batched`, so a class that stops conforming fails type checking.

:class:`TaskVectorEnv` is the small Gymnasium ``VectorEnv`` base those classes share: the
same-step autoreset metadata and the checks of a task list and of an action batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from .core import Task, check_task_type

StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


@runtime_checkable
class BatchedTaskEnv(Protocol):
    """A vector env over one task distribution with one task per environment.

    ``step`` resets finished environments in the same call (``AutoresetMode.SAME_STEP``): the
    last observation of a finished episode is ``info["final_obs"][i]`` (a float64
    ``[num_envs, obs_dim]`` array) where the mask ``info["_final_obs"][i]`` is True. The MuJoCo
    engine and the Gymnasium fallbacks also give ``info["unstable"]``, a bool ``[num_envs]``
    array.
    """

    @property
    def num_envs(self) -> int:
        """Number of environments N."""
        ...

    @property
    def horizon(self) -> int:
        """Episode length: an episode still running after ``horizon`` steps is truncated."""
        ...

    @property
    def single_observation_space(self) -> gymnasium.Space[Any]:
        """The observation space of one environment."""
        ...

    @property
    def single_action_space(self) -> gymnasium.Space[Any]:
        """The action space of one environment."""
        ...

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """``n`` tasks of ``split`` ("train": from the env's ``np_random``; "test": held out)."""
        ...

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One task per environment (``len(tasks) == num_envs``)."""
        ...

    def get_tasks(self) -> list[Task]:
        """The task of every environment."""
        ...

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every environment; ``seed=s`` seeds env ``i`` like a single env's ``s + i``."""
        ...

    def step(self, actions: np.ndarray) -> StepResult:
        """``[N, act_dim]`` actions -> observations, rewards, terminated, truncated, info."""
        ...

    def close(self, **kwargs: Any) -> None:
        """Release threads, worker processes and simulators."""
        ...


class TaskVectorEnv(VectorEnv):
    """The Gymnasium ``VectorEnv`` base of the batched envs: same-step autoreset, and the
    checks of a task list and of an action batch against ``num_envs`` and the spaces.

    Subclasses set ``num_envs``, the spaces and ``horizon``.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}
    horizon: int

    def _check_tasks(self, tasks: Sequence[Task], task_type: type[Task] | None) -> list[Task]:
        """``tasks`` as a list of ``num_envs`` tasks, each of ``task_type`` and in range."""
        tasks = list(tasks)
        if len(tasks) != self.num_envs:
            raise ValueError(f"'tasks' must hold num_envs={self.num_envs} tasks, got {len(tasks)}")
        if task_type is not None:
            for task in tasks:
                check_task_type(task, task_type)
        return tasks

    def _check_actions(self, actions: Any) -> np.ndarray:
        """``actions`` as a float64 ``[num_envs, *action_shape]`` array."""
        a = np.asarray(actions, dtype=np.float64)
        shape = (self.num_envs, *self.single_action_space.shape)  # type: ignore[misc]
        if a.shape != shape:
            raise ValueError(f"'actions' must have shape {shape}, got {a.shape}")
        return a
