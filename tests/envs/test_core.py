from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from metarl.envs.core import (
    Task,
    check_positive,
    check_range,
    check_split,
    tasks_from_json,
    tasks_to_json,
    test_split_rng,
)


@dataclasses.dataclass(frozen=True)
class _GoalTask(Task):
    goal: tuple[float, float]
    scale: float = 1.0

    def validate(self) -> None:
        check_range("scale", self.scale, 0.0, 2.0)


def test_json_round_trip_restores_type_and_values(tmp_path) -> None:
    tasks = [_GoalTask((0.1, -0.2), 0.5), _GoalTask((1.0, 2.0))]
    tasks_to_json(tasks, tmp_path / "t.json")
    back = tasks_from_json(tmp_path / "t.json")
    assert back == tasks and isinstance(back[0].goal, tuple)
    assert tasks[0].as_array().tolist() == [0.1, -0.2, 0.5]


def test_from_dict_rejects_unknown_type_and_bad_values() -> None:
    with pytest.raises(ValueError, match="'type' must be one of"):
        Task.from_dict({"type": "Nope"})
    with pytest.raises(ValueError, match="'scale' must be a finite number in \\[0.0, 2.0\\]"):
        Task.from_dict({"type": "_GoalTask", "goal": [0, 0], "scale": 5.0})


def test_checks_name_field_and_allowed_values() -> None:
    with pytest.raises(ValueError, match="'split' must be one of \\('train', 'test'\\)"):
        check_split("val")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="'n' must be a positive integer"):
            check_positive("n", bad)
    assert check_positive("n", np.int64(3)) == 3 and type(check_positive("n", np.int64(3))) is int
    with pytest.raises(ValueError):
        check_range("velocity", float("nan"), 0.0, 2.0)


def test_test_split_rng_is_fixed_per_name() -> None:
    a = test_split_rng("HalfCheetahVel").uniform(size=3)
    b = test_split_rng("HalfCheetahVel").uniform(size=3)
    c = test_split_rng("AntVel").uniform(size=3)
    assert (a == b).all() and not (a == c).all()
