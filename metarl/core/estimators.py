"""Meta-gradient estimators: how the gradient of the post-adaptation objective is formed.

An estimator is a small frozen value with two per-task pure functions, run under
``torch.func.vmap`` by :func:`metarl.core.meta_loss` and by the meta-RL learner:

* :meth:`Estimator.trajectory`: the adapted parameters after 0..n inner steps, connected to
  the meta-parameters by the graph this estimator differentiates (the exact inner steps for
  second order; the identity plus constant steps for first order);
* :meth:`Estimator.outer_loss`: the query loss after step ``i``, as a tensor whose *value* is
  the query loss and whose *gradient* w.r.t. the meta-parameters is this estimator's
  meta-gradient. Estimators that compute the meta-gradient in another way add a term with
  zero value and the right gradient (see :func:`with_gradient`).

Adding an estimator is one module in ``metarl/core`` with a subclass of :class:`Estimator`
plus one row in :data:`metarl.core.algorithm.ALGORITHMS` (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from metarl.core.inner import Loss, Rule, adapt_trajectory, loss_at
from metarl.core.params import Params


@dataclass(frozen=True)
class TaskProblem:
    """One task's adaptation problem, as an estimator sees it (inside vmap: one task).

    Attributes:
        inner_loss: The support loss the inner loop descends.
        supports: One support set per inner step.
        query_loss: The outer loss (often the same function as ``inner_loss``).
        query: The query (outer) data.
        rule: The inner learning-rate rule.
        keys: The adapted keys.
    """

    inner_loss: Loss
    supports: Sequence[Any]
    query_loss: Loss
    query: Any
    rule: Rule
    keys: tuple[str, ...]

    @property
    def steps(self) -> int:
        """Inner steps."""
        return len(self.supports)


class Estimator:
    """Base class: the trajectory and the outer loss of one task (see the module docstring).

    Subclasses are frozen dataclasses (their fields are the estimator's options) with a
    class attribute ``name``.
    """

    name: ClassVar[str] = ""

    def trajectory(self, params: Params, problem: TaskProblem) -> list[Params]:
        """Parameters after 0..``problem.steps`` inner steps."""
        raise NotImplementedError

    def outer_loss(self, params: Params, trajectory: Sequence[Params], step: int,
                   problem: TaskProblem) -> torch.Tensor:
        """The query loss after ``step`` steps, carrying this estimator's gradient."""
        return loss_at(problem.query_loss, step)(trajectory[step], problem.query)


@dataclass(frozen=True)
class SecondOrder(Estimator):
    """MAML's exact meta-gradient: autograd through every inner step (Finn et al., 2017)."""

    name: ClassVar[str] = "second_order"

    def trajectory(self, params: Params, problem: TaskProblem) -> list[Params]:
        return adapt_trajectory(params, problem.inner_loss, problem.supports,
                                rule=problem.rule, keys=problem.keys, first_order=False)


@dataclass(frozen=True)
class FirstOrder(Estimator):
    """First-order MAML: the inner gradients are constants (Finn et al., 2017, sec. 5.2).

    The meta-gradient is the query gradient at the adapted parameters (plus, for learned
    inner lrs, their gradient through the constant steps). No second-order graph is kept.
    """

    name: ClassVar[str] = "first_order"

    def trajectory(self, params: Params, problem: TaskProblem) -> list[Params]:
        return adapt_trajectory(params, problem.inner_loss, problem.supports,
                                rule=problem.rule, keys=problem.keys, first_order=True)


def with_gradient(value: torch.Tensor, params: Mapping[str, torch.Tensor],
                  gradient: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A tensor equal to ``value`` (detached) whose gradient w.r.t. ``params`` is ``gradient``.

    ``value + sum_k <p_k, g_k> - sum_k <p_k, g_k>.detach()`` with ``g`` detached: the
    surrogate an estimator returns when it computes its meta-gradient directly.
    """
    inner = sum((params[k] * gradient[k].detach()).sum() for k in gradient)
    assert isinstance(inner, torch.Tensor)
    return value.detach() + inner - inner.detach()


ESTIMATORS: dict[str, type[Estimator]] = {
    SecondOrder.name: SecondOrder,
    FirstOrder.name: FirstOrder,
}
