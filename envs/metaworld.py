"""Meta-World ML1 / ML10 / ML45 behind the metarl task interface (the ``metaworld`` extra).

Meta-World (Yu et al., 2019, "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta
Reinforcement Learning") defines each benchmark by train and test *classes* (manipulation
environments such as ``reach-v3``) and, per class, a fixed set of 50 *goals*: the
``rand_vec`` (object and goal positions) that Meta-World's ``Task`` pickles. ML1 trains and
tests on one class with two disjoint goal sets; ML10 and ML45 test on classes never trained
on. Success is Meta-World's own ``info["success"]`` flag; an episode succeeds when the flag is
raised at any step (:func:`success_rate`).

Goal sets are built exactly as ``metaworld._make_tasks`` builds them (50 resets of the class
with an unfrozen ``rand_vec``, so rejection loops in ``reset_model`` keep only valid goals),
but per class, lazily, from a seed derived from ``(goal_seed, split, env_name)``: building all
of ML45 up front takes minutes, and a class's goals then do not depend on which other classes
the benchmark holds. The goals therefore differ from ``metaworld.ML10(seed=...)``'s, with the
same distribution. A :class:`MetaWorldTask` carries its ``rand_vec``, so setting a task (or
loading one from JSON) needs no goal set.

Meta-World pins its own MuJoCo, so it lives in its own venv (``make .venv-mw/.installed``);
this module imports without it and raises an ``ImportError`` naming the extra when used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
import zlib
from typing import Any, ClassVar

import gymnasium
import numpy as np

from .core import SPLITS, Task, check_positive, check_split
from .gym_vector import GymVectorTaskEnv

BENCHMARKS = ("ML1", "ML10", "ML45")
GOALS_PER_CLASS = 50  # Meta-World's _N_GOALS
HORIZON = 500  # Meta-World's max_path_length
NAMESPACE = "MetaWorld"
_INSTALL_HINT = ("Meta-World is not installed: pip install 'metarl[metaworld]' "
                 "(in its own venv: make .venv-mw/.installed)")


def _metaworld() -> Any:
    """The ``metaworld`` module, or an ``ImportError`` telling how to install the extra."""
    try:
        import metaworld
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return metaworld


def _all_classes() -> dict[str, type]:
    return dict(_metaworld().env_dict.ALL_V3_ENVIRONMENTS)


def check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ValueError(f"'benchmark' must be one of {BENCHMARKS}, got {benchmark!r}")


def class_names(benchmark: str, split: str, env_name: str | None = None) -> list[str]:
    """Names of the Meta-World classes of ``benchmark``'s ``split``.

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        split: ``"train"`` or ``"test"``.
        env_name: the class of ML1 (both splits); must be None for ML10 / ML45.
    """
    check_benchmark(benchmark)
    check_split(split)
    if benchmark == "ML1":
        allowed = sorted(_all_classes())
        if env_name not in allowed:
            raise ValueError(f"'env_name' must be one of {allowed} for ML1, got {env_name!r}")
        return [env_name]
    if env_name is not None:
        raise ValueError(f"'env_name' must be None for {benchmark} (it has fixed classes), "
                         f"got {env_name!r}")
    table = getattr(_metaworld().env_dict, f"{benchmark}_V3")
    return list(table[split])


@dataclasses.dataclass(frozen=True)
class MetaWorldTask(Task):
    """One Meta-World task: a class and one of its goals.

    Attributes:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        env_name: the Meta-World class, e.g. ``"reach-v3"``.
        split: ``"train"`` or ``"test"``: the goal set (ML1) / class set (ML10, ML45).
        index: position of the goal in the class's goal set, in ``[0, 50)``.
        goal_seed: seed of the goal set.
        rand_vec: Meta-World's ``rand_vec`` (object and goal positions) of the task.
    """

    benchmark: str
    env_name: str
    split: str
    index: int
    goal_seed: int
    rand_vec: tuple[float, ...]

    def validate(self) -> None:
        names = class_names(self.benchmark, self.split,
                            self.env_name if self.benchmark == "ML1" else None)
        if self.env_name not in names:
            raise ValueError(f"task field 'env_name' must be one of {names} for "
                             f"{self.benchmark} {self.split}, got {self.env_name!r}")
        if not 0 <= self.index < GOALS_PER_CLASS:
            raise ValueError(f"task field 'index' must be in [0, {GOALS_PER_CLASS}), "
                             f"got {self.index!r}")
        if not self.rand_vec or not all(math.isfinite(v) for v in self.rand_vec):
            raise ValueError(f"task field 'rand_vec' must be a non-empty tuple of finite "
                             f"floats, got {self.rand_vec!r}")

    def to_metaworld(self) -> Any:
        """Meta-World's own ``Task`` (goal hidden from the observation, as in its ML set-up)."""
        data = {"rand_vec": np.asarray(self.rand_vec, dtype=np.float64),
                "env_cls": _all_classes()[self.env_name], "partially_observable": True}
        return _metaworld().types.Task(env_name=self.env_name, data=pickle.dumps(data))


def _class_seed(goal_seed: int, split: str, env_name: str) -> int:
    return int(np.random.SeedSequence([goal_seed, SPLITS.index(split),
                                       zlib.crc32(env_name.encode())]).generate_state(1)[0])


@functools.cache
def goal_set(env_name: str, split: str, goal_seed: int) -> tuple[tuple[float, ...], ...]:
    """The 50 goals (``rand_vec``) of one class and split, as ``metaworld._make_tasks`` draws
    them: resets of the class with an unfrozen ``rand_vec`` on an env seeded per class.
    Memoised: a pure function of its arguments, ~1 s per class to build."""
    env = _all_classes()[env_name]()
    env.seed(_class_seed(goal_seed, split, env_name))
    env._freeze_rand_vec = False
    env._set_task_called = True
    env._set_task_inner()
    goals = []
    for _ in range(GOALS_PER_CLASS):
        env.reset()
        goals.append(tuple(float(v) for v in env._last_rand_vec))
    env.close()
    return tuple(goals)


def sample_metaworld_tasks(rng: np.random.Generator, n: int, benchmark: str, split: str,
                           env_name: str | None = None,
                           goal_seed: int = 0) -> list[MetaWorldTask]:
    """``n`` tasks: a class uniformly from the split's classes, then one of its 50 goals."""
    check_positive("n", n)
    names = class_names(benchmark, split, env_name)
    tasks = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        index = int(rng.integers(GOALS_PER_CLASS))
        tasks.append(MetaWorldTask(benchmark, name, split, index, goal_seed,
                                   goal_set(name, split, goal_seed)[index]))
    return tasks


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
