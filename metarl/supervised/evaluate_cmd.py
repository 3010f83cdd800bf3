"""``metarl evaluate RUN_DIR`` on a supervised run: fresh held-out tasks, never overwriting.

Each evaluation writes ``RUN_DIR/evaluations/<name>.json`` and ``.png`` and its TensorBoard
scalars in ``RUN_DIR/evaluations/<name>/``; the device is this call's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metarl.core import resolve_device
from metarl.logging import Logger
from metarl.runs import evaluation_paths, load_latest
from metarl.supervised.config import SupervisedEvalConfig, load_config
from metarl.supervised.evaluate import evaluate_learner, format_table, write_eval
from metarl.supervised.train import build_learner

__all__ = ["SupervisedEvalConfig", "evaluate_run", "main"]


def evaluate_run(run_dir: str | Path, *, num_tasks: int = 600, inner_steps: int | None = None,
                 inner_lr: float | None = None, seed: int | None = None,
                 device: str = "cpu", out: str | None = None,
                 nil: bool = False, bn_eval: str | None = None) -> dict[str, Any]:
    """Evaluate a run's newest readable checkpoint on fresh held-out tasks.

    Writes ``evaluations/<name>.json`` and ``.png`` (``name``: ``out`` or ``iter<N>-<time>``)
    and TensorBoard scalars in ``evaluations/<name>/``; returns the result (``mse_mean`` /
    ``mse_ci95`` per inner step 0..K, ``path``: the JSON file).
    """
    cfg = load_config(run_dir, device=device,
                      **({} if bn_eval is None else {"bn_eval": bn_eval}))
    _, state = load_latest(run_dir)
    learner = build_learner(cfg, resolve_device(device))
    learner.load_state_dict(state["learner"])
    iteration = int(state["iteration"])
    result = evaluate_learner(
        cfg, learner, tasks=num_tasks,
        steps=cfg.eval_inner_steps if inner_steps is None else inner_steps,
        inner_lr=cfg.eval_inner_lr if inner_lr is None else inner_lr,
        seed=cfg.eval_seed if seed is None else seed, iteration=iteration, nil=nil)
    stem = evaluation_paths(run_dir, out, iteration)
    logger = Logger(stem, console=False)
    try:
        path = write_eval(stem.parent, stem.name, result, logger, iteration)
    finally:
        logger.close()
    return {**result, "path": str(path)}


def main(cfg: SupervisedEvalConfig) -> dict[str, Any]:
    """Entry point of ``metarl evaluate RUN_DIR`` for supervised runs."""
    result = evaluate_run(cfg.run_dir, num_tasks=cfg.num_tasks, inner_steps=cfg.inner_steps,
                          inner_lr=cfg.inner_lr, seed=cfg.seed, device=cfg.device, out=cfg.out,
                          nil=cfg.nil, bn_eval=cfg.bn_eval)
    print(f"{result['task']} {result['algo']}, iteration {result['iteration']}: "
          f"{result['tasks']} held-out tasks, inner lr {result['inner_lr']}\n"
          f"{format_table(result)}\nwrote {result['path']}")
    return result
