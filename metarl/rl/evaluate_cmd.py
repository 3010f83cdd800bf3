"""``metarl evaluate RUN_DIR``: evaluate a meta-RL run's latest checkpoint on held-out tasks.

The outputs never touch the run's own results: each evaluation writes
``RUN_DIR/evaluations/<name>.json`` and ``.png`` and its TensorBoard scalars in
``RUN_DIR/evaluations/<name>/`` (a separate run in TensorBoard), ``<name>`` being ``--out``
or ``iter<N>-<time>``. The device is this call's: a run trained on CUDA evaluates on a CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from metarl.core import resolve_device
from metarl.logging import Logger
from metarl.options import Device, EvalName, OptFloat, OptInt, RunDir
from metarl.rl.config import TrainConfig, load_config
from metarl.rl.evaluate import evaluate, format_table, held_out_tasks, write_eval
from metarl.rl.factories import build_learner, make_env
from metarl.rl.learner import TrpoMetaLearner
from metarl.runs import check_run_dir, evaluation_paths, load_latest
from metarl.utils import EVAL_SEED_BASE


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a run's adaptation on held-out tasks (writes RUN_DIR/evaluations/<name>.*)."""

    run_dir: RunDir
    """The run folder (its latest checkpoint is evaluated)."""
    tasks: Annotated[str | None, tyro.conf.arg(metavar="FILE")] = None
    """JSON task file (metarl.envs.core.tasks_to_json format); default: the test split."""
    num_tasks: OptInt = None
    """Held-out tasks from the test split (without --tasks); default: the run's eval_tasks."""
    inner_steps: OptInt = None
    """Inner steps K (returns after 0..K); default: the run's eval_inner_steps."""
    inner_lr: OptFloat = None
    """Evaluation inner lr (any finite sign); default: the run's eval_inner_lr or rule."""
    seeds: OptInt = None
    """Number of evaluation seeds; default: the run's eval_seeds."""
    episodes_per_task: OptInt = None
    """Episodes per task per step; default: the run's episodes_per_task."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto (this call's, whatever the run was trained on)."""
    out: EvalName = None
    """Name of this evaluation's outputs in RUN_DIR/evaluations/ (default: iter<N>-<time>);
    an existing name is refused, never overwritten."""

    def __post_init__(self) -> None:
        check_run_dir("run_dir", self.run_dir)
        load_config(self.run_dir)  # raises for a run of another kind
        for name in ("num_tasks", "seeds", "episodes_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value}")
        if self.inner_steps is not None and self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {self.inner_steps}")
        if self.inner_lr is not None and not math.isfinite(self.inner_lr):
            raise ValueError(f"inner_lr must be a finite number, got {self.inner_lr}")
        if self.tasks is not None and self.num_tasks is not None:
            raise ValueError("num_tasks applies to the test split: give --tasks or "
                             "--num-tasks, not both")
        resolve_device(self.device)
        if self.out is not None:
            evaluation_paths(self.run_dir, self.out, 0)  # a taken name fails now
        self.task_list()  # parses and range-checks the file before any work

    def task_list(self) -> list[Any] | None:
        """The tasks of ``--tasks`` (validated), or None for the test split."""
        if self.tasks is None:
            return None
        from metarl.envs.core import tasks_from_json

        if not Path(self.tasks).is_file():
            raise ValueError(f"tasks must be a JSON task file, got {self.tasks!r} (not found)")
        try:
            tasks = tasks_from_json(self.tasks)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"tasks: {self.tasks!r} is not a valid task file: {err}") from err
        if not tasks:
            raise ValueError(f"tasks must hold at least one task, got an empty list in "
                             f"{self.tasks!r}")
        _check_task_types(tasks, load_config(self.run_dir), self.tasks)
        return tasks


def _check_task_types(tasks: Sequence[Any], cfg: TrainConfig, path: str) -> None:
    expected = type(held_out_tasks(cfg, 1)[0])
    for task in tasks:
        if type(task) is not expected:
            raise ValueError(f"tasks in {path!r} must be {expected.__name__} tasks (the run's "
                             f"distribution {cfg.env}), got a {type(task).__name__}")


def load_learner(run_dir: str | Path, device: str) -> tuple[TrpoMetaLearner, TrainConfig, int]:
    """The learner of ``run_dir``'s newest readable checkpoint on ``device``, the run's config
    (with this device) and the checkpoint's iteration."""
    cfg = load_config(run_dir, device=device)
    _, state = load_latest(run_dir)
    probe = make_env(cfg, 1, None)
    try:
        learner = build_learner(cfg, probe)
    finally:
        probe.close()
    learner.load_state_dict(state["learner"])
    return learner, cfg, int(state["iteration"])


def main(cfg: EvalConfig) -> Path:
    """Evaluate ``cfg.run_dir``; write ``evaluations/<name>.json|.png`` and TB scalars."""
    learner, run_cfg, iteration = load_learner(cfg.run_dir, cfg.device)
    hp = run_cfg.hp
    tasks = cfg.task_list() or held_out_tasks(run_cfg, cfg.num_tasks or hp.eval_tasks)
    seeds = [EVAL_SEED_BASE + s for s in range(cfg.seeds or hp.eval_seeds)]
    inner_lr = hp.eval_inner_lr if cfg.inner_lr is None else cfg.inner_lr
    inner_steps = hp.eval_inner_steps if cfg.inner_steps is None else cfg.inner_steps
    result = evaluate(learner, run_cfg, tasks, inner_steps=inner_steps, inner_lr=inner_lr,
                      seeds=seeds, episodes_per_task=cfg.episodes_per_task or
                      hp.episodes_per_task, device=cfg.device, iteration=iteration)
    stem = evaluation_paths(cfg.run_dir, cfg.out, iteration)
    logger = Logger(stem, console=False)
    try:
        path = write_eval(result, stem.parent, logger=logger, step=iteration, stem=stem.name)
    finally:
        logger.close()
    print(f"{run_cfg.env} {run_cfg.algo}, iteration {iteration}: {len(tasks)} tasks x "
          f"{len(seeds)} seeds, inner lr {result.lr_label}\n{format_table(result)}\n"
          f"wrote {path}")
    return path
