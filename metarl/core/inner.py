"""The inner loop: functional SGD steps with fixed or learned learning rates.

``adapt`` runs gradient steps on a task's support loss (MAML, Finn et al., 2017) over
explicit parameter dicts; ``adapt_trajectory`` returns the parameters after every step and
takes one support set per step (meta-RL samples fresh episodes before each inner step).
Gradients come from ``torch.func.grad`` so the same code runs per task inside
``torch.func.vmap``; the result stays differentiable by ordinary autograd to any order, which
gives MAML's exact second-order meta-gradient and the Fisher-vector products of MAML-TRPO.
The learning-rate rule is a scalar of either sign, Meta-SGD's learned per-tensor rates (Li et
al., 2017) or MAML++'s learned per-layer per-step rates (LSLR, Antoniou et al., 2019).

These functions run per task under vmap, so they do not validate their arguments: the public
boundaries (:class:`InnerLR`, :func:`check_adapt_args`, the trainers' configs) do, once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metarl.core.params import Params, check_finite

LR_KINDS = ("fixed", "per_tensor", "per_step")

LossFn = Callable[[Params, Any], torch.Tensor]


@dataclass(frozen=True)
class PerStepLoss:
    """A loss that also takes the inner-step index: ``fn(params, data, step)``.

    Models whose forward depends on the inner step (MAML++ per-step batch-norm, Antoniou et
    al., 2019) wrap their loss in it; :func:`loss_at` gives the plain loss of one step.
    """

    fn: Callable[[Params, Any, int], torch.Tensor]

    def at(self, step: int) -> LossFn:
        """The loss of inner step ``step`` (0 = before adaptation)."""

        def loss(params: Params, data: Any) -> torch.Tensor:
            return self.fn(params, data, step)

        return loss


Loss = LossFn | PerStepLoss


def loss_at(loss: Loss, step: int) -> LossFn:
    """The plain ``(params, data) -> scalar`` loss of inner step ``step``."""
    return loss.at(step) if isinstance(loss, PerStepLoss) else loss


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

    @property
    def learned(self) -> bool:
        """Whether the rates are meta-parameters (``per_tensor`` / ``per_step``)."""
        return self.kind != "fixed"

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

    def lrs_at(self, step: int, keys: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """The learning rates of inner step ``step`` by key (all keys, or ``keys``)."""
        return {k: self.lr(step, k) for k in (self.keys if keys is None else keys)}

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


Rule = InnerLR | float


def check_adapt_args(params: Params, keys: Sequence[str], rule: Rule,
                     steps: int | None = None) -> None:
    """Validate the arguments of :func:`adapt` once, at a public boundary (not under vmap).

    Raises:
        ValueError: Naming ``steps``, ``keys`` or ``inner_lr``.
    """
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"keys {missing} are not parameter keys; available: {list(params)}")
    if isinstance(rule, InnerLR):
        unknown = [k for k in keys if k not in rule.keys]
        if unknown:
            raise ValueError(f"keys {unknown} have no rate in the inner-lr rule; its keys: "
                             f"{list(rule.keys)}")
    else:
        check_finite("inner_lr", rule)


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


def inner_grads(params: Params, loss_fn: LossFn, data: Any, keys: Sequence[str],
                first_order: bool) -> dict[str, torch.Tensor]:
    """Gradient of ``loss_fn`` w.r.t. ``keys`` via ``torch.func.grad`` (vmap-compatible)."""

    def loss_of(sub: Params) -> torch.Tensor:
        return loss_fn({**params, **sub}, data)

    grads: dict[str, torch.Tensor] = torch.func.grad(loss_of)({k: params[k] for k in keys})
    if first_order:
        # FOMAML (Finn et al., 2017): the inner gradient is a constant for the outer loop.
        grads = {k: g.detach() for k, g in grads.items()}
    return grads


def step_lrs(rule: Rule, step: int, keys: Sequence[str]) -> Mapping[str, torch.Tensor | float]:
    """The learning rate of every key in ``keys`` at inner step ``step``."""
    if isinstance(rule, InnerLR):
        return rule.lrs_at(step, keys)
    return dict.fromkeys(keys, float(rule))


def inner_step(params: Params, loss: Loss, data: Any, *, step: int, rule: Rule,
               keys: Sequence[str], first_order: bool) -> Params:
    """One inner SGD step (step index ``step``, which picks per-step rates and losses)."""
    if not keys:
        return dict(params)
    grads = inner_grads(params, loss_at(loss, step), data, keys, first_order)
    return sgd_step(params, grads, step_lrs(rule, step, keys), keys)


def adapt_trajectory(params: Params, loss: Loss, supports: Sequence[Any], *, rule: Rule,
                     keys: Sequence[str], first_order: bool) -> list[Params]:
    """The parameters after 0..n inner steps, step ``i`` on ``supports[i]``.

    Args:
        params: Parameter dict (meta-parameters, or anything derived from them).
        loss: ``loss(params, data) -> scalar`` on a task's support data (or a
            :class:`PerStepLoss`, called with the step index).
        supports: One support set per inner step (the same object repeated for the usual
            supervised inner loop; fresh episodes per step in meta-RL).
        rule: An :class:`InnerLR` or a scalar learning rate of either sign.
        keys: Keys to adapt (all = MAML, head = ANIL, ``()`` = NIL).
        first_order: Detach the inner gradients (first-order MAML).

    Returns:
        ``len(supports) + 1`` parameter dicts; the first is a shallow copy of ``params``.
    """
    trajectory = [dict(params)]
    for step, data in enumerate(supports):
        trajectory.append(inner_step(trajectory[-1], loss, data, step=step, rule=rule,
                                     keys=keys, first_order=first_order))
    return trajectory


def adapt(params: Params, loss: Loss, data: Any, *, steps: int, rule: Rule,
          keys: Sequence[str], first_order: bool) -> Params:
    """Adapt ``params`` to one task with ``steps`` gradient steps on ``data`` (MAML).

    Finn et al., 2017. Arguments as :func:`adapt_trajectory`, with one support set used at
    every step; 0 steps (or no keys) returns the parameters unchanged.
    """
    return adapt_trajectory(params, loss, [data] * steps, rule=rule, keys=keys,
                            first_order=first_order)[-1]
