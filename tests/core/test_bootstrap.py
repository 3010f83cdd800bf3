"""Bootstrapped (BMG) and optimistic meta-gradients: identities, gradient checks, options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from metarl.core import InnerLR, Params, SecondOrder, adapt, get_params, meta_loss
from metarl.core.bootstrap import (
    MATCHES,
    BootstrapOptions,
    FrozenLR,
    bootstrap_target,
    bootstrapped_loss,
    bootstrapped_lr_loss,
    check_bootstrap_options,
    check_k,
    maml_target,
    matching_loss,
    meta_gradient_loss,
    unroll,
)
from metarl.core.optimistic import check_meta_step, meta_step

DIM = 6


def quadratic() -> tuple[torch.Tensor, Callable[[Params], torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    q = torch.linalg.qr(torch.randn(DIM, DIM, generator=gen))[0]
    a = q @ torch.diag(torch.logspace(-1, 0.5, DIM)) @ q.T

    def f(x: Params) -> torch.Tensor:
        return 0.5 * x["x"] @ a @ x["x"] + 0.1 * torch.tanh(x["x"]).sum()

    return torch.randn(DIM, generator=gen), f


def step_size_rule(f: Callable[[Params], torch.Tensor]) -> Callable[[Params, Params], Params]:
    """``x - w * grad f(x)`` with per-coordinate step sizes ``w`` (differentiable in w)."""

    def rule(x: Params, w: Params) -> Params:
        return {"x": x["x"] - w["lr"] * torch.func.grad(f)(x)["x"]}

    return rule


def x_plus_w(x: Params, w: Params) -> Params:
    return {"x": x["x"] + w["w"]}


def grad_of(loss: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(loss, tensor)[0]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_squared_l1_is_step_times_the_meta_gradient(k: int) -> None:
    """K differentiable steps, L = 1: d mu / dw = step * d f(x_K(w)) / dw."""
    x0, f = quadratic()
    rule = step_size_rule(f)
    w = {"lr": torch.full((DIM,), 0.3, requires_grad=True)}
    bmg, x_k = bootstrapped_loss({"x": x0}, w, rule, f, k=k,
                                 options=BootstrapOptions(lookahead=1, step=0.7))
    ordinary, x_k2 = meta_gradient_loss({"x": x0}, w, rule, f, k=k)
    torch.testing.assert_close(x_k["x"], x_k2["x"])
    torch.testing.assert_close(grad_of(bmg, w["lr"]), 0.7 * grad_of(ordinary, w["lr"]),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind,steps", [("per_tensor", 1), ("per_step", 1), ("per_step", 2)])
def test_maml_lr_squared_l1_is_step_times_the_maml_lr_gradient(
        mlp: nn.Module, loss_fn: Callable[[Params, Any], torch.Tensor], tasks: Any, kind: str,
        steps: int) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    rule = InnerLR(keys, steps, 0.1, kind)
    support, query = tasks
    bmg = bootstrapped_lr_loss(params, loss_fn, support, query, steps=steps, rule=rule,
                               keys=keys, options=BootstrapOptions(1, 0.05, "squared"))
    ordinary, _ = meta_loss(params, loss_fn, support, query, steps=steps, rule=rule, keys=keys,
                            estimator=SecondOrder())
    bmg_grad = grad_of(bmg, rule.lrs)
    assert bmg_grad.abs().min() > 0
    torch.testing.assert_close(bmg_grad, 0.05 * grad_of(ordinary, rule.lrs),
                               rtol=1e-10, atol=1e-14)
    # Only the rates learn from BMG: the initialisation is detached inside.
    assert not any(p.grad is not None for p in params.values())


def test_maml_lr_loss_vmap_equals_the_task_loop(
        mlp: nn.Module, loss_fn: Callable[[Params, Any], torch.Tensor], tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    rule = InnerLR(keys, 2, 0.1, "per_step")
    opts = BootstrapOptions(3, 0.05, "squared")
    values = [bootstrapped_lr_loss(params, loss_fn, *tasks, steps=2, rule=rule, keys=keys,
                                   options=opts, vectorize=v) for v in (True, False)]
    torch.testing.assert_close(values[0], values[1])
    torch.testing.assert_close(grad_of(values[0], rule.lrs), grad_of(values[1], rule.lrs))


def _central_difference(fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor,
                        eps: float = 1e-6) -> torch.Tensor:
    out = torch.zeros_like(w)
    flat = out.view(-1)
    for i in range(w.numel()):
        e = torch.zeros_like(w).view(-1)
        e[i] = eps
        e = e.view_as(w)
        flat[i] = (fn(w + e) - fn(w - e)) / (2 * eps)
    return out


@pytest.mark.parametrize("lookahead,k", [(1, 1), (3, 2)])
def test_online_bmg_gradient_matches_finite_differences(lookahead: int, k: int) -> None:
    """The target is a constant: d/dw mu(x~(w0), x_K(w)) at w0, by central differences."""
    x0, f = quadratic()
    rule = step_size_rule(f)
    w0 = torch.full((DIM,), 0.3)
    w = {"lr": w0.clone().requires_grad_(True)}
    opts = BootstrapOptions(lookahead, 0.5)
    loss, x_k = bootstrapped_loss({"x": x0}, w, rule, f, k=k, options=opts)
    target = bootstrap_target(x_k, w, rule, f, lookahead=lookahead, step=0.5)

    def mu(lr: torch.Tensor) -> torch.Tensor:
        return matching_loss(target, unroll({"x": x0}, {"lr": lr}, rule, k)[-1], "squared")

    torch.testing.assert_close(grad_of(loss, w["lr"]), _central_difference(mu, w0),
                               rtol=1e-6, atol=1e-9)


def test_maml_lr_kl_gradient_matches_finite_differences(
        mlp: nn.Module, loss_fn: Callable[[Params, Any], torch.Tensor], tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    support, query = tasks

    def predictive(p: Params, data: Any) -> torch.distributions.Distribution:
        mean = torch.func.functional_call(mlp, p, (data[0],))
        return torch.distributions.Normal(mean, torch.ones_like(mean), validate_args=False)

    opts = BootstrapOptions(2, 0.05, "kl")
    rule = InnerLR(keys, 1, 0.1, "per_tensor")
    loss = bootstrapped_lr_loss(params, loss_fn, support, query, steps=1, rule=rule, keys=keys,
                                options=opts, distribution=predictive)
    analytic = grad_of(loss, rule.lrs)
    base = rule.lrs.detach().clone()  # the targets use these rates while the rates move

    def mu(lrs: torch.Tensor) -> torch.Tensor:
        moved = InnerLR(keys, 1, 0.1, "per_tensor")
        total = torch.zeros(())
        for i in range(support[0].shape[0]):
            sup = (support[0][i], support[1][i])
            qry = (query[0][i], query[1][i])
            with torch.no_grad():
                moved.lrs.copy_(base)
            x_k0 = adapt(params, loss_fn, sup, steps=1, rule=FrozenLR(moved), keys=keys,
                         first_order=False)
            target = maml_target(x_k0, (loss_fn, sup, loss_fn, qry, moved, keys), 1, opts)
            with torch.no_grad():
                moved.lrs.copy_(lrs)
            x_k = adapt(params, loss_fn, sup, steps=1, rule=moved, keys=keys, first_order=False)
            total = total + matching_loss(target, x_k, "kl",
                                          distribution=functools.partial(predictive, data=qry))
        return total.detach() / support[0].shape[0]

    torch.testing.assert_close(analytic, _central_difference(mu, base), rtol=1e-5, atol=1e-8)


def test_kl_of_unit_gaussians_is_half_the_squared_prediction_gap() -> None:
    a, b = torch.randn(5), torch.randn(5, requires_grad=True)

    def dist(p: Params) -> torch.distributions.Distribution:
        return torch.distributions.Normal(p["m"], torch.ones(5))

    kl = matching_loss({"m": a}, {"m": b}, "kl", distribution=dist)
    torch.testing.assert_close(kl, 0.5 * ((a - b) ** 2).mean())
    with pytest.raises(ValueError, match="distribution"):
        matching_loss({"m": a}, {"m": b}, "kl")


def _sgd_reference(x0: torch.Tensor, f: Callable[[Params], torch.Tensor], steps: int,
                   **sgd: Any) -> list[torch.Tensor]:
    p = x0.clone().requires_grad_(True)
    opt = torch.optim.SGD([p], **sgd)
    path = [p.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        f({"x": p}).backward()
        opt.step()
        path.append(p.detach().clone())
    return path


def _meta_learn_x_plus_w(x0: torch.Tensor, f: Callable[[Params], torch.Tensor], steps: int,
                         method: str, lr: float, decay: float, optimism: float = 0.0,
                         lookahead: int = 1,
                         previous: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Online meta-learning of ``w`` in ``x' = x + w``; returns x_1, x_2, ... (x_1 = x_0)."""
    x, w = {"x": x0.clone()}, {"w": torch.zeros(DIM)}
    path = []
    for _ in range(steps + 1):
        wv = {"w": w["w"].clone().requires_grad_(True)}
        if method == "gradient":
            loss, x = meta_gradient_loss(x, wv, x_plus_w, f, k=1)
        else:
            loss, x = bootstrapped_loss(x, wv, x_plus_w, f, k=1,
                                        options=BootstrapOptions(lookahead, 0.25))
        x = {"x": x["x"].detach()}
        path.append(x["x"].clone())
        grads = {"w": grad_of(loss, wv["w"])}
        w = meta_step(w, grads, lr=lr, decay=decay, optimism=optimism, previous=previous)
        previous = grads
    return path


