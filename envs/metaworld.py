"""Meta-World ML1 / ML10 / ML45 behind the metarl task interface (the ``metaworld`` extra).

Meta-World (Yu et al., 2019, "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta
Reinforcement Learning"): :class:`MetaWorldTaskEnv` is one Meta-World env whose task (class and
goal, a :class:`~metarl.envs.metaworld_tasks.MetaWorldTask`) is switchable, and
:class:`MetaWorldVecEnv` the batched form that ``make_batched`` returns for Meta-World names.
Success is Meta-World's own ``info["success"]`` flag; an episode succeeds when the flag is
raised at any step (:func:`success_rate`). The benchmarks' classes, goal sets and tasks are in
:mod:`metarl.envs.metaworld_tasks`; their names import from here too.

Meta-World pins its own MuJoCo, so it lives in its own venv (``make .venv-mw/.installed``);
this module imports without it and raises an ``ImportError`` naming the extra when used.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np

from .core import Task, check_positive
from .gym_vector import GymVectorTaskEnv
from .metaworld_tasks import (
    BENCHMARKS,
    GOALS_PER_CLASS,
    MetaWorldTask,
    _all_classes,
    check_benchmark,
    class_names,
    goal_set,
    sample_metaworld_tasks,
)

__all__ = [
    "BENCHMARKS", "GOALS_PER_CLASS", "HORIZON", "NAMESPACE", "MetaWorldTask",
    "MetaWorldTaskEnv", "MetaWorldVecEnv", "check_benchmark", "class_names", "goal_set",
    "make_metaworld", "parse_name", "register", "sample_metaworld_tasks", "success_rate",
]

HORIZON = 500  # Meta-World's max_path_length
NAMESPACE = "MetaWorld"


class MetaWorldTaskEnv(gymnasium.Env):
    """A single Meta-World env of one benchmark whose task (class and goal) is switchable.

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: the class of ML1 (e.g. ``"reach-v3"``); None for ML10 / ML45.
        horizon: episode length, in ``[1, 500]`` (Meta-World stops at 500).
        goal_seed: seed of the goal sets.
    """

    task_type: ClassVar[type[Task]] = MetaWorldTask
    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, benchmark: str = "ML1", env_name: str | None = "reach-v3", *,
                 horizon: int = HORIZON, goal_seed: int = 0) -> None:
        class_names(benchmark, "train", env_name)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or \
                not 1 <= horizon <= HORIZON:
            raise ValueError(f"'horizon' must be an integer in [1, {HORIZON}], got {horizon!r}")
        self.benchmark, self.env_name = benchmark, env_name
        self.horizon, self.goal_seed = horizon, goal_seed
        self._envs: dict[str, Any] = {}
        self._task: MetaWorldTask | None = None
        self._t = 0
        first = self._env(class_names(benchmark, "train", env_name)[0])
        self.observation_space = first.observation_space
        self.action_space = first.action_space

    def _env(self, env_name: str) -> Any:
        if env_name not in self._envs:
            self._envs[env_name] = _all_classes()[env_name]()
        return self._envs[env_name]

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """``n`` tasks of ``split`` drawn from this env's ``np_random``."""
        return list(sample_metaworld_tasks(self.np_random, n, self.benchmark, split,
                                           self.env_name, self.goal_seed))

    def set_task(self, task: Task) -> None:
        if not isinstance(task, MetaWorldTask) or task.benchmark != self.benchmark:
            raise ValueError(f"'task' must be a MetaWorldTask of benchmark {self.benchmark!r}, "
                             f"got {task!r}")
        task.validate()
        self._env(task.env_name).set_task(task.to_metaworld())
        self._task = task

    def get_task(self) -> Task:
        return self._current()

    def _current(self) -> MetaWorldTask:
        if self._task is None:  # first train goal of the first class until a task is set
            name = class_names(self.benchmark, "train", self.env_name)[0]
            self.set_task(MetaWorldTask(self.benchmark, name, "train", 0, self.goal_seed,
                                        goal_set(name, "train", self.goal_seed)[0]))
        assert self._task is not None
        return self._task

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        env = self._env(self._current().env_name)
        if seed is not None:
            env.seed(seed)
        self._t = 0
        obs, info = env.reset()
        return np.asarray(obs, dtype=np.float64), dict(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self._env(self._current().env_name).step(
            np.asarray(action, dtype=np.float32))
        self._t += 1
        info = dict(info)
        info["success"] = bool(info["success"])
        return (np.asarray(obs, dtype=np.float64), float(reward), bool(terminated),
                bool(truncated) or self._t >= self.horizon, info)

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


def success_rate(success_tn: Any) -> float:
    """Fraction of episodes that succeed, Meta-World's metric (Yu et al., 2019, Sec. 5).

    Args:
        success_tn: ``[T, N]`` booleans, ``info["success"]`` at step ``t`` of episode ``n``
            (one episode per column, e.g. the sampler's ``horizon x (tasks x episodes)``).

    Returns:
        The fraction of columns in which the flag is raised at any step.
    """
    s = np.asarray(success_tn)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"'success_tn' must be a non-empty [T, N] array, got shape {s.shape}")
    return float(np.mean(np.any(s.astype(bool), axis=0)))


