"""Navigation2D: a point mass moving to a goal in the plane, single and batched.

Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
Sec. 5.3 (2D navigation); constants as pytorch-maml-rl (``navigation.py``): the state starts
at the origin, the observation is the position, the action is clipped to ``[-0.1, 0.1]^2``
and added to the state, the reward is ``-||s - goal||_2`` (after the move), goals are drawn
``U[-0.5, 0.5]^2``. The episode terminates when ``||s - goal||_2 < 0.01`` (pytorch-maml-rl
tests ``|dx| < 0.01 and |dy| < 0.01``; the Euclidean test here is slightly stricter).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from .core import (
    Task,
    check_positive,
    check_split,
    check_task_type,
    check_vector_range,
    test_split_rng,
)
from .interface import TaskVectorEnv
from .mujoco_env import TEST_GUARD

NAME = "Navigation2D"
GOAL_RANGE = (-0.5, 0.5)
MAX_ACTION = 0.1
GOAL_TOLERANCE = 0.01
HORIZON = 100


@dataclasses.dataclass(frozen=True)
class Navigation2DTask(Task):
    """Attributes:
    goal: target ``(x, y)`` position, each coordinate in [-0.5, 0.5].
    """

    goal: tuple[float, float]

    def validate(self) -> None:
        check_vector_range("goal", self.goal, 2, *GOAL_RANGE)


def draw_goals(rng: np.random.Generator, n: int) -> list[Task]:
    goals = rng.uniform(*GOAL_RANGE, size=(n, 2))
    return [Navigation2DTask((float(g[0]), float(g[1]))) for g in goals]


def test_tasks(n: int) -> list[Task]:
    """The first ``n`` held-out tasks (a fixed sequence, independent of any seed)."""
    check_positive("n", n)
    return draw_goals(test_split_rng(NAME), n)


test_tasks.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def sample_split(rng: np.random.Generator, n: int, split: str) -> list[Task]:
    """``n`` tasks: held-out ones for "test", else draws from ``rng`` that avoid them."""
    check_positive("n", n)
    check_split(split)
    if split == "test":
        return test_tasks(n)
    guard = set(test_tasks(TEST_GUARD))
    out: list[Task] = []
    while len(out) < n:
        out.extend(t for t in draw_goals(rng, n - len(out)) if t not in guard)
    return out


def move(state: np.ndarray, action: np.ndarray, goal: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[N, 2] states after ``s + clip(a, -0.1, 0.1)``, [N] rewards ``-||s' - g||``, [N] done."""
    new = state + np.clip(np.asarray(action, dtype=np.float64), -MAX_ACTION, MAX_ACTION)
    dist = np.linalg.norm(new - goal, axis=1)
    return new, -dist, dist < GOAL_TOLERANCE


def observation_space() -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(2,), dtype=np.float64)


def action_space() -> spaces.Box:
    return spaces.Box(-MAX_ACTION, MAX_ACTION, shape=(2,), dtype=np.float32)


class Navigation2DEnv(gymnasium.Env):  # type: ignore[type-arg]
    """One point-mass navigation task (Finn et al., 2017)."""

    metadata: dict[str, Any] = {"render_modes": []}
    name = NAME
    task_type = Navigation2DTask

    def __init__(self, task: Task | None = None) -> None:
        self.observation_space = observation_space()
        self.action_space = action_space()
        self._task = Navigation2DTask((0.0, 0.0))
        self.set_task(task if task is not None else self._task)
        self._state = np.zeros(2)

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """``n`` goals of ``split`` ("train": from ``np_random``; "test": fixed)."""
        return sample_split(self.np_random, n, split)

    def set_task(self, task: Task) -> None:
        check_task_type(task, Navigation2DTask)
        self._task = task  # type: ignore[assignment]
        self._goal = np.asarray(task.goal, dtype=np.float64)  # type: ignore[attr-defined]

    def get_task(self) -> Task:
        return self._task

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._state = np.zeros(2)
        return self._state.copy(), {"task": self._task}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        a = np.asarray(action, dtype=np.float64).reshape(1, 2)
        new, reward, done = move(self._state[None], a, self._goal[None])
        self._state = new[0]
        return self._state.copy(), float(reward[0]), bool(done[0]), False, {
            "distance": float(-reward[0])}


class Navigation2DVec(TaskVectorEnv):
    """``num_envs`` Navigation2D envs stepped as NumPy arrays (the batched-env interface).

    A finished env (goal reached or ``horizon`` steps) resets inside ``step``
    (``AutoresetMode.SAME_STEP``); its last observation is in ``info["final_obs"]`` where
    ``info["_final_obs"]`` is True.
    """

    def __init__(self, num_envs: int, horizon: int | None = HORIZON,
                 seed: int | None = None) -> None:
        check_positive("num_envs", num_envs)
        horizon = HORIZON if horizon is None else horizon
        check_positive("horizon", horizon)
        self.num_envs = int(num_envs)
        self.horizon = int(horizon)
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._np_random, _ = seeding.np_random(seed)
        self._tasks: list[Task] = [Navigation2DTask((0.0, 0.0))] * self.num_envs
        self._goals = np.zeros((self.num_envs, 2))
        self._state = np.zeros((self.num_envs, 2))
        self._t = np.zeros(self.num_envs, dtype=np.int64)

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        return sample_split(self.np_random, n, split)

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One task per env (``len(tasks) == num_envs``)."""
        self._tasks = self._check_tasks(tasks, Navigation2DTask)
        self._goals = np.array([t.goal for t in self._tasks],  # type: ignore[attr-defined]
                               dtype=np.float64)

    def get_tasks(self) -> list[Task]:
        return list(self._tasks)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, _ = seeding.np_random(seed if isinstance(seed, int) else seed[0])
        self._state = np.zeros((self.num_envs, 2))
        self._t[:] = 0
        return self._state.copy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                  np.ndarray, dict[str, Any]]:
        a = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, 2)
        self._state, rewards, terminated = move(self._state, a, self._goals)
        self._t += 1
        truncated = self._t >= self.horizon  # as TimeLimit: even when terminated too
        done = terminated | truncated
        info: dict[str, Any] = {"distance": -rewards}
        if done.any():
            info["final_obs"] = np.where(done[:, None], self._state, 0.0)
            info["_final_obs"] = done.copy()
            self._state[done] = 0.0
            self._t[done] = 0
        return self._state.copy(), rewards, terminated, truncated, info
