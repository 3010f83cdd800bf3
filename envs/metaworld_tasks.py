"""Meta-World's benchmarks as metarl tasks: classes, goal sets and :class:`MetaWorldTask`.

Meta-World (Yu et al., 2019, "Meta-World: A Benchmark and Evaluation for Multi-Task and Meta
Reinforcement Learning") defines each benchmark by train and test *classes* (manipulation
environments such as ``reach-v3``) and, per class, a fixed set of 50 *goals*: the
``rand_vec`` (object and goal positions) that Meta-World's ``Task`` pickles. ML1 trains and
tests on one class with two disjoint goal sets; ML10 and ML45 test on classes never trained
on.

Goal sets are built exactly as ``metaworld._make_tasks`` builds them (50 resets of the class
with an unfrozen ``rand_vec``, so rejection loops in ``reset_model`` keep only valid goals),
but per class, lazily, from a seed derived from ``(goal_seed, split, env_name)``: building all
of ML45 up front takes minutes, and a class's goals then do not depend on which other classes
the benchmark holds. The goals therefore differ from ``metaworld.ML10(seed=...)``'s, with the
same distribution. A :class:`MetaWorldTask` carries its ``rand_vec``, so setting a task (or
loading one from JSON) needs no goal set.

This module imports without the ``metaworld`` package and raises an ``ImportError`` naming the
extra when used. The environments are in :mod:`metarl.envs.metaworld`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import pickle
import zlib
from typing import Any

import numpy as np

from .core import SPLITS, Task, check_positive, check_split

BENCHMARKS = ("ML1", "ML10", "ML45")
GOALS_PER_CLASS = 50  # Meta-World's _N_GOALS
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
