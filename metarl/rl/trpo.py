"""TRPO pieces (Schulman et al., 2015, "Trust Region Policy Optimization"), each a small
function over flat parameter vectors.

* :func:`conjugate_gradient` solves ``F x = g`` with Fisher-vector products only;
* :func:`fisher_vector_product` builds ``v -> (H_KL + damping I) v`` from a differentiable
  mean KL (the Hessian of the KL at the current parameters is the Fisher matrix);
* :func:`backtracking_line_search` shrinks the natural step until the surrogate improves
  and the mean KL stays within the trust region, and restores the parameters otherwise;
* :func:`trpo_update` composes them, and skips the update (logging why) whenever a loss,
  gradient or step is not finite.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

Fvp = Callable[[torch.Tensor], torch.Tensor]
# () -> (surrogate loss, mean KL), evaluated at the parameters' current values.
LossKl = Callable[[], tuple[torch.Tensor, torch.Tensor]]


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], *,
              create_graph: bool = False, retain_graph: bool | None = None) -> torch.Tensor:
    """``d output / d params`` as one flat vector (zeros for unused parameters)."""
    grads = torch.autograd.grad(output, list(params), create_graph=create_graph,
                                retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                      for g, p in zip(grads, params, strict=True)])


def conjugate_gradient(fvp: Fvp, b: torch.Tensor, iters: int,
                       residual_tol: float = 1e-10) -> tuple[torch.Tensor, float]:
    """Solve ``F x = b`` for SPD ``F`` given only ``v -> F v`` (Hestenes & Stiefel, 1952).

    Args:
        fvp: The matrix-vector product.
        b: Right-hand side.
        iters: Maximum iterations (>= 1).
        residual_tol: Stop when ``||r||^2`` falls below it.

    Returns:
        ``(x, ||b - F x||)`` with the residual norm of the CG recursion.
    """
    if iters < 1:
        raise ValueError(f"cg_iters must be >= 1, got {iters}")
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if float(rr) < residual_tol:
            break
        fp = fvp(p)
        alpha = rr / torch.dot(p, fp)
        x = x + alpha * p
        r = r - alpha * fp
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x, math.sqrt(max(float(rr), 0.0))


def fisher_vector_product(kl: torch.Tensor, params: Sequence[torch.Tensor],
                          damping: float) -> Fvp:
    """``v -> (d^2 KL / d params^2) v + damping v`` by double backpropagation.

    The gradient of ``kl`` is built once with ``create_graph=True``; each product is one more
    backward pass through it (Pearlmutter's trick). With MAML the KL depends on the
    meta-parameters through the inner step, so the products differentiate through it.
    """
    grad_kl = flat_grad(kl, params, create_graph=True)

    def fvp(v: torch.Tensor) -> torch.Tensor:
        hv = flat_grad(torch.dot(grad_kl, v.detach()), params, retain_graph=True)
        return hv + damping * v

    return fvp


@dataclass(frozen=True)
class LineSearchResult:
    """Outcome of :func:`backtracking_line_search`."""

    accepted: bool
    steps: int
    loss: float
    kl: float


def backtracking_line_search(params: Sequence[torch.Tensor], full_step: torch.Tensor,
                             loss_kl: LossKl, loss_before: float, max_kl: float,
                             ls_steps: int, ls_ratio: float) -> LineSearchResult:
    """Try ``x0 + ratio^i * full_step`` for ``i = 0..ls_steps-1``; keep the first that lowers
    the surrogate with mean KL <= ``max_kl`` (both finite); otherwise restore ``x0``.

    Args:
        params: Parameters updated in place (their values at entry are ``x0``).
        full_step: The full natural-gradient step (flat).
        loss_kl: Surrogate loss and mean KL at the parameters' current values.
        loss_before: Surrogate loss at ``x0``.
        max_kl: Trust-region radius.
        ls_steps: Number of trials (>= 1).
        ls_ratio: Shrink factor in (0, 1).

    Returns:
        ``accepted``, the number of trials made, and the loss/KL of the last trial.
    """
    if ls_steps < 1 or not 0.0 < ls_ratio < 1.0:
        raise ValueError(f"ls_steps must be >= 1 and ls_ratio in (0, 1), got {ls_steps}, "
                         f"{ls_ratio}")
    x0 = parameters_to_vector(params).detach().clone()
    loss, kl = math.nan, math.nan
    for i in range(ls_steps):
        vector_to_parameters(x0 + ls_ratio**i * full_step, params)
        with torch.no_grad():
            loss_t, kl_t = loss_kl()
        loss, kl = float(loss_t), float(kl_t)
        if math.isfinite(loss) and math.isfinite(kl) and loss < loss_before and kl <= max_kl:
            return LineSearchResult(True, i + 1, loss, kl)
    vector_to_parameters(x0, params)
    return LineSearchResult(False, ls_steps, loss, kl)


@dataclass(frozen=True)
class TrpoConfig:
    """Constants of one TRPO update (Schulman et al., 2015), with the standard MAML-TRPO
    values of Finn et al. (2017) as defaults; the one source of those defaults.

    Raises:
        ValueError: Naming the field and its allowed range.
    """

    max_kl: float = 0.01
    cg_iters: int = 10
    cg_damping: float = 1e-5
    ls_steps: int = 15
    ls_ratio: float = 0.8

    def __post_init__(self) -> None:
        checks = (("max_kl", self.max_kl > 0, "a finite number > 0"),
                  ("cg_iters", self.cg_iters >= 1, "an int >= 1"),
                  ("cg_damping", self.cg_damping >= 0, "a finite number >= 0"),
                  ("ls_steps", self.ls_steps >= 1, "an int >= 1"),
                  ("ls_ratio", 0 < self.ls_ratio < 1, "a number in (0, 1)"))
        for name, ok, allowed in checks:
            value = getattr(self, name)
            if not (ok and math.isfinite(value)):
                raise ValueError(f"{name} must be {allowed}, got {value}")


def skipped_logs(loss: float) -> dict[str, float]:
    """The ``trpo/*`` logs of an update skipped as non-finite (parameters untouched)."""
    return {"trpo/surrogate_before": loss, "trpo/surrogate_after": loss, "trpo/kl": 0.0,
            "trpo/cg_residual": math.nan, "trpo/ls_steps": 0.0, "trpo/accepted": 0.0,
            "trpo/nonfinite_skipped": 1.0}


def trpo_update(params: Sequence[torch.Tensor], loss: torch.Tensor, kl_for_fvp: torch.Tensor,
                loss_kl: LossKl, cfg: TrpoConfig) -> dict[str, float]:
    """One TRPO step on ``params`` in place; returns ``trpo/*`` logs.

    Args:
        params: The policy (meta-)parameters.
        loss: The surrogate loss at the current parameters (graph attached).
        kl_for_fvp: The mean KL whose Hessian is the Fisher matrix (graph attached; it may be
            computed on a subsample of the data).
        loss_kl: Recomputes ``(loss, mean KL)`` at the parameters' current values.
        cfg: The TRPO constants.

    A non-finite loss, gradient, CG solution or step skips the update: ``params`` are left
    bit-identical and ``trpo/nonfinite_skipped`` is 1.
    """
    loss_before = float(loss.detach())
    if not math.isfinite(loss_before):
        return skipped_logs(loss_before)
    grad = flat_grad(loss, params, retain_graph=True)
    if not bool(torch.isfinite(grad).all()):
        return skipped_logs(loss_before)
    fvp = fisher_vector_product(kl_for_fvp, params, cfg.cg_damping)
    step_dir, residual = conjugate_gradient(fvp, -grad, cfg.cg_iters)
    shs = 0.5 * float(torch.dot(step_dir, fvp(step_dir)))
    if not (math.isfinite(shs) and shs > 0 and bool(torch.isfinite(step_dir).all())):
        return skipped_logs(loss_before)
    full_step = step_dir * math.sqrt(cfg.max_kl / shs)
    result = backtracking_line_search(params, full_step.detach(), loss_kl, loss_before,
                                      cfg.max_kl, cfg.ls_steps, cfg.ls_ratio)
    return {"trpo/surrogate_before": loss_before,
            "trpo/surrogate_after": result.loss if result.accepted else loss_before,
            "trpo/kl": result.kl if result.accepted else 0.0, "trpo/cg_residual": residual,
            "trpo/ls_steps": float(result.steps), "trpo/accepted": float(result.accepted),
            "trpo/nonfinite_skipped": 0.0}