@pytest.mark.parametrize("method,meta_lr", [("gradient", 0.1), ("bmg", 0.4)])
def test_meta_learning_x_plus_w_is_heavy_ball(method: str, meta_lr: float) -> None:
    """``w <- 0.9 w - lr * d f(x + w)/dw`` is torch's SGD momentum 0.9 (no dampening),
    with lr 0.1; BMG (L = 1, step 0.25) needs a meta-lr 4 times larger for the same."""
    x0, f = quadratic()
    reference = _sgd_reference(x0, f, 30, lr=0.1, momentum=0.9)
    ours = _meta_learn_x_plus_w(x0, f, 30, method, meta_lr, decay=0.9)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert (reference[-1] - reference[1]).norm() > 0.1


def test_optimistic_x_plus_w_is_nesterov() -> None:
    x0, f = quadratic()
    reference = _sgd_reference(x0, f, 30, lr=0.1, momentum=0.9, nesterov=True)
    ours = _meta_learn_x_plus_w(x0, f, 30, "gradient", 0.1, decay=0.9, optimism=0.9)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    heavy = _sgd_reference(x0, f, 30, lr=0.1, momentum=0.9)
    assert (heavy[-1] - reference[-1]).norm() > 1e-3


def test_bmg_two_steps_ahead_on_x_plus_w_is_optimistic_on_a_quadratic() -> None:
    """On ``f = 0.5 x^T A x``, the L = 2 target's gradient at ``x_{t+1} + w`` is
    ``g_t + A w = g_t + (g_t - g_{t-1})``: BMG (meta-lr b, decay d, step s) is the optimistic
    meta-step with decay ``d + b``, lr ``b s`` and optimism 1 (Flennerhag et al., 2023)."""
    x0, _ = quadratic()
    gen = torch.Generator().manual_seed(5)
    m = torch.randn(DIM, DIM, generator=gen)
    a = m @ m.T / DIM + 0.1 * torch.eye(DIM)

    def f(x: Params) -> torch.Tensor:
        return 0.5 * x["x"] @ a @ x["x"]

    bmg = _meta_learn_x_plus_w(x0, f, 25, "bmg", 0.8, decay=0.1, lookahead=2)
    first = {"w": a @ x0}  # g_{-1} = grad f(x_0): the first step has w = 0
    optimistic = _meta_learn_x_plus_w(x0, f, 25, "gradient", 0.8 * 0.25, decay=0.9,
                                      optimism=1.0, previous=first)
    for p, q in zip(bmg, optimistic, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)
    assert (bmg[-1] - bmg[1]).norm() > 0.1


