"""Shared pieces of the fault drills: the tiny Navigation2D run, its CLI form, a straight
run's parameters to compare against, and reading TensorBoard scalars and checkpoints."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from metarl.logging import read_scalars
from metarl.runs import checkpoints, latest_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
# 2 tasks x 2 episodes x 10 steps per phase; the batched meta-update path for bit-identical
# reruns (auto may pick either path); a checkpoint after every iteration.
TINY: dict[str, Any] = dict(env="Navigation2D", meta_batch=2, episodes_per_task=2, horizon=10,
                            eval_tasks=2, eval_seeds=1, eval_inner_steps=1, eval_every=0,
                            threads=1, progress=False, meta_update_path="batched",
                            checkpoint_every=1)


@pytest.fixture(scope="session")
def tiny() -> dict[str, Any]:
    """The options of the tiny run (a copy per session)."""
    return dict(TINY)


def train_argv(run_root: Path, *extra: str) -> list[str]:
    """``metarl train`` of the tiny run as a subprocess command line (``extra`` wins)."""
    argv = [sys.executable, "-m", "metarl.cli", "train", "--run-root", str(run_root)]
    for k, v in TINY.items():
        argv += ["--no-progress"] if k == "progress" else [f"--{k.replace('_', '-')}", str(v)]
    return [*argv, *extra]


@pytest.fixture(scope="session")
def cli_train() -> Callable[..., list[str]]:
    return train_argv


def policy_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """The policy tensors of ``run_dir``'s newest checkpoint."""
    path = latest_checkpoint(run_dir)
    assert path is not None
    return dict(load_checkpoint(path)["learner"]["policy"])


@pytest.fixture(scope="session")
def policy_of() -> Callable[[Path], dict[str, torch.Tensor]]:
    return policy_tensors


@pytest.fixture(scope="session")
def straight(tmp_path_factory: pytest.TempPathFactory
             ) -> Callable[[int], dict[str, torch.Tensor]]:
    """The policy after ``n`` iterations of an uninterrupted tiny run (one run per ``n``)."""
    from metarl.rl.config import TrainConfig
    from metarl.rl.train import main

    cache: dict[int, dict[str, torch.Tensor]] = {}

    def params(n: int) -> dict[str, torch.Tensor]:
        if n not in cache:
            root = tmp_path_factory.mktemp(f"straight{n}")
            cache[n] = policy_tensors(main(TrainConfig(**{**TINY, "iterations": n,
                                                          "run_root": str(root)})))
        return cache[n]

    return params


@pytest.fixture(scope="session")
def scalars() -> Callable[[Path, str], dict[int, float]]:
    return read_scalars


@pytest.fixture(scope="session")
def saved_iterations() -> Callable[[Path], list[int]]:
    """The iterations of a run's checkpoints, oldest first."""
    return lambda run_dir: [int(load_checkpoint(p)["iteration"]) for p in checkpoints(run_dir)]


def assert_bit_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="session")
def bit_equal() -> Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], None]:
    return assert_bit_equal
