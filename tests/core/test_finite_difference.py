"""The finite-difference meta-gradient (Chayti & Jaggi, 2024): exactness on affine inner
maps, its order in delta, the flat autograd memory, learned rates, and its options."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from metarl.core import (
    ALGORITHMS,
    Estimator,
    FiniteDifference,
    InnerLR,
    Params,
    SecondOrder,
    get_params,
    head_keys,
    meta_loss,
    with_fd_delta,
)
from metarl.core.memory import graph_bytes

LossFn = Callable[[Params, Any], torch.Tensor]


def _meta_grad(params: Params, loss_fn: LossFn, tasks: Any, estimator: Estimator, *,
               steps: int = 1, rule: Any = 0.3, keys: tuple[str, ...] | None = None,
               vectorize: bool = True, extra: tuple[torch.Tensor, ...] = ()) -> list[torch.Tensor]:
    keys = tuple(params) if keys is None else keys
    loss, _ = meta_loss(params, loss_fn, *tasks, steps=steps, rule=rule, keys=keys,
                        estimator=estimator, vectorize=vectorize)
    return list(torch.autograd.grad(loss, [*params.values(), *extra]))


def _error(grads: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(((a - b) ** 2).sum()) for a, b in zip(grads, reference,
                                                                        strict=True)))


@pytest.fixture
def linear() -> nn.Module:
    torch.manual_seed(3)
    return nn.Linear(3, 1)


@pytest.fixture
def linear_tasks() -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(4)
    xs, xq = torch.randn(5, 6, 3, generator=gen), torch.randn(5, 8, 3, generator=gen)
    w = torch.randn(5, 3, 1, generator=gen)
    return (xs, xs @ w), (xq, torch.sin(xq @ w))


@pytest.mark.parametrize("scheme", ["forward", "symmetric"])
@pytest.mark.parametrize("steps", [1, 3])
def test_exact_when_the_inner_map_is_affine(linear: nn.Module, linear_tasks: Any,
                                            scheme: str, steps: int) -> None:
    """Quadratic task losses (a linear model's MSE): the inner gradient is affine, so any
    delta gives the second-order meta-gradient up to rounding."""

    def mse(params: Params, data: Any) -> torch.Tensor:
        x, y = data
        return ((torch.func.functional_call(linear, params, (x,)) - y) ** 2).mean()

    params = get_params(linear)
    reference = _meta_grad(params, mse, linear_tasks, SecondOrder(), steps=steps)
    for delta in (1e-1, 1.0):
        grads = _meta_grad(params, mse, linear_tasks, FiniteDifference(delta, scheme),
                           steps=steps)
        for a, b in zip(grads, reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("scheme", "order"), [("forward", 1.0), ("symmetric", 2.0)])
def test_error_falls_at_the_scheme_order_in_delta(mlp: nn.Module, loss_fn: LossFn,
                                                  tasks: Any, scheme: str,
                                                  order: float) -> None:
    """On a tanh MLP (non-quadratic), |error| ~ delta^order: the log-log slope is fitted."""
    params = get_params(mlp)
    reference = _meta_grad(params, loss_fn, tasks, SecondOrder(), steps=2)
    deltas = np.array([3e-2, 1e-2, 3e-3, 1e-3])
    errors = np.array([_error(_meta_grad(params, loss_fn, tasks, FiniteDifference(d, scheme),
                                         steps=2), reference) for d in deltas])
    slope = np.polyfit(np.log(deltas), np.log(errors), 1)[0]
    assert abs(slope - order) < 0.15, (slope, errors)
    assert errors[-1] < 1e-2 * _error(reference, [torch.zeros_like(g) for g in reference])


def test_vmap_equals_the_per_task_loop(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    params = get_params(mlp)
    est = FiniteDifference(1e-3, "symmetric")
    batched = _meta_grad(params, loss_fn, tasks, est, steps=2, vectorize=True)
    looped = _meta_grad(params, loss_fn, tasks, est, steps=2, vectorize=False)
    for a, b in zip(batched, looped, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["per_tensor", "per_step"])
def test_learned_inner_rates_get_the_second_order_gradient(mlp: nn.Module, loss_fn: LossFn,
                                                           tasks: Any, kind: str) -> None:
    params = get_params(mlp)
    rule = InnerLR(tuple(params), 2, 0.3, kind)
    with torch.no_grad():
        rule.lrs.add_(0.05 * torch.randn(rule.lrs.shape, generator=torch.Generator()
                                         .manual_seed(5)))
    out = [_meta_grad(params, loss_fn, tasks, est, steps=2, rule=rule, extra=(rule.lrs,))
           for est in (SecondOrder(), FiniteDifference(1e-5, "symmetric"))]
    assert float(out[0][-1].abs().max()) > 1e-3
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_head_only_adaptation_differentiates_the_body_too(mlp: nn.Module, loss_fn: LossFn,
                                                          tasks: Any) -> None:
    """ANIL's body gets its gradient through the head's adaptation (mixed Hessian block)."""
    params = get_params(mlp)
    keys = head_keys(params)
    out = [_meta_grad(params, loss_fn, tasks, est, steps=2, keys=keys)
           for est in (SecondOrder(), FiniteDifference(1e-5, "symmetric"))]
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_autograd_memory_is_flat_in_inner_steps(mlp: nn.Module, loss_fn: LossFn,
                                                tasks: Any) -> None:
    """Bytes autograd saves for the backward pass: second order grows with every inner step
    (the graph through each step), finite differences stay at the parameters' size."""
    params = get_params(mlp)

    def saved(estimator: Estimator, steps: int) -> int:
        loss, _ = meta_loss(params, loss_fn, *tasks, steps=steps, rule=0.3,
                            keys=tuple(params), estimator=estimator, vectorize=False)
        return graph_bytes(loss)

    steps = (1, 2, 4, 8)
    second = [saved(SecondOrder(), k) for k in steps]
    fd = [saved(FiniteDifference(1e-3, "symmetric"), k) for k in steps]
    assert all(b > a for a, b in zip(second, second[1:], strict=False))
    assert second[-1] > 5 * second[0]  # linear in the steps
    assert len(set(fd)) == 1
    n_params = sum(p.numel() for p in params.values())
    assert fd[0] <= 4 * tasks[0][0].shape[0] * n_params * 8  # a few parameter copies per task


@pytest.mark.parametrize("delta", [0.0, -1e-3, math.nan, math.inf])
def test_delta_must_be_finite_and_positive(delta: float) -> None:
    with pytest.raises(ValueError, match="fd_delta must be a finite number > 0"):
        FiniteDifference(delta)
    with pytest.raises(ValueError, match="fd_delta"):
        with_fd_delta(ALGORITHMS["fdmaml"], delta)
    with pytest.raises(ValueError, match="fd_delta"):
        with_fd_delta(ALGORITHMS["maml"], delta)


def test_scheme_is_validated_and_rows_carry_delta() -> None:
    with pytest.raises(ValueError, match=r"scheme must be one of \('forward', 'symmetric'\)"):
        FiniteDifference(1e-3, "central")
    algo = with_fd_delta(ALGORITHMS["fdmaml-sym"], 0.05)
    assert algo.estimator == FiniteDifference(0.05, "symmetric") and algo.first_order
    assert with_fd_delta(ALGORITHMS["maml"], 0.05) == ALGORITHMS["maml"]
    assert ALGORITHMS["fdmaml"].estimator == FiniteDifference(scheme="forward")


def test_no_adapted_keys_gives_the_plain_gradient(mlp: nn.Module, loss_fn: LossFn,
                                                  tasks: Any) -> None:
    params = get_params(mlp)
    out = [_meta_grad(params, loss_fn, tasks, est, steps=2, keys=())
           for est in (SecondOrder(), FiniteDifference())]
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b)