# --------------------------------------------------------------------------------------------
# Names and Gymnasium registration ("MetaWorld/ML1-reach-v3", "MetaWorld/ML10", ...).
# --------------------------------------------------------------------------------------------


def parse_name(name: str) -> tuple[str, str | None]:
    """``(benchmark, env_name)`` of ``"ML1-<class>"``, ``"ML10"`` or ``"ML45"`` (optionally
    prefixed ``"MetaWorld/"``)."""
    bare = name.removeprefix(f"{NAMESPACE}/")
    if bare in ("ML10", "ML45"):
        return bare, None
    if bare.startswith("ML1-"):
        env_name = bare.removeprefix("ML1-")
        class_names("ML1", "train", env_name)
        return "ML1", env_name
    raise ValueError(f"'name' must be one of 'ML1-<class>' (e.g. 'ML1-reach-v3'), 'ML10', "
                     f"'ML45', optionally prefixed '{NAMESPACE}/', got {name!r}")


def register(name: str) -> str:
    """Register ``name`` (see :func:`parse_name`) as a Gymnasium id of
    :class:`MetaWorldTaskEnv` limited to 500 steps; returns the id."""
    benchmark, env_name = parse_name(name)
    if name not in gymnasium.registry:
        gymnasium.register(id=name, entry_point=f"{__name__}:MetaWorldTaskEnv",
                           max_episode_steps=HORIZON,
                           kwargs={"benchmark": benchmark, "env_name": env_name})
    return name


# --------------------------------------------------------------------------------------------
# The batched interface over Gymnasium's Sync/AsyncVectorEnv.
# --------------------------------------------------------------------------------------------


class _EnvFn:
    """A picklable constructor (AsyncVectorEnv ships it to its worker processes)."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs

    def __call__(self) -> gymnasium.Env:
        return MetaWorldTaskEnv(**self.kwargs)


def _success(info: dict[str, Any], num_envs: int) -> np.ndarray:
    """``info["success"]`` as bool ``[N]``: the final step's flag for environments that were
    reset in this step (SAME_STEP autoreset puts the reset info in ``info``)."""
    success = np.zeros(num_envs, dtype=bool)
    if "success" in info:
        success[info["_success"]] = np.asarray(info["success"])[info["_success"]]
    final = info.get("final_info", {})
    if "success" in final:
        mask = np.asarray(final["_success"], dtype=bool)
        success[mask] = np.asarray(final["success"])[mask]
    return success


class MetaWorldVecEnv(GymVectorTaskEnv):
    """``num_envs`` Meta-World envs of one benchmark, one task each, stepped together.

    :class:`~metarl.envs.gym_vector.GymVectorTaskEnv` (``make_batched`` returns this class for
    Meta-World names) with Meta-World's task sampler and ``info["success"]``, bool ``[N]``
    (the final step's flag for envs reset in that step). Finished envs reset in the same
    ``step`` (``AutoresetMode.SAME_STEP``); ``info["final_obs"]`` is a float64 ``[N, d]``
    array valid where ``info["_final_obs"]``.

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        num_envs: number of environments (>= 1).
        env_name: the class of ML1; None for ML10 / ML45.
        horizon: episode length in ``[1, 500]``.
        seed: seeds the first ``reset()``: env ``i`` with ``seed + i``, tasks with ``seed``.
        goal_seed: seed of the goal sets.
        vectorization_mode: ``"sync"`` or ``"async"``.
    """

    def __init__(self, benchmark: str, num_envs: int, *, env_name: str | None = None,
                 horizon: int = HORIZON, seed: int | None = None, goal_seed: int = 0,
                 vectorization_mode: str = "sync") -> None:
        check_positive("num_envs", num_envs)
        class_names(benchmark, "train", env_name)
        self.benchmark, self.env_name, self.goal_seed = benchmark, env_name, goal_seed
        fn = _EnvFn({"benchmark": benchmark, "env_name": env_name, "horizon": horizon,
                     "goal_seed": goal_seed})
        super().__init__([fn] * int(num_envs), horizon=horizon, mode=vectorization_mode,
                         seed=seed)

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """``n`` tasks of ``split`` (train / test classes or goals) from ``self.np_random``."""
        return list(sample_metaworld_tasks(self.np_random, n, self.benchmark, split,
                                           self.env_name, self.goal_seed))

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        obs, rewards, terminated, truncated, info = super().step(actions)
        info["success"] = _success(info, self.num_envs)
        return obs, rewards, terminated, truncated, info


def make_metaworld(name: str, num_envs: int, *, horizon: int = HORIZON, seed: int | None = None,
                   goal_seed: int = 0, vectorization_mode: str = "sync") -> MetaWorldVecEnv:
    """:class:`MetaWorldVecEnv` for a name such as ``"ML1-reach-v3"`` or ``"MetaWorld/ML10"``."""
    benchmark, env_name = parse_name(name)
    return MetaWorldVecEnv(benchmark, num_envs, env_name=env_name, horizon=horizon, seed=seed,
                           goal_seed=goal_seed, vectorization_mode=vectorization_mode)
