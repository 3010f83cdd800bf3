"""Held-out evaluation: query MSE after 0..K inner steps on fresh tasks.

The protocol of Finn et al. (2017, sec. 5.1): adapt the meta-learned parameters to each
held-out task's support set with K gradient steps and measure the query MSE after every
step; report the mean over tasks and its 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.core import Loss, Params, Rule, adapt_trajectory, loss_at
from metarl.logging import Logger, write_json
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.data import heldout_tasks, to_device
from metarl.supervised.fewshot import ClassificationMetaLearner
from metarl.supervised.fewshot_eval import evaluate_classifier
from metarl.supervised.tasks import Batch
from metarl.supervised.trainer import SupervisedMetaLearner
from metarl.utils import mean_ci95, plot_adaptation


def task_curves(params: Params, loss_fn: Loss, support: Batch, query: Batch, *, steps: int,
                rule: Rule, keys: Sequence[str], chunk: int = 200) -> torch.Tensor:
    """Per-task query losses after 0..``steps`` inner steps, shape ``(T, steps + 1)``.

    Tasks are adapted ``chunk`` at a time with ``torch.func.vmap``; nothing is kept for an
    outer backward pass.
    """
    detached = {k: v.detach() for k, v in params.items()}

    def one_task(sup: Batch, qry: Batch) -> torch.Tensor:
        trajectory = adapt_trajectory(detached, loss_fn, [sup] * steps, rule=rule, keys=keys,
                                      first_order=True)
        return torch.stack([loss_at(loss_fn, i)(p, qry) for i, p in enumerate(trajectory)])

    n_tasks = support["x"].shape[0]
    rows = []
    for start in range(0, n_tasks, chunk):
        part = slice(start, start + chunk)
        sup = {k: v[part] for k, v in support.items()}
        qry = {k: v[part] for k, v in query.items()}
        with torch.no_grad():  # torch.func.grad inside adapt ignores the outer no_grad
            rows.append(torch.func.vmap(one_task)(sup, qry))
    return torch.cat(rows)


def summarize(curves: torch.Tensor) -> dict[str, list[float]]:
    """Per inner step of ``(T, K + 1)`` per-task losses: mean and 95% CI half-width over every
    task, the median, and ``diverged``, the number of tasks whose loss is not finite.

    A few held-out tasks can diverge when evaluation takes more inner steps than training
    did; their NaN/Inf makes the mean NaN, so the median and the count say how many.
    """
    values = curves.double().cpu().numpy()
    stats = [mean_ci95(values[:, k]) for k in range(values.shape[1])]
    finite = np.isfinite(values)
    ranked = np.where(finite, values, np.inf)  # a diverged task ranks as infinitely bad
    return {"mse_mean": [m for m, _ in stats], "mse_ci95": [c for _, c in stats],
            "mse_median": [float(np.median(ranked[:, k])) for k in range(values.shape[1])],
            "diverged": [int((~finite[:, k]).sum()) for k in range(values.shape[1])]}


def evaluate_learner(cfg: SupervisedConfig, learner: SupervisedMetaLearner, *, tasks: int,
                     steps: int, inner_lr: float | None, seed: int,
                     iteration: int, nil: bool = False) -> dict[str, Any]:
    """Query MSE (classification: accuracy, :mod:`metarl.supervised.fewshot_eval`) after
    0..``steps`` inner steps on ``tasks`` held-out tasks: mean and 95% CI."""
    if isinstance(learner, ClassificationMetaLearner):
        return evaluate_classifier(cfg, learner, tasks=tasks, steps=steps, inner_lr=inner_lr,
                                   seed=seed, iteration=iteration, nil=nil)
    support, query = heldout_tasks(cfg, tasks, seed)
    rule = learner.rule if inner_lr is None else inner_lr
    curves = task_curves(learner.params, learner.loss_fn, to_device(support, learner.device),
                         to_device(query, learner.device), steps=steps, rule=rule,
                         keys=learner.keys)
    result: dict[str, Any] = {"iteration": iteration, "task": cfg.env_name, "algo": cfg.algo,
                              "tasks": tasks, "inner_steps": steps, "eval_seed": seed,
                              "inner_lr": "training rule" if inner_lr is None else inner_lr}
    result.update(summarize(curves))
    result["final_mse"], result["final_ci95"] = result["mse_mean"][-1], result["mse_ci95"][-1]
    return result


def write_eval(folder: Path, stem: str, result: dict[str, Any], logger: Logger | None,
               step: int) -> Path:
    """Write ``<stem>.json`` and ``<stem>.png`` into ``folder``; log ``eval/*`` scalars."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.json"
    write_json(path, result)
    lr, metric = result["inner_lr"], _metric(result)
    plot_adaptation({f"{result['algo']} (inner lr {lr})": (result[f"{metric}_mean"],
                                                           result[f"{metric}_ci95"])},
                    path.with_suffix(".png"),
                    ylabel="query accuracy" if metric == "accuracy" else "query MSE",
                    title=f"{result['task']}, iteration {result['iteration']}: "
                          f"{result['tasks']} held-out tasks")
    if logger is not None:
        log_eval(logger, result, step)
    return path


def _metric(result: dict[str, Any]) -> str:
    """``accuracy`` for classification results, ``mse`` for regression ones."""
    return "accuracy" if result.get("metric") == "accuracy" else "mse"


def format_accuracy_table(result: dict[str, Any]) -> str:
    """A Markdown table of the query accuracy per inner step (mean +- 95% CI), and NIL's."""
    rows = [f"| {k} | {100 * m:.2f} +- {100 * c:.2f} |"
            for k, (m, c) in enumerate(zip(result["accuracy_mean"], result["accuracy_ci95"],
                                           strict=True))]
    if "nil_accuracy" in result:
        rows.append(f"| NIL (no inner loop, no head) | {100 * result['nil_accuracy']:.2f} +- "
                    f"{100 * result['nil_ci95']:.2f} |")
    return "\n".join(["| inner steps | query accuracy % (mean +- 95% CI) |", "|---|---|",
                      *rows])


def format_table(result: dict[str, Any]) -> str:
    """A Markdown table of the query MSE per inner step (mean +- 95% CI, median, diverged);
    of the accuracy for classification results."""
    if _metric(result) == "accuracy":
        return format_accuracy_table(result)
    rows = [f"| {k} | {m:.4f} +- {c:.4f} | {md:.4f} | {d} / {result['tasks']} |"
            for k, (m, c, md, d) in enumerate(zip(result["mse_mean"], result["mse_ci95"],
                                                  result["mse_median"], result["diverged"],
                                                  strict=True))]
    return "\n".join(["| inner steps | query MSE (mean +- 95% CI) | median | diverged |",
                      "|---|---|---|---|", *rows])


def log_eval(logger: Logger, result: dict[str, Any], step: int) -> None:
    """Record ``eval/mse_step{k}``, ``eval/mse_ci95_step{k}``, ``eval/mse_median_step{k}`` and
    ``eval/diverged_step{k}``, and dump them at ``step`` (classification:
    ``eval/accuracy_step{k}``, ``eval/accuracy_ci95_step{k}``, ``eval/nil_accuracy``)."""
    if _metric(result) == "accuracy":
        for k, (m, c) in enumerate(zip(result["accuracy_mean"], result["accuracy_ci95"],
                                       strict=True)):
            logger.record(f"eval/accuracy_step{k}", m)
            logger.record(f"eval/accuracy_ci95_step{k}", c)
        if "nil_accuracy" in result:
            logger.record("eval/nil_accuracy", result["nil_accuracy"])
        logger.dump(step)
        return
    for key in ("mse", "mse_ci95", "mse_median", "diverged"):
        values = result["mse_mean" if key == "mse" else key]
        for k, value in enumerate(values):
            logger.record(f"eval/{key}_step{k}", value)
    logger.dump(step)
