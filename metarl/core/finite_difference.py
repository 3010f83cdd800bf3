"""A first-order meta-gradient that converges: finite differences of inner gradients.

Chayti & Jaggi (arXiv 2409.03682, "A New First-Order Meta-Learning Algorithm with Convergence
Guarantees") write MAML's meta-gradient as the derivative of the solution of a perturbed
inner problem and estimate that derivative by forward or symmetric finite differences of
first-order information only. With inner steps
``theta_i = theta_{i-1} - a * grad_A g_i(theta_{i-1})`` on the adapted keys ``A`` (``a`` the
per-key rates) and ``F = f(theta_K)``, the exact meta-gradient is the adjoint recursion

    v_K = grad f(theta_K),    v_{i-1} = v_i - H_i (a * v_i|_A),    grad F(theta_0) = v_0,

with ``H_i`` the (all keys x adapted keys) Hessian of ``g_i`` at ``theta_{i-1}``. With one
scalar rate and every key adapted, ``v - H (a v)`` is the derivative in ``lambda`` of the inner
step's output at the perturbed start ``theta_{i-1} + lambda v`` (its Jacobian is symmetric);
this module replaces ``H w`` by

* forward:   ``(grad g(theta + delta w_hat) - grad g(theta)) / delta * |w|``, error O(delta);
* symmetric: ``(grad g(theta + delta w_hat) - grad g(theta - delta w_hat)) / (2 delta) * |w|``,
  error O(delta^2),

where ``w_hat = w / |w|``, so ``delta`` is a length in parameter space whatever the gradient's
scale (the paper perturbs by ``delta * w``: the same estimator with ``delta`` rescaled). Only
gradients are evaluated, at detached points: no second-order graph is built, so the autograd
memory of the meta-gradient does not grow with the inner steps (the detached trajectory,
one parameter copy per step, is what first-order MAML holds too). For one inner step the
inner map is affine when the task loss is quadratic, and both estimators are exact.

Learned inner rates (Meta-SGD, LSLR) get their exact first-order gradient too:
``dF / da_{i,k} = -<v_i[k], grad_k g_i(theta_{i-1})>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from metarl.core.estimators import Estimator, FirstOrder, TaskProblem, with_gradient
from metarl.core.inner import LossFn, loss_at, step_lrs
from metarl.core.params import Params

FD_SCHEMES = ("forward", "symmetric")
DEFAULT_DELTA = 1e-3


def check_delta(delta: float, name: str = "fd_delta") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``delta`` is a finite number > 0."""
    if isinstance(delta, bool) or not (math.isfinite(delta) and delta > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {delta}")


def full_grad(loss: LossFn, point: Params, data: Any) -> dict[str, torch.Tensor]:
    """Gradient of ``loss(point, data)`` w.r.t. every key, at a detached point (vmap-safe)."""
    return torch.func.grad(loss)({k: v.detach() for k, v in point.items()}, data)


def _norm(w: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((v * v).sum() for v in w.values()))  # type: ignore[arg-type]


def _shifted(point: Params, direction: Mapping[str, torch.Tensor], scale: float) -> Params:
    return {k: v.detach() + scale * direction[k] if k in direction else v.detach()
            for k, v in point.items()}


def hessian_product(loss: LossFn, point: Params, data: Any, w: Mapping[str, torch.Tensor],
                    delta: float, scheme: str) -> dict[str, torch.Tensor]:
    """``H w`` (H: the Hessian of ``loss`` at ``point``, all keys x the keys of ``w``) by a
    finite difference of gradients along ``w`` with step length ``delta``."""
    norm = _norm(w)
    unit = {k: v / norm.clamp_min(1e-30) for k, v in w.items()}
    ahead = full_grad(loss, _shifted(point, unit, delta), data)
    if scheme == "symmetric":
        behind, span = full_grad(loss, _shifted(point, unit, -delta), data), 2.0 * delta
    else:
        behind, span = full_grad(loss, point, data), delta
    return {k: (ahead[k] - behind[k]) * (norm / span) for k in ahead}


@dataclass(frozen=True)
class FiniteDifference(Estimator):
    """The meta-gradient by finite differences of inner gradients (Chayti & Jaggi, 2024).

    The trajectory is first-order MAML's (the detached inner steps, connected to the
    meta-parameters by the identity), so TRPO's Fisher products see what they see for
    first-order MAML; the outer loss carries the finite-difference meta-gradient.

    Attributes:
        delta: Finite-difference step, a length in parameter space (> 0).
        scheme: ``forward`` (error O(delta)) or ``symmetric`` (error O(delta^2)); both take
            two gradients per inner step.
    """

    name: ClassVar[str] = "finite_difference"
    delta: float = DEFAULT_DELTA
    scheme: str = "forward"

    def __post_init__(self) -> None:
        check_delta(self.delta)
        if self.scheme not in FD_SCHEMES:
            raise ValueError(f"fd scheme must be one of {FD_SCHEMES}, got {self.scheme!r}")

    def trajectory(self, params: Params, problem: TaskProblem) -> list[Params]:
        return FirstOrder().trajectory(params, problem)

    def outer_loss(self, params: Params, trajectory: Sequence[Params], step: int,
                   problem: TaskProblem) -> torch.Tensor:
        query = loss_at(problem.query_loss, step)
        # The value on detached parameters: its graph would only be thrown away.
        value = query({k: p.detach() for k, p in trajectory[step].items()}, problem.query)
        if not torch.is_grad_enabled():  # a value-only call (TRPO's line search)
            return value
        v = full_grad(query, trajectory[step], problem.query)
        lr_terms: list[torch.Tensor] = []
        for i in range(step if problem.keys else 0, 0, -1):  # no adapted keys: identity
            lrs = step_lrs(problem.rule, i - 1, problem.keys)
            inner = loss_at(problem.inner_loss, i - 1)
            point, data = trajectory[i - 1], problem.supports[i - 1]
            lr_terms.extend(_lr_terms(lrs, v, inner, point, data, problem.keys))
            w = {k: lrs[k] * v[k] for k in problem.keys}
            hw = hessian_product(inner, point, data, _detached(w), self.delta, self.scheme)
            v = {k: v[k] - hw[k] for k in v}
        surrogate = with_gradient(value, params, v)
        return surrogate + torch.stack(lr_terms).sum() if lr_terms else surrogate


def _detached(w: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in w.items()}


def _lr_terms(lrs: Mapping[str, torch.Tensor | float], v: Mapping[str, torch.Tensor],
              inner: LossFn, point: Params, data: Any,
              keys: Sequence[str]) -> list[torch.Tensor]:
    """Zero-valued terms whose gradients w.r.t. learned rates are ``-<v_i[k], grad_k g_i>``."""
    learned = {k: rate for k in keys
               if isinstance(rate := lrs[k], torch.Tensor) and rate.requires_grad}
    if not learned:
        return []
    grads = full_grad(inner, point, data)
    terms = []
    for k, rate in learned.items():
        coeff = -(v[k].detach() * grads[k]).sum()
        terms.append((rate - rate.detach()) * coeff)
    return terms
