"""Shared pieces of every task distribution: the `Task` base class, JSON round trips, splits.

A task distribution is a Gymnasium environment whose unwrapped env implements
:class:`TaskDistribution`: ``sample_tasks(n, split=)`` draws from the env's own
``np_random`` (seeded by ``reset(seed=)``), ``set_task`` / ``get_task`` switch the task.
This module imports numpy only (never torch), so any RL library can use the envs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

SPLITS = ("train", "test")

_TASK_TYPES: dict[str, type[Task]] = {}
_FIELD_TYPES: dict[type, dict[str, Any]] = {}


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class of every task: frozen, typed, JSON-serialisable.

    Subclasses are frozen dataclasses whose fields are floats, ints, strings or tuples of
    floats, and implement :meth:`validate` to reject values outside the distribution's
    support. Construction normalises each field to its annotated type, so a task built from
    NumPy values (``Navigation2DTask(goal=np.array([0.3, -0.2]))``) equals, hashes like and
    writes to JSON as the one built from Python floats; a value that is not of the field's
    kind (a string for a float, a nested array) raises a ``ValueError`` naming the field.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _TASK_TYPES[cls.__name__] = cls

    def __post_init__(self) -> None:
        for name, kind in _field_types(type(self)).items():
            # frozen: the dataclass's own __setattr__ refuses, so set the field directly
            object.__setattr__(self, name, normalise_field(name, kind, getattr(self, name)))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field and its allowed values if out of range."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": type(self).__name__}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Task:
        d = dict(d)
        name = d.pop("type", None)
        if name not in _TASK_TYPES:
            raise ValueError(f"task 'type' must be one of {sorted(_TASK_TYPES)}, got {name!r}")
        task = _TASK_TYPES[name](**d)
        task.validate()
        return task

    def as_array(self) -> np.ndarray:
        """The task's numeric fields flattened into one float64 vector (for batched rewards)."""
        parts = [np.atleast_1d(np.asarray(getattr(self, f.name), dtype=np.float64))
                 for f in dataclasses.fields(self)]
        return np.concatenate(parts) if parts else np.zeros(0)


def _field_types(cls: type) -> dict[str, Any]:
    """Each dataclass field of ``cls`` and its resolved annotation (worked out once a class)."""
    if cls not in _FIELD_TYPES:
        hints = typing.get_type_hints(cls)
        _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return _FIELD_TYPES[cls]


def normalise_field(field: str, kind: Any, value: object) -> object:
    """``value`` as the plain Python value of annotation ``kind``: ``float`` and ``int`` from
    any real scalar of that kind (NumPy's included), ``str``, and ``tuple[float, ...]`` from
    any 1-D sequence or array of numbers. Other annotations keep ``value`` as given."""
    if typing.get_origin(kind) is tuple and typing.get_args(kind)[0] in (float, int):
        return _number_tuple(field, value, typing.get_args(kind)[0])
    if kind in (float, int):
        return _number(field, value, kind)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"task field '{field}' must be a string, got {value!r}")
        return str(value)
    return value


def _number(field: str, value: object, kind: type) -> float | int:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, (bool, np.bool_)):  # True is an int, never a task value
        if isinstance(value, (int, np.integer)):
            return int(value) if kind is int else float(value)
        if kind is float and isinstance(value, (float, np.floating)):
            return float(value)
    what = "an integer" if kind is int else "a real number"
    raise ValueError(f"task field '{field}' must be {what}, got {value!r}")


def _number_tuple(field: str, value: object, kind: type) -> tuple[float | int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) \
            or np.ndim(value) != 1:
        raise ValueError(f"task field '{field}' must be a 1-D sequence of numbers, "
                         f"got {value!r}")
    return tuple(_number(f"{field}[{i}]", v, kind) for i, v in enumerate(value))


