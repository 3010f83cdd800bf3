"""``metarl supervised``: meta-train on few-shot regression, checkpoint, resume, evaluate.

The meta-step is :meth:`SupervisedMetaLearner.step` (one vmap over the meta-batch, Finn et
al., 2017). Checkpoints (after the first iteration, then by iterations or minutes) hold the
meta-parameters, the learned inner lrs, Adam's state and the training data generator's
state, so a resumed run is bit-identical to an uninterrupted one on the same device.

Console convention (shared with ``metarl train``): a progress bar on stderr, or with
``--no-progress`` one line per log window on stdout; the final results table and the run
folder on stdout; errors on stderr.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metarl.core import resolve_device
from metarl.logging import Logger, write_json
from metarl.runs import (
    CheckpointSchedule,
    NonfiniteGuard,
    RunError,
    load_latest,
    make_run_dir,
    save_checkpoint,
)
from metarl.supervised.config import SupervisedConfig, config_to_json, load_config
from metarl.supervised.data import TrainSampler
from metarl.supervised.evaluate import evaluate_learner, format_table, log_eval, write_eval
from metarl.supervised.fewshot import ClassificationMetaLearner, build_conv4
from metarl.supervised.fewshot_data import omniglot_split
from metarl.supervised.models import build_model
from metarl.supervised.trainer import SupervisedMetaLearner
from metarl.utils import rng_state, seed_everything, set_rng_state

__all__ = ["SupervisedConfig", "build_learner", "main"]

CONSOLE_KEYS = ("train/loss", "train/query_loss_step0", "time/iters_per_s")
ADVICE = ("check the task data, the inner lr (--inner-lr) and the outer lr (--lr), or clip "
          "the meta-gradient (--clip-norm)")


def build_learner(cfg: SupervisedConfig, device: torch.device) -> SupervisedMetaLearner:
    """Seed torch, build the model and the learner of ``cfg``."""
    seed_everything(cfg.seed)
    options: dict[str, Any] = dict(
        algorithm=cfg.algorithm, inner_steps=cfg.inner_steps, inner_lr=cfg.inner_lr,
        head_selector=cfg.head_selector, outer_lr=cfg.lr, total_steps=cfg.iterations,
        cosine=cfg.use_cosine, clip_norm=cfg.clip_norm, msl=cfg.use_msl,
        msl_anneal_epochs=cfg.msl_anneal_epochs, first_order_until=cfg.da_epochs,
        epoch_length=cfg.epoch_length, device=device, bootstrap=cfg.bootstrap,
        outer_momentum=cfg.outer_momentum, compile=cfg.compile)
    if cfg.is_classification:
        spec = cfg.dataset
        model = build_conv4(ways=cfg.ways, channels=spec.channels, image_size=spec.image_size,
                            filters=spec.filters, steps=cfg.inner_steps, bnrs=cfg.use_bnrs,
                            bnwb=cfg.use_bnwb)
        return ClassificationMetaLearner(model, collect_stats=cfg.eval_running_stats,
                                         **options)
    return SupervisedMetaLearner(build_model(cfg.task, cfg.p), **options)


def _start(cfg: SupervisedConfig) -> tuple[SupervisedConfig, Path, dict[str, Any] | None]:
    """The effective config, the run folder and the checkpoint to resume (if any)."""
    if cfg.resume is None:
        run_dir = make_run_dir(cfg.run_root, cfg.env_name, cfg.algo, cfg.seed)
        write_json(run_dir / "config.json", config_to_json(cfg))
        if cfg.task == "omniglot":  # the character ids split_seed gives, for the record
            write_json(run_dir / "split.json", omniglot_split(cfg.split_seed).to_json())
        return cfg, run_dir, None
    run_dir = Path(cfg.resume)
    cfg = dataclasses.replace(load_config(run_dir, device=cfg.device, progress=cfg.progress,
                                          compile=cfg.compile),
                              iterations=cfg.iterations, resume=cfg.resume)
    path, state = load_latest(run_dir)
    if state["iteration"] > cfg.iterations:
        raise RunError(f"iterations must be >= the checkpoint's iteration "
                         f"({state['iteration']}) to resume, got {cfg.iterations}")
    write_json(run_dir / "config.json", config_to_json(cfg))
    tqdm.write(f"resuming {run_dir} from iteration {state['iteration']} ({path.name}); "
               f"training to iteration {cfg.iterations}", file=sys.stdout)
    return cfg, run_dir, state


def _checkpoint(run_dir: Path, iteration: int, learner: SupervisedMetaLearner,
                sampler: TrainSampler) -> None:
    save_checkpoint(run_dir, iteration, {"iteration": iteration, "learner": learner.state_dict(),
                                         "data_rng": sampler.generator.get_state(),
                                         "rng": rng_state()})


class _Window:
    """Averages training logs over ``log_every`` iterations for TensorBoard."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.perf_counter()

    def reset(self) -> None:
        self.sums, self.count, self.start = {}, 0, time.perf_counter()

    def add(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def flush(self, logger: Logger, step: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        logger.record_dict({k: v / self.count for k, v in self.sums.items()}, prefix="train/")
        logger.record("time/iters_per_s", self.count / max(elapsed, 1e-9))
        values = logger.dump(step)
        self.reset()
        return values


def _train(cfg: SupervisedConfig, run_dir: Path, learner: SupervisedMetaLearner,
           sampler: TrainSampler, logger: Logger, start: int) -> None:
    window = _Window()
    schedule = CheckpointSchedule(cfg.checkpoint_every, cfg.checkpoint_minutes)
    guard = NonfiniteGuard(cfg.max_nonfinite_updates, run_dir, ADVICE)
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               disable=not cfg.progress, desc=f"{cfg.algo} {cfg.env_name}", unit="it")
    for iteration in bar:
        support, query = sampler.sample(learner.device)
        logs = learner.step(support, query, iteration)
        window.add(logs)
        done = iteration + 1
        if guard.record(bool(logs["nonfinite_skipped"]), done, "a non-finite loss or gradient"):
            window.flush(logger, done)  # train/nonfinite_skipped reaches TensorBoard
            raise guard.error()
        if done % cfg.log_every == 0 or done == cfg.iterations:
            values = window.flush(logger, done)
            bar.set_postfix(loss=f"{values['train/loss']:.4f}")
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iterations:
            log_eval(logger, evaluate_learner(cfg, learner, tasks=cfg.eval_tasks,
                                              steps=cfg.eval_inner_steps,
                                              inner_lr=cfg.eval_inner_lr,
                                              seed=cfg.eval_seed, iteration=done), done)
        if done == cfg.iterations or (guard.clear and schedule.due(done, start + 1)):
            _checkpoint(run_dir, done, learner, sampler)
            schedule.saved()
    bar.close()


def main(cfg: SupervisedConfig) -> Path:
    """Meta-train (or resume) the run of ``cfg``, evaluate it, and return its run folder.

    Writes TensorBoard events, ``config.json``, ``checkpoints/``, ``eval.json`` and
    ``eval.png`` into ``runs/<env>__<algo>__<seed>__<time>/``.
    """
    device = resolve_device(cfg.device)
    cfg, run_dir, state = _start(cfg)
    learner = build_learner(cfg, device)
    sampler = TrainSampler(cfg)
    start = 0
    if state is not None:
        learner.load_state_dict(state["learner"])
        sampler.generator.set_state(state["data_rng"])
        set_rng_state(state["rng"])
        start = int(state["iteration"])
    logger = Logger(run_dir, console=not cfg.progress, console_keys=CONSOLE_KEYS,
                    purge_step=start + 1 if state is not None else None)
    if state is None:
        logger.log_hparams(config_to_json(cfg))
    try:
        _train(cfg, run_dir, learner, sampler, logger, start)
        result = evaluate_learner(cfg, learner, tasks=cfg.eval_tasks,
                                  steps=cfg.eval_inner_steps, inner_lr=cfg.eval_inner_lr,
                                  seed=cfg.eval_seed, iteration=cfg.iterations)
        write_eval(run_dir, "eval", result, logger, cfg.iterations)
    finally:
        logger.close()
    print(f"held-out evaluation at iteration {cfg.iterations} ({cfg.eval_tasks} tasks):\n"
          f"{format_table(result)}\nrun folder: {run_dir}")
    return run_dir
