"""One training run's live objects: folder, env, learner, sampler, logger; its checkpoints
(every RNG state included, so a resumed run continues the same trajectory) and Ctrl-C."""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from metarl.envs.batched import BatchedTaskEnv
from metarl.logging import Logger, write_json
from metarl.rl.config import TrainConfig, config_to_json
from metarl.rl.factories import build_learner, make_env, make_train_sampler
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.sampler import Sampler
from metarl.runs import CheckpointSchedule, load_latest, make_run_dir, save_checkpoint
from metarl.utils import rng_state, seed_everything, set_rng_state

CONSOLE_KEYS = ("adapt/return_step0", "adapt/return_step1", "trpo/kl", "time/env_steps_per_s",
                "adapt/success_step0", "adapt/success_step1")


@dataclass
class Run:
    """The live objects of one training run."""

    cfg: TrainConfig
    run_dir: Path
    learner: TrpoMetaLearner
    sampler: Sampler
    task_env: BatchedTaskEnv
    logger: Logger
    schedule: CheckpointSchedule
    iteration: int = 0
    env_steps: int = 0
    wall_s: float = 0.0
    resumed_from: Path | None = None

    def close(self) -> None:
        self.logger.close()
        self.sampler.close()
        self.task_env.close()


def start_run(cfg: TrainConfig) -> Run:
    """A fresh run folder (with ``config.json``) or the resumed one, its pieces seeded/restored."""
    resumed: tuple[Path, dict[str, Any]] | None = None
    if cfg.resume is not None:
        run_dir = Path(cfg.resume)
        resumed = load_latest(run_dir)
    else:
        run_dir = make_run_dir(cfg.run_root, cfg.env, cfg.algo, cfg.seed)
        write_json(run_dir / "config.json", config_to_json(cfg))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    # Tasks come from a distribution's own generator, never a global RNG: a one-env copy
    # whose ``np_random`` is seeded by ``reset(seed=)`` and saved in every checkpoint.
    task_env = make_env(cfg, 1, cfg.seed)
    task_env.reset(seed=cfg.seed)
    learner = build_learner(cfg, task_env)
    sampler = make_train_sampler(cfg)
    schedule = CheckpointSchedule(cfg.checkpoint_every, cfg.checkpoint_minutes)
    if resumed is None:
        logger = Logger(run_dir, console=not cfg.progress, console_keys=CONSOLE_KEYS)
        logger.log_hparams({**config_to_json(cfg), **dataclasses.asdict(cfg.hp)})
        return Run(cfg, run_dir, learner, sampler, task_env, logger, schedule)
    path, state = resumed
    restore(state, learner, task_env)
    iteration = int(state["iteration"])
    logger = Logger(run_dir, console=not cfg.progress, console_keys=CONSOLE_KEYS,
                    purge_step=iteration + 1)
    return Run(cfg, run_dir, learner, sampler, task_env, logger, schedule, iteration,
               int(state["env_steps"]), float(state["wall_s"]), resumed_from=path)


def checkpoint_state(run: Run) -> dict[str, Any]:
    """Everything a resumed run needs to continue the same trajectory."""
    return {"iteration": run.iteration, "env_steps": run.env_steps, "wall_s": run.wall_s,
            "learner": run.learner.state_dict(), "rng": rng_state(),
            "task_rng": run.task_env.np_random.bit_generator.state,
            "config": dataclasses.asdict(run.cfg)}


def save(run: Run) -> Path:
    """Checkpoint ``run`` now (atomic) and restart the checkpoint clock."""
    path = save_checkpoint(run.run_dir, run.iteration, checkpoint_state(run))
    run.schedule.saved()
    return path


def restore(state: dict[str, Any], learner: TrpoMetaLearner, task_env: BatchedTaskEnv) -> None:
    """Load a checkpoint's learner, global RNGs and task generator."""
    learner.load_state_dict(state["learner"])
    set_rng_state(state["rng"])
    task_env.np_random.bit_generator.state = state["task_rng"]


class StopFlag:
    """Ctrl-C (SIGINT) sets ``requested``; the loop then checkpoints at the end of the
    iteration and exits. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to "
              "abort at once)", file=sys.stderr, flush=True)


@contextmanager
def sigint_flag() -> Iterator[StopFlag]:
    """Install :class:`StopFlag` as the SIGINT handler (main thread only) for the block."""
    flag = StopFlag()
    try:
        previous = signal.signal(signal.SIGINT, flag)
    except ValueError:  # not the main thread: Ctrl-C keeps its default behaviour
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