def check_range(field: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` and finite."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"task field '{field}' must be a finite number in [{low}, {high}], "
                         f"got {value!r}")


def check_vector_range(field: str, values: tuple[float, ...], size: int, low: float,
                       high: float) -> None:
    """Raise ``ValueError`` unless ``values`` has ``size`` entries, each in ``[low, high]``."""
    if len(values) != size:
        raise ValueError(f"task field '{field}' must have {size} entries, got {len(values)}")
    for i, v in enumerate(values):
        check_range(f"{field}[{i}]", v, low, high)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"'split' must be one of {SPLITS}, got {split!r}")


def check_positive(field: str, value: object) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``field`` and the allowed values."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"'{field}' must be a positive integer (>= 1), got {value!r}")
    return int(value)


def check_task_type(task: object, expected: type[Task]) -> None:
    if not isinstance(task, expected):
        raise ValueError(f"'task' must be a {expected.__name__}, got {type(task).__name__}")
    task.validate()


def test_split_rng(name: str) -> np.random.Generator:
    """The fixed generator of a distribution's held-out split: independent of any env seed,
    so every run evaluates on the same held-out tasks, and never used for training draws."""
    seed = int.from_bytes(name.encode(), "little") % (2**63)
    return np.random.default_rng([seed, 0x7E57])


test_split_rng.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def tasks_to_json(tasks: Sequence[Task], path: str | Path) -> None:
    Path(path).write_text(json.dumps([t.to_dict() for t in tasks], indent=2))


def tasks_from_json(path: str | Path) -> list[Task]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, list):
        raise ValueError(f"task file {path} must hold a JSON list of task objects")
    return [Task.from_dict(d) for d in data]


@runtime_checkable
class TaskDistribution(Protocol):
    """What ``env.unwrapped`` of every metarl environment implements."""

    task_type: ClassVar[type[Task]]

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]: ...

    def set_task(self, task: Task) -> None: ...

    def get_task(self) -> Task: ...


# --------------------------------------------------------------------------------------------
# The batched-kernel contract shared by the single Gymnasium envs and the batched engine.
#
# Every MuJoCo distribution provides one `Kernel`. The single env (a wrapper around the
# Gymnasium v5 base env) calls it with N = 1; the batched engine (envs/batched.py) calls it
# with N environments at once. Reward, termination and observation are therefore one piece
# of NumPy code, and the engine-vs-single-env equivalence test checks the physics, resets
# and bookkeeping, while reward tests check the kernel against hand computation.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class StepArrays:
    """Batched MuJoCo state around one env step, every array with leading dim N.

    ``qpos_before`` is the position before the step (after the previous step or reset);
    the ``*_after`` arrays are read after ``frame_skip`` physics steps. ``cfrc_ext`` is
    ``data.cfrc_ext`` after ``mj_rnePostConstraint`` (shape ``[N, nbody, 6]``), or ``None``
    for kernels whose ``needs_cfrc_ext`` is False. ``dt`` is ``model.opt.timestep * frame_skip``.
    """

    qpos_before: np.ndarray
    qpos_after: np.ndarray
    qvel_after: np.ndarray
    action: np.ndarray
    cfrc_ext: np.ndarray | None
    dt: float


@runtime_checkable
class Kernel(Protocol):
    """Vectorised definition of one MuJoCo task distribution over a Gymnasium v5 base env."""

    base_id: str            # e.g. "HalfCheetah-v5"
    base_kwargs: dict[str, Any]  # kwargs for gymnasium.make(base_id, ...) (defaults if empty)
    frame_skip: int
    needs_cfrc_ext: bool

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        """[N, k] float64 parameters the reward needs (e.g. target velocity)."""
        ...

    def task_model(self, base_model: Any, task: Task) -> Any:
        """The MjModel to simulate ``task`` with: ``base_model`` itself unless the task
        changes physics (randomised-params distributions return a modified copy)."""
        ...

    def observation(self, qpos: np.ndarray, qvel: np.ndarray,
                    cfrc_ext: np.ndarray | None) -> np.ndarray:
        """[N, obs_dim] observation, equal to the base env's ``_get_obs()``."""
        ...

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """[N] rewards and a dict of [N] reward components (for ``info``)."""
        ...

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """[N] bool: the base env's termination (e.g. Ant/Hopper/Walker not healthy)."""
        ...

    def reset_state(self, rng: np.random.Generator, init_qpos: np.ndarray,
                    init_qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Initial (qpos, qvel) drawn exactly as the base env's ``reset_model`` draws it,
        consuming ``rng`` in the same order, so a batched env seeded like a single env
        resets to the same state."""
        ...
