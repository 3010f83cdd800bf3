"""The inner loop: functional SGD steps with fixed or learned learning rates.

``adapt`` runs gradient steps on a task's support loss (MAML, Finn et al., 2017) over
explicit parameter dicts. Gradients come from ``torch.func.grad`` so the same code runs
per task inside ``torch.func.vmap``; the result stays differentiable by ordinary autograd
to any order, which gives MAML's exact second-order meta-gradient and the Fisher-vector
products of MAML-TRPO. The learning-rate rule is a scalar of either sign, Meta-SGD's
learned per-tensor rates (Li et al., 2017) or MAML++'s learned per-layer per-step rates
(LSLR, Antoniou et al., 2019).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from metarl.core.params import Params, check_finite

LR_KINDS = ("fixed", "per_tensor", "per_step")

LossFn = Callable[[Params, Any], torch.Tensor]


class InnerLR(nn.Module):
    """Inner-loop learning-rate rule.

    ``fixed`` holds one scalar (any finite sign, 0 included) as a buffer and has no
    parameters; ``per_tensor`` learns one rate per adapted tensor (Meta-SGD, Li et al.,
    2017, at tensor granularity); ``per_step`` learns one rate per tensor and inner step
    (LSLR, Antoniou et al., 2019). Learned rates are meta-parameters for the outer optimiser.

    Args:
        keys: The adapted parameter keys.
        steps: Inner steps the rule is trained for (``per_step`` keeps one row per step;
            later steps, e.g. extra evaluation steps, reuse the last row).
        init: Initial (or fixed) learning rate.
        kind: One of ``LR_KINDS``.
    """

    def __init__(self, keys: Sequence[str], steps: int, init: float, kind: str) -> None:
        super().__init__()
        _validate_rule(keys, steps, init, kind)
        self.keys = tuple(keys)
        self.steps = steps
        self.kind = kind
        self._index = {k: i for i, k in enumerate(self.keys)}
        if kind == "fixed":
            self.register_buffer("fixed_lr", torch.tensor(float(init)))
        else:
            rows = steps if kind == "per_step" else 1
            self.lrs = nn.Parameter(torch.full((rows, len(self.keys)), float(init)))

    def lr(self, step: int, key: str) -> torch.Tensor:
        """The scalar learning rate of ``key`` at inner step ``step`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        if key not in self._index:
            raise ValueError(f"key {key!r} is not adapted by this rule; keys: {list(self.keys)}")
        if self.kind == "fixed":
            return self.get_buffer("fixed_lr")
        row = min(step, self.lrs.shape[0] - 1)
        return self.lrs[row, self._index[key]]

    def lrs_at(self, step: int) -> dict[str, torch.Tensor]:
        """All learning rates of inner step ``step``, by key."""
        return {k: self.lr(step, k) for k in self.keys}

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, steps={self.steps}, keys={len(self.keys)}"


def _validate_rule(keys: Sequence[str], steps: int, init: float, kind: str) -> None:
    if kind not in LR_KINDS:
        raise ValueError(f"kind must be one of {LR_KINDS}, got {kind!r}")
    check_finite("inner_lr", init)
    if steps < 0 or (kind == "per_step" and steps < 1):
        raise ValueError(f"steps must be >= 1 for per_step (>= 0 otherwise), got {steps}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"keys must be unique, got {list(keys)}")


def sgd_step(params: Params, grads: Mapping[str, torch.Tensor],
             lrs: Mapping[str, torch.Tensor | float], keys: Sequence[str]) -> Params:
    """One functional SGD step ``p - lr * g`` on ``keys``; returns a new dict.

    Keys outside ``keys`` are passed through as the same tensor objects, so ANIL leaves the
    body bit-identical and still connected to the outer graph.
    """
    new = dict(params)
    for k in keys:
        new[k] = params[k] - lrs[k] * grads[k]
    return new


def _inner_grads(params: Params, loss_fn: LossFn, data: Any, keys: Sequence[str],
                 first_order: bool) -> dict[str, torch.Tensor]:
    """Gradient of ``loss_fn`` w.r.t. ``keys`` via ``torch.func.grad`` (vmap-compatible)."""

    def loss_of(sub: Params) -> torch.Tensor:
        return loss_fn({**params, **sub}, data)

    grads: dict[str, torch.Tensor] = torch.func.grad(loss_of)({k: params[k] for k in keys})
    if first_order:
        # FOMAML (Finn et al., 2017): the inner gradient is a constant for the outer loop.
        grads = {k: g.detach() for k, g in grads.items()}
    return grads


def _step_lrs(rule: InnerLR | float, step: int,
              keys: Sequence[str]) -> Mapping[str, torch.Tensor | float]:
    if isinstance(rule, InnerLR):
        return rule.lrs_at(step) if tuple(keys) == rule.keys else {k: rule.lr(step, k)
                                                                   for k in keys}
    return dict.fromkeys(keys, float(rule))


def _validate_adapt(params: Params, steps: int, rule: InnerLR | float,
                    keys: Sequence[str]) -> None:
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"keys {missing} are not parameter keys; available: {list(params)}")
    if not isinstance(rule, InnerLR):
        check_finite("inner_lr", rule)


def adapt(params: Params, loss_fn: LossFn, data: Any, *, steps: int, rule: InnerLR | float,
          keys: Sequence[str], first_order: bool,
          return_trajectory: bool = False) -> Params | list[Params]:
    """Adapt ``params`` to one task with ``steps`` gradient steps (MAML, Finn et al., 2017).

    Args:
        params: Parameter dict (meta-parameters, or anything derived from them).
        loss_fn: ``loss_fn(params, data) -> scalar`` on the task's support data.
        data: The support data (any pytree ``loss_fn`` accepts).
        steps: Number of inner steps; 0 returns ``params`` unchanged.
        rule: An :class:`InnerLR` or a scalar learning rate of either sign.
        keys: Keys to adapt (all = MAML, head = ANIL, ``()`` = NIL).
        first_order: Detach the inner gradients (first-order MAML).
        return_trajectory: Return the parameters after 0..steps steps instead of the last.

    Returns:
        The adapted parameters, or the list of ``steps + 1`` parameter dicts.
    """
    _validate_adapt(params, steps, rule, keys)
    trajectory = [dict(params)]
    current = trajectory[0]
    for step in range(steps):
        if keys:
            grads = _inner_grads(current, loss_fn, data, keys, first_order)
            current = sgd_step(current, grads, _step_lrs(rule, step, keys), keys)
        trajectory.append(current)
    return trajectory if return_trajectory else current
