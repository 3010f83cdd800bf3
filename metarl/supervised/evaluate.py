"""Held-out evaluation: query MSE after 0..K inner steps on fresh tasks.

The protocol of Finn et al. (2017, sec. 5.1): adapt the meta-learned parameters to each
held-out task's support set with K gradient steps and measure the query MSE after every
step; report the mean over tasks and its 95% confidence interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.core import InnerLR, Params, adapt
from metarl.logging import Logger, write_json
from metarl.supervised.tasks import Batch
from metarl.utils import mean_ci95, plot_adaptation

LossFn = Callable[[Params, Batch], torch.Tensor]


def task_curves(params: Params, loss_fn: LossFn, support: Batch, query: Batch, *, steps: int,
                rule: InnerLR | float, keys: Sequence[str], chunk: int = 200) -> torch.Tensor:
    """Per-task query losses after 0..``steps`` inner steps, shape ``(T, steps + 1)``.

    Tasks are adapted ``chunk`` at a time with ``torch.func.vmap``; nothing is kept for an
    outer backward pass.
    """
    detached = {k: v.detach() for k, v in params.items()}

    def one_task(sup: Batch, qry: Batch) -> torch.Tensor:
        trajectory = adapt(detached, loss_fn, sup, steps=steps, rule=rule, keys=keys,
                           first_order=True, return_trajectory=True)
        assert isinstance(trajectory, list)
        return torch.stack([loss_fn(p, qry) for p in trajectory])

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


def write_eval(run_dir: Path, result: dict[str, Any], label: str, logger: Logger | None,
               step: int) -> None:
    """Write ``eval.json`` and ``eval.png`` into ``run_dir``; log ``eval/*`` scalars."""
    write_json(run_dir / "eval.json", result)
    plot_adaptation({label: (result["mse_mean"], result["mse_ci95"])},
                    run_dir / "eval.png", title=f"{label}: held-out adaptation",
                    ylabel="query MSE")
    if logger is not None:
        log_eval(logger, result, step)


def log_eval(logger: Logger, result: dict[str, Any], step: int) -> None:
    """Record ``eval/mse_step{k}``, ``eval/mse_ci95_step{k}``, ``eval/mse_median_step{k}`` and
    ``eval/diverged_step{k}``, and dump them at ``step``."""
    for key in ("mse", "mse_ci95", "mse_median", "diverged"):
        values = result["mse_mean" if key == "mse" else key]
        for k, value in enumerate(values):
            logger.record(f"eval/{key}_step{k}", value)
    logger.dump(step)
