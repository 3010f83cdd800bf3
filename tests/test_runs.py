"""Run folders and checkpoints: the schedule, corrupt-checkpoint fallback, evaluation names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metarl.runs import (
    CheckpointSchedule,
    RunError,
    check_run_dir,
    evaluation_paths,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_schedule_first_iteration_then_every_n_or_minutes() -> None:
    clock = Clock()
    schedule = CheckpointSchedule(every=10, minutes=2.0, timer=clock)
    due = []
    for it in range(1, 25):
        clock.now += 5.0  # 5 s per iteration: the 2 minutes pass at iteration 24 (from 0)
        if schedule.due(it):
            due.append(it)
            schedule.saved()
    assert due == [1, 10, 20]
    clock.now += 121.0
    assert schedule.due(21)  # the clock alone
    assert schedule.due(31, first=31)  # a resumed run checkpoints after its first iteration
    with pytest.raises(ValueError, match="checkpoint_every"):
        CheckpointSchedule(every=0, minutes=1.0)
    with pytest.raises(ValueError, match="checkpoint_minutes"):
        CheckpointSchedule(every=1, minutes=0.0)


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_checkpoint(tmp_path, 1, {"w": torch.ones(2)})
    newest = save_checkpoint(tmp_path, 2, {"w": torch.full((2,), 2.0)})
    newest.write_bytes(newest.read_bytes()[:40])  # truncated mid-write by a crash
    path, state = load_latest(tmp_path)
    assert path.name == "ckpt_00000001.pt" and torch.equal(state["w"], torch.ones(2))
    assert "ckpt_00000002.pt" in capsys.readouterr().err
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="ckpt_00000001.pt.*ckpt_00000002.pt|ckpt_00000002.pt"):
        load_latest(tmp_path)


def test_damaged_tensor_bytes_are_caught_by_the_digest(tmp_path: Path) -> None:
    """torch.load reads an intact zip with damaged tensor bytes without complaint."""
    save_checkpoint(tmp_path, 1, {"x": torch.zeros(256)})
    path = save_checkpoint(tmp_path, 2, {"x": torch.zeros(256)})
    data = bytearray(path.read_bytes())
    start = data.find(bytes(64))  # inside the tensor's zeros
    data[start:start + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    assert not torch.equal(torch.load(path, weights_only=False)["x"], torch.zeros(256))
    with pytest.raises(ValueError, match="SHA-256 does not match ckpt_00000002.pt.sha256"):
        load_checkpoint(path)
    assert load_latest(tmp_path)[0].name == "ckpt_00000001.pt"
    save_checkpoint(tmp_path, 3, {"x": torch.ones(1)})  # rotation removes digests too
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "ckpt_00000002.pt", "ckpt_00000002.pt.sha256", "ckpt_00000003.pt",
        "ckpt_00000003.pt.sha256"]


def test_checkpoints_carry_a_format_and_old_ones_read_as_format_1(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 3, {"iteration": 3})
    assert load_checkpoint(path)["format"] == 2
    old = tmp_path / "checkpoints" / "ckpt_00000004.pt"
    torch.save({"iteration": 4}, old)  # as metarl wrote them before the format key
    assert load_checkpoint(old)["format"] == 1


def test_run_dir_messages_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run_dir must be a metarl run folder"):
        check_run_dir("run_dir", tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="resume: .*has no checkpoint yet.*start a new run"):
        check_run_dir("resume", tmp_path)
    with pytest.raises(RunError, match="no checkpoint yet"):
        load_latest(tmp_path)


def test_evaluation_names_never_collide(tmp_path: Path) -> None:
    a = evaluation_paths(tmp_path, None, 7)
    assert a.parent == tmp_path / "evaluations" and a.name.startswith("iter000007-")
    a.parent.mkdir()
    a.with_suffix(".json").write_text("{}")
    b = evaluation_paths(tmp_path, None, 7)
    assert b != a and b.name.startswith(a.name)
    named = evaluation_paths(tmp_path, "mine", 7)
    assert named == tmp_path / "evaluations" / "mine"
    named.with_suffix(".json").write_text("{}")
    with pytest.raises(ValueError, match="out: .*never overwritten"):
        evaluation_paths(tmp_path, "mine", 7)
    with pytest.raises(ValueError, match="out must be a plain file stem"):
        evaluation_paths(tmp_path, "../x", 7)
