"""Fault drill: a truncated or corrupt newest checkpoint on ``--resume``.

``metarl train --resume`` and ``metarl supervised --resume`` (real subprocesses) name the bad
file, fall back to the previous good checkpoint, continue from its iteration, and end where
an uninterrupted run ends, bit for bit.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from metarl.cli import main as cli
from metarl.runs import checkpoints, latest_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
Tensors = dict[str, torch.Tensor]


def damage(path: Path, how: str) -> None:
    """Truncate ``path`` to half its size, or overwrite its middle with garbage bytes."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        middle = len(data) // 2
        path.write_bytes(data[:middle - 64] + b"\x00garbage" * 16 + data[middle + 64:])


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_train_resume_skips_a_bad_newest_checkpoint(
        how: str, tmp_path: Path, tiny: dict, cli_train: Callable[..., list[str]],
        straight: Callable[[int], Tensors], policy_of: Callable[[Path], Tensors],
        bit_equal: Callable[[Tensors, Tensors], None]) -> None:
    from metarl.rl.config import TrainConfig
    from metarl.rl.train import main

    run_dir = main(TrainConfig(**{**tiny, "run_root": str(tmp_path), "iterations": 3}))
    previous, newest = checkpoints(run_dir)  # the newest two are kept: 2 and 3
    damage(newest, how)
    resumed = subprocess.run(cli_train(tmp_path, "--resume", str(run_dir), "--iterations", "4"),
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {newest} cannot be read" in resumed.stderr
    assert f"resuming {run_dir} from iteration 2 ({previous.name})" in resumed.stdout
    final = latest_checkpoint(run_dir)
    assert final is not None and load_checkpoint(final)["iteration"] == 4
    bit_equal(policy_of(run_dir), straight(4))


SUPERVISED = ["--meta-batch", "4", "--eval-tasks", "10", "--eval-inner-steps", "1",
              "--no-progress", "--log-every", "2", "--checkpoint-every", "2"]


def supervised_params(run_dir: Path) -> Tensors:
    path = latest_checkpoint(run_dir)
    assert path is not None
    return dict(load_checkpoint(path)["learner"]["params"])


def test_supervised_resume_skips_a_bad_newest_checkpoint(
        tmp_path: Path, bit_equal: Callable[[Tensors, Tensors], None]) -> None:
    assert cli(["supervised", "--run-root", str(tmp_path / "a"), *SUPERVISED,
                "--iterations", "8"]) == 0
    assert cli(["supervised", "--run-root", str(tmp_path / "b"), *SUPERVISED,
                "--iterations", "6"]) == 0
    (straight,), (run_dir,) = (list((tmp_path / d).iterdir()) for d in "ab")
    previous, newest = checkpoints(run_dir)  # iterations 4 and 6
    damage(newest, "truncated")
    resumed = subprocess.run([sys.executable, "-m", "metarl.cli", "supervised", "--resume",
                              str(run_dir), "--iterations", "8", "--no-progress"], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {newest} cannot be read" in resumed.stderr
    assert f"resuming {run_dir} from iteration 4 ({previous.name})" in resumed.stdout
    bit_equal(supervised_params(run_dir), supervised_params(straight))
