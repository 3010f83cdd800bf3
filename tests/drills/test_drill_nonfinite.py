"""Fault drill: NaN injected into a loss, a gradient, an observation or a reward.

The real components run; the fault comes from a sampler subclass that poisons its episodes,
a wrapper of the learner's meta-objective, or a gradient hook on a policy parameter. One
poisoned update is skipped and logged (TensorBoard ``trpo/nonfinite_skipped``, a console
warning) and the run goes on; a run that stays non-finite stops after
``--max-nonfinite-updates`` with a message, its newest checkpoint the last good state.
The same for ``metarl supervised``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import metarl.rl.run as rl_run
import metarl.supervised.train as sup_train
from metarl.cli import main as cli
from metarl.rl.config import TrainConfig
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.sampler import BatchedSampler, Episodes
from metarl.rl.train import main as train
from metarl.runs import checkpoints, load_checkpoint
from metarl.supervised.data import TrainSampler

NAN = float("nan")
Scalars = Callable[[Path, str], dict[int, float]]
Saved = Callable[[Path], list[int]]


class PoisonedSampler(BatchedSampler):
    """The real batched sampler; the sampling calls in ``calls`` (1-based; two per iteration:
    pre- and post-update) get one NaN observation or reward."""

    def __init__(self, env: Any, episodes_per_task: int, device: Any, *, field: str,
                 calls: Callable[[int], bool]) -> None:
        super().__init__(env, episodes_per_task, device)
        self.field, self.poisoned, self.count = field, calls, 0

    def sample(self, policy: Any, params_per_task: Any, tasks: Any, seed: int | None = None,
               *, first_task: int = 0) -> Episodes:
        episodes = super().sample(policy, params_per_task, tasks, seed, first_task=first_task)
        self.count += 1
        if self.poisoned(self.count):
            getattr(episodes, self.field)[1, 0, 3] = NAN  # task 1, episode 0, step 3
        return episodes


def poison_sampler(monkeypatch: pytest.MonkeyPatch, field: str,
                   calls: Callable[[int], bool]) -> None:
    def factory(cfg: TrainConfig) -> PoisonedSampler:
        from metarl.rl.factories import make_env

        env = make_env(cfg, cfg.num_envs, cfg.seed)
        return PoisonedSampler(env, cfg.hp.episodes_per_task, "cpu", field=field, calls=calls)

    monkeypatch.setattr(rl_run, "make_train_sampler", factory)


def poison_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """The meta-objective's loss times NaN during iteration 2's meta-update."""
    real = TrpoMetaLearner.meta_objective

    def wrapped(self: TrpoMetaLearner, *args: Any, **kwargs: Any) -> Any:
        loss, kl = real(self, *args, **kwargs)
        return (loss * NAN, kl) if self.iterations == 1 else (loss, kl)

    monkeypatch.setattr(TrpoMetaLearner, "meta_objective", wrapped)


def poison_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hook on the head's bias turns its gradient to NaN during iteration 2."""
    real = rl_run.build_learner

    def build(cfg: TrainConfig, env: Any) -> TrpoMetaLearner:
        learner = real(cfg, env)
        learner.policy.head.bias.register_hook(
            lambda g: g * NAN if learner.iterations == 1 else g)
        return learner

    monkeypatch.setattr(rl_run, "build_learner", build)


INJECTIONS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {
    "reward": lambda mp: poison_sampler(mp, "rewards", lambda c: c == 4),  # post-update, it 2
    "observation": lambda mp: poison_sampler(mp, "obs", lambda c: c == 3),  # pre-update, it 2
    "loss": poison_loss,
    "gradient": poison_gradient,
}


