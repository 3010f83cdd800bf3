"""``metarl supervised``: meta-train on few-shot regression, checkpoint, resume, evaluate.

The meta-step is :meth:`metarl.supervised.trainer.MetaLearner.step` (one vmap over the
meta-batch, Finn et al., 2017). Checkpoints hold the meta-parameters, the learned inner
lrs, Adam's state, and the training data generator's state, so a resumed run is
bit-identical to an uninterrupted one on the same device.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from metarl.core import resolve_device
from metarl.logging import Logger, write_json
from metarl.supervised.config import SupervisedConfig, SupervisedEvalConfig
from metarl.supervised.evaluate import log_eval, summarize, task_curves, write_eval
from metarl.supervised.models import build_model
from metarl.supervised.tasks import Batch, LinearTaskPool, sample_linear, sample_sinusoid
from metarl.supervised.trainer import MetaLearner
from metarl.utils import (
    latest_checkpoint,
    load_checkpoint,
    make_run_dir,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)

__all__ = ["SupervisedConfig", "SupervisedEvalConfig", "evaluate_main", "evaluate_run", "main"]

POOL_SEED_OFFSET = 1_000_003  # the linear task pool has its own stream, apart from the batches


class TrainSampler:
    """Training meta-batches drawn from one ``torch.Generator`` (its state is checkpointed)."""

    def __init__(self, cfg: SupervisedConfig) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.pool: LinearTaskPool | None = None
        if cfg.task == "linear":
            pool_gen = torch.Generator().manual_seed(cfg.seed + POOL_SEED_OFFSET)
            self.pool = LinearTaskPool(cfg.linear_spec, cfg.m, cfg.n_t, cfg.n_v, pool_gen)

    def sample(self, device: torch.device) -> tuple[Batch, Batch]:
        """One meta-batch of support and query sets on ``device``."""
        if self.pool is not None:
            support, query = self.pool.sample(self.cfg.meta_batch, self.generator)
        else:
            support, query = sample_sinusoid(self.cfg.meta_batch, self.cfg.shots,
                                             self.cfg.query, self.generator)
        return _to(support, device), _to(query, device)


def heldout_tasks(cfg: SupervisedConfig, tasks: int, seed: int) -> tuple[Batch, Batch]:
    """Fresh held-out tasks, never drawn by training (own seed; linear: not from the pool)."""
    generator = torch.Generator().manual_seed(seed)
    if cfg.task == "linear":
        return sample_linear(tasks, cfg.linear_spec, cfg.n_t, cfg.n_v, generator)
    return sample_sinusoid(tasks, cfg.shots, cfg.eval_query_size, generator)


def _to(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) for k, v in batch.items()}


def build_learner(cfg: SupervisedConfig, device: torch.device) -> MetaLearner:
    """Seed torch, build the model and the learner of ``cfg``."""
    seed_everything(cfg.seed)
    return MetaLearner(build_model(cfg.task, cfg.p), algo=cfg.algo, inner_steps=cfg.inner_steps,
                       inner_lr=cfg.inner_lr, lr_kind=cfg.lr_kind,
                       head_selector=cfg.head_selector, outer_lr=cfg.lr,
                       total_steps=cfg.iterations, cosine=cfg.cosine, clip_norm=cfg.clip_norm,
                       msl=cfg.msl, msl_anneal_epochs=cfg.msl_anneal_epochs,
                       first_order_until=cfg.first_order_until,
                       epoch_length=cfg.epoch_length, device=device)


def evaluate_learner(cfg: SupervisedConfig, learner: MetaLearner, *, tasks: int,
                     steps: int, inner_lr: float | None, seed: int) -> dict[str, Any]:
    """Query MSE after 0..``steps`` inner steps on ``tasks`` held-out tasks: mean and 95% CI."""
    support, query = heldout_tasks(cfg, tasks, seed)
    rule = learner.rule if inner_lr is None else inner_lr
    curves = task_curves(learner.params, learner.loss_fn, _to(support, learner.device),
                         _to(query, learner.device), steps=steps, rule=rule, keys=learner.keys)
    result: dict[str, Any] = {"task": cfg.env_name, "algo": cfg.algo, "tasks": tasks,
                              "inner_steps": steps, "eval_seed": seed,
                              "inner_lr": "training rule" if inner_lr is None else inner_lr}
    result.update(summarize(curves))
    result["final_mse"], result["final_ci95"] = result["mse_mean"][-1], result["mse_ci95"][-1]
    return result


def _config_from_json(path: Path) -> SupervisedConfig:
    saved = json.loads(path.read_text())
    names = {f.name for f in dataclasses.fields(SupervisedConfig)}
    return SupervisedConfig(**{k: v for k, v in saved.items() if k in names})


def _write_config(run_dir: Path, cfg: SupervisedConfig) -> None:
    write_json(run_dir / "config.json", {"kind": "supervised", **dataclasses.asdict(cfg)})


def _start(cfg: SupervisedConfig) -> tuple[SupervisedConfig, Path, dict[str, Any] | None]:
    """The effective config, the run folder and the checkpoint to resume (if any)."""
    if cfg.resume is None:
        run_dir = make_run_dir(cfg.run_root, cfg.env_name, cfg.algo, cfg.seed)
        _write_config(run_dir, cfg)
        return cfg, run_dir, None
    run_dir = Path(cfg.resume)
    saved = _config_from_json(run_dir / "config.json")
    cfg = dataclasses.replace(saved, iterations=cfg.iterations, device=cfg.device,
                              progress=cfg.progress, resume=cfg.resume)
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None  # validated by SupervisedConfig
    state = load_checkpoint(ckpt)
    if state["iteration"] > cfg.iterations:
        raise ValueError(f"iterations must be >= the checkpoint's iteration "
                         f"({state['iteration']}) to resume, got {cfg.iterations}")
    _write_config(run_dir, cfg)
    return cfg, run_dir, state


def _checkpoint(run_dir: Path, iteration: int, learner: MetaLearner,
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


def _train(cfg: SupervisedConfig, run_dir: Path, learner: MetaLearner, sampler: TrainSampler,
           logger: Logger, start: int) -> None:
    window = _Window()
    bar = tqdm(range(start, cfg.iterations), initial=start, total=cfg.iterations,
               disable=not cfg.progress, desc=f"{cfg.algo} {cfg.env_name}", unit="it")
    for iteration in bar:
        support, query = sampler.sample(learner.device)
        window.add(learner.step(support, query, iteration))
        done = iteration + 1
        if done % cfg.log_every == 0 or done == cfg.iterations:
            values = window.flush(logger, done)
            bar.set_postfix(loss=f"{values['train/loss']:.4f}")
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.iterations:
            log_eval(logger, evaluate_learner(cfg, learner, tasks=cfg.eval_tasks,
                                              steps=cfg.eval_inner_steps,
                                              inner_lr=cfg.eval_inner_lr,
                                              seed=cfg.eval_seed), done)
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            _checkpoint(run_dir, done, learner, sampler)
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
    logger = Logger(run_dir, console=False, purge_step=start if state is not None else None)
    if state is None:
        logger.log_hparams(dataclasses.asdict(cfg))
    _train(cfg, run_dir, learner, sampler, logger, start)
    result = evaluate_learner(cfg, learner, tasks=cfg.eval_tasks, steps=cfg.eval_inner_steps,
                              inner_lr=cfg.eval_inner_lr, seed=cfg.eval_seed)
    write_eval(run_dir, {"iteration": cfg.iterations, **result}, cfg.algo, logger,
               cfg.iterations)
    logger.close()
    return run_dir


def evaluate_run(run_dir: str | Path, *, tasks: int = 600, inner_steps: int | None = None,
                 inner_lr: float | None = None, seed: int | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Evaluate a run's latest checkpoint on fresh held-out tasks.

    Writes ``eval.json``, ``eval.png`` and ``eval/*`` TensorBoard scalars into the
    run folder and returns the result (``mse_mean``/``mse_ci95`` per inner step 0..K).
    """
    run_dir = Path(run_dir)
    cfg = _config_from_json(run_dir / "config.json")
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise ValueError(f"run_dir must hold a checkpoint in checkpoints/, got {str(run_dir)!r}")
    state = load_checkpoint(ckpt)
    learner = build_learner(cfg, resolve_device(device))
    learner.load_state_dict(state["learner"])
    result = evaluate_learner(
        cfg, learner, tasks=tasks,
        steps=cfg.eval_inner_steps if inner_steps is None else inner_steps,
        inner_lr=cfg.eval_inner_lr if inner_lr is None else inner_lr,
        seed=cfg.eval_seed if seed is None else seed)
    result = {"iteration": int(state["iteration"]), **result}
    logger = Logger(run_dir, console=False)
    write_eval(run_dir, result, cfg.algo, logger, result["iteration"])
    logger.close()
    return result


def evaluate_main(cfg: SupervisedEvalConfig) -> dict[str, Any]:
    """Entry point of ``metarl supervised-evaluate`` (and ``metarl evaluate RUN_DIR``)."""
    result = evaluate_run(cfg.run_dir, tasks=cfg.tasks, inner_steps=cfg.inner_steps,
                          inner_lr=cfg.inner_lr, seed=cfg.seed, device=cfg.device)
    for k, m in enumerate(result["mse_mean"]):
        print(f"inner step {k:>2}: query MSE {m:.4f} +- {result['mse_ci95'][k]:.4f}, median "
              f"{result['mse_median'][k]:.4f}, diverged {result['diverged'][k]}/{result['tasks']}")
    return result
