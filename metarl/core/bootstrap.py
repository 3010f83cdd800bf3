"""Bootstrapped meta-gradients (BMG, Flennerhag et al., "Bootstrapped meta-learning", ICLR 2022).

Parameters ``x`` move by an update rule ``x' = rule(x, w)`` whose meta-parameters ``w`` (a
step size, a momentum, per-tensor lrs, the step ``w`` of ``x + w`` itself) are learned.
The ordinary meta-gradient is ``d f(x_K(w)) / dw`` after ``K`` differentiable steps. BMG
instead builds a *target* from ``x_K``: ``L - 1`` further steps of the rule, then one plain
gradient step on the objective,

    x~ = y - step * grad f(y),   y = rule^(L-1)(x_K),   no gradient through x~,

and moves ``w`` to bring ``x_K(w)`` toward ``x~`` under a matching function ``mu``:
``squared`` is ``0.5 ||x~ - x_K(w)||^2`` and ``kl`` is ``KL(pi_x~ || pi_x_K(w))`` between the
distributions (policies, predictive densities) the two parameter vectors give.

With ``squared``, ``K = L = 1``: ``d mu / dw = step * d f(x_K(w)) / dw``, the ordinary
meta-gradient scaled by the target's step size (tests check it). Larger ``L`` looks further
ahead without backpropagating through the extra steps.

Two entry points: :func:`bootstrapped_loss` for an online update rule on one objective (the
optimisation study), and :func:`bootstrapped_lr_loss` for MAML's inner-lr rule over a
meta-batch of tasks (the supervised trainer's ``--inner-lr-meta bmg``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metarl.core.batching import map_tasks, num_tasks
from metarl.core.inner import InnerLR, Loss, adapt_trajectory, inner_grads, inner_step, loss_at
from metarl.core.params import Params

MATCHES = ("squared", "kl")
LR_META = ("gradient", "bmg")
"""How learned inner lrs are meta-learned: the ordinary meta-gradient, or BMG."""

UpdateRule = Callable[[Params, Params], Params]
"""``rule(x, w) -> x'``: one step of the learned update rule, differentiable in ``w``."""
Objective = Callable[[Params], torch.Tensor]
"""``f(x) -> scalar``: the objective the target's gradient step descends."""
Distribution = Callable[[Params], torch.distributions.Distribution]
"""``pi(x)``: the distribution the ``kl`` matching function compares."""


def check_bootstrap_options(lookahead: int, step: float, match: str,
                            names: tuple[str, str, str] = ("lookahead", "step", "match")) -> None:
    """Validate the target's options; messages name the caller's option (``names``).

    Raises:
        ValueError: ``lookahead`` (L) < 1, ``step`` not a finite number > 0, or a ``match``
            outside :data:`MATCHES`.
    """
    if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
        raise ValueError(f"{names[0]} must be an int >= 1 (the target's steps ahead, L), "
                         f"got {lookahead!r}")
    if isinstance(step, bool) or not (isinstance(step, int | float) and math.isfinite(step)
                                      and step > 0):
        raise ValueError(f"{names[1]} must be a finite number > 0 (the target's gradient "
                         f"step size), got {step!r}")
    if match not in MATCHES:
        raise ValueError(f"{names[2]} must be one of {MATCHES}, got {match!r}")


def check_k(k: int, name: str = "k") -> None:
    """Validate ``K``, the differentiable steps before the target (``ValueError`` naming it)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be an int >= 1 (differentiable steps, K), got {k!r}")


@dataclass(frozen=True)
class BootstrapOptions:
    """The bootstrapped target: ``lookahead`` (L) steps ahead, the last a gradient step of
    size ``step``, compared with the ``K``-step parameters by ``match`` (:data:`MATCHES`)."""

    lookahead: int = 1
    step: float = 1.0
    match: str = "squared"

    def __post_init__(self) -> None:
        check_bootstrap_options(self.lookahead, self.step, self.match)


def _detached(params: Params) -> Params:
    return {k: v.detach() for k, v in params.items()}


def unroll(x: Params, w: Params, rule: UpdateRule, steps: int) -> list[Params]:
    """``x`` after 0..``steps`` applications of ``rule(., w)``, connected to ``w``."""
    trajectory = [dict(x)]
    for _ in range(steps):
        trajectory.append(rule(trajectory[-1], w))
    return trajectory


def bootstrap_target(x_k: Params, w: Params, rule: UpdateRule, objective: Objective, *,
                     lookahead: int, step: float) -> Params:
    """``L - 1`` rule steps from ``x_k`` then ``y - step * grad f(y)``; all detached."""
    y = _detached(x_k)
    w_const = _detached(w)
    for _ in range(lookahead - 1):
        y = _detached(rule(y, w_const))
    grads = torch.func.grad(objective)(y)
    return {k: (y[k] - step * grads[k]).detach() for k in y}


def matching_loss(target: Params, params: Params, match: str, *,
                  keys: Sequence[str] | None = None,
                  distribution: Distribution | None = None) -> torch.Tensor:
    """``mu(target, params)``: half the squared distance over ``keys`` (default: all of
    ``target``) or ``KL(pi_target || pi_params)`` averaged over the distribution's batch."""
    if match == "squared":
        total = sum(((target[k].detach() - params[k]) ** 2).sum()
                    for k in (target if keys is None else keys))
        assert isinstance(total, torch.Tensor)
        return 0.5 * total
    if match == "kl":
        if distribution is None:
            raise ValueError("match 'kl' needs a distribution (params -> Distribution)")
        fixed = distribution(_detached(target))
        return torch.distributions.kl_divergence(fixed, distribution(params)).mean()
    raise ValueError(f"match must be one of {MATCHES}, got {match!r}")