@pytest.mark.parametrize("where", list(INJECTIONS))
def test_one_nonfinite_update_is_skipped_logged_and_the_run_goes_on(
        where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], tiny: dict[str, Any], scalars: Scalars,
        saved_iterations: Saved) -> None:
    INJECTIONS[where](monkeypatch)
    run_dir = train(TrainConfig(**{**tiny, "run_root": str(tmp_path), "iterations": 3}))
    assert scalars(run_dir, "trpo/nonfinite_skipped") == {1: 0.0, 2: 1.0, 3: 0.0}
    assert scalars(run_dir, "trpo/accepted")[2] == 0.0
    data = scalars(run_dir, "data/nonfinite_steps")
    assert (data[2] > 0) == (where in ("reward", "observation")) and data[3] == 0.0
    assert "warning: iteration 2: the update was skipped" in capsys.readouterr().err
    assert (run_dir / "eval.json").is_file()  # the run went on to the end
    assert saved_iterations(run_dir) == [1, 3]  # none during the skipped iteration
    params = load_checkpoint(checkpoints(run_dir)[-1])["learner"]["policy"]
    assert all(bool(torch.isfinite(v).all()) for v in params.values())


def test_a_run_that_stays_nonfinite_stops_with_a_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        cli_train: Callable[..., list[str]], scalars: Scalars, saved_iterations: Saved) -> None:
    poison_sampler(monkeypatch, "rewards", lambda c: c >= 5)  # every update from iteration 3
    argv = cli_train(tmp_path, "--iterations", "20", "--max-nonfinite-updates", "3")
    assert cli(argv[3:]) == 2  # in-process (the poisoned sampler), from "train" on
    err = capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    assert "3 consecutive updates were skipped as non-finite (iterations 3..5" in err
    assert "observation or reward" in err and "--max-nonfinite-updates" in err
    assert f"ckpt_00000002.pt (iteration 2), holds the last good state: --resume {run_dir}" in err
    assert saved_iterations(run_dir) == [1, 2]
    assert scalars(run_dir, "trpo/nonfinite_skipped") == {1: 0.0, 2: 0.0, 3: 1.0, 4: 1.0,
                                                          5: 1.0}
    assert not (run_dir / "eval.json").exists()


# --------------------------------------------------------------------------------------------
# metarl supervised
# --------------------------------------------------------------------------------------------

SUPERVISED = ["--meta-batch", "4", "--eval-tasks", "10", "--eval-inner-steps", "1",
              "--no-progress", "--log-every", "1", "--checkpoint-every", "1"]


def poison_batches(monkeypatch: pytest.MonkeyPatch, poisoned: Callable[[int], bool]) -> None:
    class PoisonedBatches(TrainSampler):
        """The real meta-batches; batch ``n`` (1-based) gets one NaN query label."""

        count = 0

        def sample(self, device: torch.device) -> tuple[Any, Any]:
            support, query = super().sample(device)
            self.count += 1
            if poisoned(self.count):
                query["y"][0, 0, 0] = NAN
            return support, query

    monkeypatch.setattr(sup_train, "TrainSampler", PoisonedBatches)


def test_supervised_skips_one_nonfinite_step_and_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        scalars: Scalars) -> None:
    poison_batches(monkeypatch, lambda n: n == 3)
    assert cli(["supervised", "--run-root", str(tmp_path), *SUPERVISED, "--iterations",
                "5"]) == 0
    (run_dir,) = tmp_path.iterdir()
    skipped = scalars(run_dir, "train/nonfinite_skipped")
    assert skipped == {1: 0.0, 2: 0.0, 3: 1.0, 4: 0.0, 5: 0.0}
    assert "warning: iteration 3: the update was skipped" in capsys.readouterr().err
    assert (run_dir / "eval.json").is_file()


def test_supervised_run_that_stays_nonfinite_stops_with_a_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        scalars: Scalars, saved_iterations: Saved) -> None:
    poison_batches(monkeypatch, lambda n: n >= 3)
    assert cli(["supervised", "--run-root", str(tmp_path), *SUPERVISED, "--iterations", "50",
                "--max-nonfinite-updates", "4"]) == 2
    err = capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    assert "4 consecutive updates were skipped as non-finite (iterations 3..6" in err
    assert "--clip-norm" in err and "ckpt_00000002.pt (iteration 2)" in err
    assert saved_iterations(run_dir) == [1, 2]
    assert scalars(run_dir, "train/nonfinite_skipped")[6] == 1.0
