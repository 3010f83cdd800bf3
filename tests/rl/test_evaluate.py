"""Held-out evaluation: statistics by hand, eval.json / PNG / TensorBoard, ``metarl evaluate``
with a task file, determinism, and bad configs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metarl.logging import read_scalars
from metarl.rl.evaluate import EvalResult, format_table, write_eval
from metarl.rl.evaluate_cmd import EvalConfig
from metarl.rl.evaluate_cmd import main as main_eval
from metarl.rl.train import TrainConfig, main

REPO = Path(__file__).resolve().parents[2]


class FakeTask:
    """Only what EvalResult.to_json reads from a task (a stand-in for a real Task here,
    where the statistics, not the environment, are under test)."""

    def __init__(self, goal: float) -> None:
        self.goal = goal

    def to_dict(self) -> dict[str, float]:
        return {"goal": self.goal}


def hand_result() -> EvalResult:
    # returns[seed, step, task]: 2 seeds, 2 steps (K = 1), 2 tasks
    returns = np.array([[[1.0, 3.0], [2.0, 6.0]],
                        [[5.0, 7.0], [4.0, 8.0]]])
    return EvalResult("Navigation2D", "maml", [FakeTask(0.1), FakeTask(0.2)], (10, 11), 0.1, 20,
                      returns, iteration=7)


def test_statistics_by_hand() -> None:
    r = hand_result()
    assert r.inner_steps == 1
    mean, ci = r.overall()
    # step 0: values 1, 3, 5, 7 -> mean 4, sd sqrt(20/3), t(3) = 3.182, n = 4
    assert mean[0] == pytest.approx(4.0)
    assert ci[0] == pytest.approx(3.182 * math.sqrt(20 / 3) / 2)
    # step 1: values 2, 6, 4, 8 -> mean 5, sd sqrt(20/3)
    assert mean[1] == pytest.approx(5.0)
    per_task = r.per_task()
    # task 0, step 0: seeds give 1 and 5 -> mean 3, sd 2 sqrt 2, t(1) = 12.706, n = 2
    assert per_task[0][0][0] == pytest.approx(3.0)
    assert per_task[0][1][0] == pytest.approx(12.706 * 2 * math.sqrt(2) / math.sqrt(2))
    assert per_task[1][0] == pytest.approx([5.0, 7.0])
    assert r.scalars()["eval/return_step1"] == pytest.approx(5.0)
    assert "| 1 | 5.00 +- " in format_table(r)


def test_write_eval_files(tmp_path: Path) -> None:
    path = write_eval(hand_result(), tmp_path, stem="held_out")
    ev = json.loads(path.read_text())
    assert path == tmp_path / "held_out.json"
    assert ev["iteration"] == 7 and ev["seeds"] == [10, 11] and ev["inner_steps"] == 1
    assert ev["per_task"][1] == {"task": {"goal": 0.2}, "mean": [5.0, 7.0],
                                 "ci95": pytest.approx([25.412, 12.706], rel=1e-4)}
    assert ev["per_seed_mean"] == [[2.0, 4.0], [6.0, 6.0]]
    assert np.array(ev["returns"]).shape == (2, 2, 2)
    assert (tmp_path / "held_out.png").read_bytes()[:4] == b"\x89PNG"


# --------------------------------------------------------------------------------------------
# metarl evaluate on a real (tiny) run
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(env="Navigation2D", iterations=1, meta_batch=2, episodes_per_task=2,
                      horizon=10, eval_tasks=2, eval_seeds=1, eval_inner_steps=1, eval_every=0,
                      threads=1, run_root=str(root), progress=False)
    return main(cfg)


@pytest.mark.slow
def test_evaluate_with_a_task_file(run_dir: Path, tmp_path: Path) -> None:
    from metarl.cli import main as cli
    from metarl.envs.batched import make_batched
    from metarl.envs.core import tasks_to_json

    tasks = make_batched("Navigation2D", 1, seed=3).sample_tasks(3, "test")
    tasks_to_json(tasks, tmp_path / "tasks.json")
    argv = ["evaluate", str(run_dir), "--tasks", str(tmp_path / "tasks.json"),
            "--inner-steps", "2", "--seeds", "2", "--episodes-per-task", "2", "--out", "file"]
    assert cli(argv) == 0
    evals = run_dir / "evaluations"
    ev = json.loads((evals / "file.json").read_text())
    assert [t["task"] for t in ev["per_task"]] == [t.to_dict() for t in tasks]
    returns = np.array(ev["returns"])
    assert returns.shape == (2, 3, 3)  # seeds x (K + 1) x tasks
    assert ev["overall"]["mean"] == pytest.approx(returns.mean(axis=(0, 2)).tolist())
    assert (evals / "file.png").read_bytes()[:4] == b"\x89PNG"
    tb = read_scalars(evals / "file", "eval/return_step2")
    assert tb[1] == pytest.approx(ev["overall"]["mean"][2], rel=1e-6)
    # same seeds -> the same returns; step 0 does not depend on the inner lr
    assert cli([*argv[:-1], "again", "--inner-lr", "0.5"]) == 0
    again = np.array(json.loads((evals / "again.json").read_text())["returns"])
    np.testing.assert_array_equal(again[:, 0], returns[:, 0])
    assert not np.array_equal(again[:, 1:], returns[:, 1:])


@pytest.mark.slow
def test_evaluate_default_uses_the_test_split(run_dir: Path) -> None:
    ev_train = json.loads((run_dir / "eval.json").read_text())
    assert ev_train["num_tasks"] == 2 and ev_train["iteration"] == 1
    path = main_eval(EvalConfig(str(run_dir), seeds=1, inner_steps=1, out="split"))
    ev = json.loads(path.read_text())
    # the run's final evaluation and a later one see the same held-out tasks and seeds
    assert [t["task"] for t in ev["per_task"]] == [t["task"] for t in ev_train["per_task"]]
    assert ev["returns"] == ev_train["returns"]


@pytest.mark.slow
def test_evaluate_never_overwrites_the_runs_results(run_dir: Path) -> None:
    own = {name: (run_dir / name).read_bytes() for name in ("eval.json", "eval.png")}
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    first = main_eval(EvalConfig(str(run_dir), seeds=1, inner_steps=1))
    second = main_eval(EvalConfig(str(run_dir), seeds=1, inner_steps=1))
    assert first != second and first.parent == second.parent == run_dir / "evaluations"
    assert first.name.startswith("iter000001-") and first.is_file() and second.is_file()
    assert {name: (run_dir / name).read_bytes() for name in own} == own
    assert sorted(run_dir.glob("events.out.tfevents.*")) == events  # no second events file
    with pytest.raises(ValueError, match="out.*never overwritten"):
        EvalConfig(str(run_dir), out=first.stem)


@pytest.mark.slow
def test_evaluate_rejects_a_task_file_of_another_distribution(run_dir: Path,
                                                              tmp_path: Path) -> None:
    from metarl.envs.batched import make_batched
    from metarl.envs.core import tasks_to_json

    registration = pytest.importorskip("metarl.envs.registration")
    assert "HalfCheetahVel" in registration.DISTRIBUTIONS
    tasks_to_json(make_batched("HalfCheetahVel", 1, seed=0).sample_tasks(2, "test"),
                  tmp_path / "cheetah.json")
    with pytest.raises(ValueError, match="tasks"):
        EvalConfig(str(run_dir), tasks=str(tmp_path / "cheetah.json"))


@pytest.mark.parametrize(("kw", "field"), [
    ({"inner_steps": -1}, "inner_steps"), ({"seeds": 0}, "seeds"),
    ({"num_tasks": 0}, "num_tasks"), ({"inner_lr": float("nan")}, "inner_lr"),
    ({"tasks": "/nonexistent/tasks.json"}, "tasks"), ({"out": ""}, "out"),
])
def test_bad_eval_config_names_the_field(run_dir: Path, kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        EvalConfig(str(run_dir), **kw)


def test_evaluate_needs_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run_dir"):
        EvalConfig(str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and "run_dir" in r.stderr