def bootstrapped_loss(x: Params, w: Params, rule: UpdateRule, objective: Objective, *, k: int,
                      options: BootstrapOptions,
                      distribution: Distribution | None = None) -> tuple[torch.Tensor, Params]:
    """The BMG meta-loss of one online update and the ``K``-step parameters.

    Args:
        x: Current parameters (treated as constants).
        w: Meta-parameters of ``rule``; the loss's gradient w.r.t. them is the BMG update.
        rule: The learned update rule.
        objective: ``f``, used by the target's final gradient step.
        k: Differentiable steps ``K`` (>= 1).
        options: The target (``L``, step size, matching function).
        distribution: ``pi(x)`` for ``match="kl"``.

    Returns:
        ``mu(x~, x_K(w))`` and ``x_K`` (so an online learner continues from it).
    """
    check_k(k)
    x_k = unroll(_detached(x), w, rule, k)[-1]
    target = bootstrap_target(x_k, w, rule, objective, lookahead=options.lookahead,
                              step=options.step)
    return matching_loss(target, x_k, options.match, distribution=distribution), x_k


def meta_gradient_loss(x: Params, w: Params, rule: UpdateRule, objective: Objective, *,
                       k: int) -> tuple[torch.Tensor, Params]:
    """The ordinary meta-loss ``f(x_K(w))`` and ``x_K``, for comparison with BMG."""
    check_k(k)
    x_k = unroll(_detached(x), w, rule, k)[-1]
    return objective(x_k), x_k


class FrozenLR(InnerLR):
    """A view of an :class:`InnerLR` whose rates are constants (their current values).

    Used when the rates get their gradient from another meta-loss (BMG) while the
    initialisation keeps MAML's: the MAML meta-loss then runs with the rates frozen.
    """

    def __init__(self, rule: InnerLR) -> None:
        super().__init__(rule.keys, rule.steps, 0.0, "fixed")
        self.kind = rule.kind
        object.__setattr__(self, "_source", rule)  # a view: not a registered submodule

    def lr(self, step: int, key: str) -> torch.Tensor:
        source: InnerLR = object.__getattribute__(self, "_source")
        return source.lr(step, key).detach()


def maml_target(x_k: Params, problem: tuple[Loss, Any, Loss, Any, InnerLR, tuple[str, ...]],
                 steps: int, options: BootstrapOptions) -> Params:
    """MAML's target: ``L - 1`` more inner steps on the support, one step on the query."""
    loss_fn, support, query_loss, query, rule, keys = problem
    y = _detached(x_k)
    for i in range(options.lookahead - 1):
        y = _detached(inner_step(y, loss_fn, support, step=steps + i, rule=rule, keys=keys,
                                 first_order=True))
    grads = inner_grads(y, loss_at(query_loss, steps + options.lookahead - 1), query, keys, True)
    return {**y, **{k: (y[k] - options.step * grads[k]).detach() for k in keys}}


def bootstrapped_lr_loss(params: Params, loss_fn: Loss, support: Any, query: Any, *,
                         steps: int, rule: InnerLR, keys: Sequence[str],
                         options: BootstrapOptions, query_loss: Loss | None = None,
                         distribution: Callable[[Params, Any], torch.distributions.Distribution]
                         | None = None, vectorize: bool = True) -> torch.Tensor:
    """Mean over tasks of the BMG matching loss of MAML's learned inner-lr rule.

    Per task: ``x_K`` is ``steps`` differentiable inner steps from the (detached)
    initialisation, so only the rule's rates get a gradient; the target takes ``L - 1``
    further inner steps on the support with the current rates, then one gradient step of
    size ``options.step`` on the query loss (the meta-objective), with no gradient through
    it. ``kl`` compares ``distribution(x, query)`` (e.g. a unit-variance Gaussian around the
    model's query predictions).

    Raises:
        ValueError: ``steps < 1``, a rule without learned rates, or ``kl`` without a
            distribution, before any work.
    """
    check_k(steps, "steps")
    if not rule.learned:
        raise ValueError(f"the inner-lr rule must be learned (per_tensor or per_step) for "
                         f"bootstrapped meta-gradients, got kind {rule.kind!r}")
    if options.match == "kl" and distribution is None:
        raise ValueError("match 'kl' needs a distribution (params, query) -> Distribution")
    n_tasks = num_tasks(support, "support")
    if num_tasks(query, "query") != n_tasks:
        raise ValueError(f"query must have the same number of tasks as support ({n_tasks})")
    outer = loss_fn if query_loss is None else query_loss
    key_tuple = tuple(keys)

    def one_task(p: Params, sup: Any, qry: Any) -> torch.Tensor:
        x_k = adapt_trajectory(_detached(p), loss_fn, [sup] * steps, rule=rule, keys=key_tuple,
                               first_order=False)[-1]
        target = maml_target(x_k, (loss_fn, sup, outer, qry, rule, key_tuple), steps, options)
        dist = None if distribution is None else (lambda q: distribution(q, qry))
        return matching_loss(target, x_k, options.match, keys=key_tuple, distribution=dist)

    return map_tasks(one_task, (params, support, query), (None, 0, 0), vectorize).mean()