def test_frozen_lr_has_the_values_and_no_gradient() -> None:
    rule = InnerLR(("a", "b"), 2, 0.2, "per_step")
    frozen = FrozenLR(rule)
    assert frozen.learned and list(frozen.parameters()) == []
    with torch.no_grad():
        rule.lrs[1, 0] = -0.5
    assert float(frozen.lr(1, "a")) == -0.5 and not frozen.lr(1, "a").requires_grad


@pytest.mark.parametrize("kwargs,name", [
    ({"lookahead": 0}, "lookahead"), ({"lookahead": 1.5}, "lookahead"),
    ({"step": 0.0}, "step"), ({"step": float("nan")}, "step"), ({"step": -1.0}, "step"),
    ({"match": "cosine"}, "match")])
def test_bad_options_name_the_option_and_allowed_values(kwargs: dict[str, Any],
                                                        name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be") as info:
        BootstrapOptions(**kwargs)
    if name == "match":
        assert str(MATCHES) in str(info.value)


def test_bad_options_use_the_callers_names() -> None:
    with pytest.raises(ValueError, match="^bmg_l must be an int >= 1"):
        check_bootstrap_options(0, 1.0, "squared", ("bmg_l", "bmg_step", "bmg_match"))
    with pytest.raises(ValueError, match=r"^bmg_match must be one of \('squared', 'kl'\)"):
        check_bootstrap_options(1, 1.0, "l2", ("bmg_l", "bmg_step", "bmg_match"))
    with pytest.raises(ValueError, match="^k must be an int >= 1"):
        check_k(0)
    x0, f = quadratic()
    with pytest.raises(ValueError, match="^k must be"):
        bootstrapped_loss({"x": x0}, {"w": torch.zeros(DIM)}, x_plus_w, f, k=0,
                          options=BootstrapOptions())
    with pytest.raises(ValueError, match="^decay must be"):
        check_meta_step(0.1, float("inf"), 0.0)
    with pytest.raises(ValueError, match="^optimism must be"):
        check_meta_step(0.1, 0.5, -1.0)
    with pytest.raises(ValueError, match="^lr must be"):
        check_meta_step(0.0, 0.5, 0.0)


def test_maml_lr_loss_refuses_a_fixed_rule_and_kl_without_distribution(
        mlp: nn.Module, loss_fn: Callable[[Params, Any], torch.Tensor], tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    with pytest.raises(ValueError, match="must be learned"):
        bootstrapped_lr_loss(params, loss_fn, *tasks, steps=1,
                             rule=InnerLR(keys, 1, 0.1, "fixed"), keys=keys,
                             options=BootstrapOptions())
    with pytest.raises(ValueError, match="needs a distribution"):
        bootstrapped_lr_loss(params, loss_fn, *tasks, steps=1,
                             rule=InnerLR(keys, 1, 0.1, "per_tensor"), keys=keys,
                             options=BootstrapOptions(match="kl"))
