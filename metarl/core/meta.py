"""Meta-objectives: the post-adaptation query loss over a meta-batch of tasks.

The MAML objective (Finn et al., 2017) is the mean over tasks of the query loss after
adapting on the task's support data; MAML++ (Antoniou et al., 2019) replaces it by the
multi-step loss (MSL), a weighted sum of the query losses after every inner step, with
weights annealed toward the final step, and anneals the derivative order (first order
early, second order later). Tasks are batched by one ``torch.func.vmap`` call; the
per-task Python loop is the reference it is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree

from metarl.core.inner import InnerLR, LossFn, adapt
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


def _detached(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}


def _task_losses(params: Params, support: Any, query: Any, loss_fn: LossFn, steps: int,
                 rule: InnerLR | float, keys: Sequence[str], first_order: bool,
                 first_weighted: int) -> torch.Tensor:
    """Query losses of one task after 0..steps inner steps, shape ``(steps + 1,)``.

    Steps before ``first_weighted`` are evaluated on detached parameters: they are logged,
    not trained on, so they add no backward work.
    """
    trajectory = adapt(params, loss_fn, support, steps=steps, rule=rule, keys=keys,
                       first_order=first_order, return_trajectory=True)
    assert isinstance(trajectory, list)
    losses = [loss_fn(p if i >= first_weighted else _detached(p), query)
              for i, p in enumerate(trajectory)]
    return torch.stack(losses)


def num_tasks(tree: Any, name: str) -> int:
    """The shared leading (task) dimension of every tensor in ``tree``."""
    sizes = {leaf.shape[0] for leaf in pytree.tree_leaves(tree)
             if isinstance(leaf, torch.Tensor) and leaf.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(f"{name} must be a pytree of tensors sharing a leading task "
                         f"dimension, got leading sizes {sorted(sizes)}")
    return sizes.pop()


def _check_weights(step_weights: torch.Tensor | None, steps: int) -> int:
    """Index of the first weighted step in the ``steps + 1`` trajectory."""
    if step_weights is None:
        return steps
    if step_weights.dim() != 1 or step_weights.shape[0] not in (steps, steps + 1):
        raise ValueError(f"step_weights must have shape ({steps},) or ({steps + 1},), "
                         f"got {tuple(step_weights.shape)}")
    return steps + 1 - step_weights.shape[0]


def meta_loss(params: Params, loss_fn: LossFn, support: Any, query: Any, *, steps: int,
              rule: InnerLR | float, keys: Sequence[str], first_order: bool,
              step_weights: torch.Tensor | None = None,
              vectorize: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean over tasks of the post-adaptation query loss (MAML, Finn et al., 2017).

    Args:
        params: Meta-parameters, shared by all tasks.
        loss_fn: ``loss_fn(params, data) -> scalar`` for one task's data.
        support: Pytree of tensors with a leading task dimension (inner-loop data).
        query: Pytree of tensors with the same leading task dimension (outer data).
        steps: Inner steps.
        rule: Inner learning-rate rule (see :func:`metarl.core.inner.adapt`).
        keys: Adapted keys.
        first_order: Detach inner gradients (first-order MAML).
        step_weights: ``None`` for the final-step loss, or MAML++ MSL weights over steps
            0..steps (length ``steps + 1``) or 1..steps (length ``steps``).
        vectorize: One ``torch.func.vmap`` over tasks (True) or a Python loop (False).

    Returns:
        The scalar meta-loss and logs: ``query_losses`` (mean query loss after 0..steps
        steps, detached, shape ``(steps + 1,)``) and ``query_loss_step{i}`` scalars.
    """
    first_weighted = _check_weights(step_weights, steps)
    n_tasks = num_tasks(support, "support")
    if num_tasks(query, "query") != n_tasks:
        raise ValueError(f"query must have the same number of tasks as support ({n_tasks})")

    def one_task(p: Params, sup: Any, qry: Any) -> torch.Tensor:
        return _task_losses(p, sup, qry, loss_fn, steps, rule, keys, first_order,
                            first_weighted)

    if vectorize:
        per_task = torch.func.vmap(one_task, in_dims=(None, 0, 0))(params, support, query)
    else:
        per_task = torch.stack([one_task(params, _task(support, i), _task(query, i))
                                for i in range(n_tasks)])
    means = per_task.mean(dim=0)
    if step_weights is None:
        loss = means[-1]
    else:
        loss = (step_weights.to(means) * means[first_weighted:]).sum()
    return loss, _logs(means)


def _task(tree: Any, index: int) -> Any:
    return pytree.tree_map(lambda x: x[index] if isinstance(x, torch.Tensor) else x, tree)


def _logs(means: torch.Tensor) -> dict[str, torch.Tensor]:
    detached = means.detach()
    logs = {f"query_loss_step{i}": v for i, v in enumerate(detached)}
    logs["query_losses"] = detached
    return logs
