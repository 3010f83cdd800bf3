"""Fault drill: ``kill -9`` during ``metarl train``, then ``--resume``.

A subprocess trains the tiny Navigation2D run with a checkpoint after every iteration and is
SIGKILLed once it has logged iteration 2 (wherever it is then: sampling, updating, writing a
checkpoint); ``metarl train --resume`` then trains to the same total, and the final
checkpoint's tensors equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import torch

from metarl.runs import latest_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
TOTAL = 5
Tensors = dict[str, torch.Tensor]


def test_sigkill_then_resume_equals_the_uninterrupted_run(
        tmp_path: Path, cli_train: Callable[..., list[str]],
        straight: Callable[[int], Tensors], policy_of: Callable[[Path], Tensors],
        bit_equal: Callable[[Tensors, Tensors], None]) -> None:
    proc = subprocess.Popen(cli_train(tmp_path, "--iterations", str(TOTAL)), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 180
    line = ""
    while not line.startswith("[2]") and time.monotonic() < deadline and proc.poll() is None:
        line = proc.stdout.readline()  # one line per logged iteration: "[N] ..."
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    (run_dir,) = tmp_path.iterdir()
    newest = latest_checkpoint(run_dir)
    assert newest is not None
    killed_at = int(load_checkpoint(newest)["iteration"])
    assert 1 <= killed_at < TOTAL, killed_at  # killed mid-run, with work left to resume
    at_kill = dict(load_checkpoint(newest)["learner"]["policy"])
    assert not all(torch.equal(at_kill[k], v) for k, v in straight(TOTAL).items())

    resumed = subprocess.run(cli_train(tmp_path, "--resume", str(run_dir), "--iterations",
                                       str(TOTAL)), cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"from iteration {killed_at} ({newest.name})" in resumed.stdout
    final = latest_checkpoint(run_dir)
    assert final is not None and int(load_checkpoint(final)["iteration"]) == TOTAL
    bit_equal(policy_of(run_dir), straight(TOTAL))
