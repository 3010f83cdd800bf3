"""Meta-objectives: the post-adaptation query loss over a meta-batch of tasks.

The MAML objective (Finn et al., 2017) is the mean over tasks of the query loss after
adapting on the task's support data; MAML++ (Antoniou et al., 2019) replaces it by the
multi-step loss (MSL), a weighted sum of the query losses after every inner step, with
weights annealed toward the final step, and anneals the derivative order (first order
early, second order later). Tasks are batched by one ``torch.func.vmap`` call; the
per-task Python loop is the reference it is tested against. How the meta-gradient flows
through the inner steps is the estimator's business (:mod:`metarl.core.estimators`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from metarl.core.batching import map_tasks, num_tasks
from metarl.core.estimators import Estimator, TaskProblem
from metarl.core.inner import Loss, Rule, check_adapt_args, loss_at
from metarl.core.params import Params


def msl_weights(steps: int, epoch: int, anneal_epochs: int,
                device: torch.device | str | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """MAML++ multi-step-loss weights over inner steps 1..steps (Antoniou et al., 2019).

    Start uniform at ``1/n``; each epoch the non-final weights drop by ``1/n/anneal_epochs``
    down to a floor of ``0.03/n``, and the final weight takes the rest, so the weights
    always sum to 1.

    Args:
        steps: Number of inner steps ``n`` (>= 1).
        epoch: Current epoch (>= 0).
        anneal_epochs: Epochs over which the non-final weights decay (>= 1).
        device: Device of the returned tensor.
        dtype: Floating dtype of the returned tensor (default dtype when ``None``).

    Returns:
        A tensor of shape ``(steps,)``.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if anneal_epochs < 1:
        raise ValueError(f"anneal_epochs must be >= 1, got {anneal_epochs}")
    decay = 1.0 / steps / anneal_epochs
    early = max(1.0 / steps - epoch * decay, 0.03 / steps)
    values = [early] * (steps - 1) + [1.0 - early * (steps - 1)]
    return torch.tensor(values, device=device, dtype=dtype)


def use_first_order(epoch: int, first_order_until: int) -> bool:
    """MAML++ derivative-order annealing: first order for ``epoch < first_order_until``."""
    return epoch < first_order_until


def detached(params: Params) -> Params:
    """``params`` with every tensor detached (values only, no graph)."""
    return {k: v.detach() for k, v in params.items()}


def task_losses(params: Params, problem: TaskProblem, estimator: Estimator,
                first_weighted: int) -> torch.Tensor:
    """Query losses of one task after 0..steps inner steps, shape ``(steps + 1,)``.

    Steps before ``first_weighted`` are evaluated on detached parameters: they are logged,
    not trained on, so they add no backward work.
    """
    trajectory = estimator.trajectory(params, problem)
    losses = [estimator.outer_loss(params, trajectory, i, problem) if i >= first_weighted
              else loss_at(problem.query_loss, i)(detached(p), problem.query)
              for i, p in enumerate(trajectory)]
    return torch.stack(losses)


def _check_weights(step_weights: torch.Tensor | None, steps: int) -> int:
    """Index of the first weighted step in the ``steps + 1`` trajectory."""
    if step_weights is None:
        return steps
    if step_weights.dim() != 1 or step_weights.shape[0] not in (steps, steps + 1):
        raise ValueError(f"step_weights must have shape ({steps},) or ({steps + 1},), "
                         f"got {tuple(step_weights.shape)}")
    return steps + 1 - step_weights.shape[0]


def meta_loss(params: Params, loss_fn: Loss, support: Any, query: Any, *, steps: int,
              rule: Rule, keys: Sequence[str], estimator: Estimator,
              step_weights: torch.Tensor | None = None, vectorize: bool = True,
              query_loss: Loss | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over tasks of the post-adaptation query loss (MAML, Finn et al., 2017).

    Args:
        params: Meta-parameters, shared by all tasks.
        loss_fn: ``loss_fn(params, data) -> scalar`` for one task's data (or a
            :class:`~metarl.core.inner.PerStepLoss`).
        support: Pytree of tensors with a leading task dimension (inner-loop data, used at
            every inner step).
        query: Pytree of tensors with the same leading task dimension (outer data).
        steps: Inner steps.
        rule: Inner learning-rate rule (see :func:`metarl.core.inner.adapt`).
        keys: Adapted keys.
        estimator: How the meta-gradient is formed (:mod:`metarl.core.estimators`).
        step_weights: ``None`` for the final-step loss, or MAML++ MSL weights over steps
            0..steps (length ``steps + 1``) or 1..steps (length ``steps``).
        vectorize: One ``torch.func.vmap`` over tasks (True) or a Python loop (False).
        query_loss: The outer loss when it differs from ``loss_fn``.

    Returns:
        The scalar meta-loss and logs: ``query_losses`` (mean query loss after 0..steps
        steps, detached, shape ``(steps + 1,)``) and ``query_loss_step{i}`` scalars.
    """
    first_weighted = _check_weights(step_weights, steps)
    n_tasks = num_tasks(support, "support")
    if num_tasks(query, "query") != n_tasks:
        raise ValueError(f"query must have the same number of tasks as support ({n_tasks})")
    check_adapt_args(params, keys, rule, steps)
    outer = loss_fn if query_loss is None else query_loss
    key_tuple = tuple(keys)

    def one_task(p: Params, sup: Any, qry: Any) -> torch.Tensor:
        problem = TaskProblem(loss_fn, [sup] * steps, outer, qry, rule, key_tuple)
        return task_losses(p, problem, estimator, first_weighted)

    per_task = map_tasks(one_task, (params, support, query), (None, 0, 0), vectorize)
    means = per_task.mean(dim=0)
    if step_weights is None:
        loss = means[-1]
    else:
        loss = (step_weights.to(means) * means[first_weighted:]).sum()
    return loss, _logs(means)


def _logs(means: torch.Tensor) -> dict[str, torch.Tensor]:
    detached_means = means.detach()
    logs = {f"query_loss_step{i}": v for i, v in enumerate(detached_means)}
    logs["query_losses"] = detached_means
    return logs
