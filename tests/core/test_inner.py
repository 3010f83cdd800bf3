from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from metarl.core import (
    InnerLR,
    Params,
    adapt,
    adapt_keys,
    adapt_trajectory,
    check_adapt_args,
    get_params,
    sgd_step,
)

LossFn = Callable[[Params, Any], torch.Tensor]
Data = tuple[torch.Tensor, torch.Tensor]


def _task(tasks: tuple[Data, Data], i: int = 0) -> tuple[Data, Data]:
    (xs, ys), (xq, yq) = tasks
    return (xs[i], ys[i]), (xq[i], yq[i])


def _post_loss(params: Params, loss_fn: LossFn, support: Data, query: Data, lr: float,
               keys: tuple[str, ...], first_order: bool = False, steps: int = 2) -> torch.Tensor:
    adapted = adapt(params, loss_fn, support, steps=steps, rule=lr, keys=keys,
                    first_order=first_order)
    assert isinstance(adapted, dict)
    return loss_fn(adapted, query)


def _central_differences(fn: Callable[[Params], torch.Tensor], params: Params,
                         eps: float = 1e-6) -> Params:
    base = {k: v.detach().clone() for k, v in params.items()}
    out = {}
    for key, value in base.items():
        grad = torch.zeros_like(value)
        for i in range(value.numel()):
            delta = torch.zeros_like(value).view(-1)
            delta[i] = eps
            plus = fn({**base, key: value + delta.view_as(value)})
            minus = fn({**base, key: value - delta.view_as(value)})
            grad.view(-1)[i] = (plus - minus) / (2 * eps)
        out[key] = grad
    return out


def _autograd(loss: torch.Tensor, params: Params) -> Params:
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(params, grads, strict=True))


def test_sgd_step_equals_torch_sgd(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    support, _ = _task(tasks)
    params = get_params(mlp)
    grads = _autograd(loss_fn(params, support), params)
    stepped = sgd_step(params, grads, dict.fromkeys(params, 0.3), tuple(params))
    reference = copy.deepcopy(mlp)
    opt = torch.optim.SGD(reference.parameters(), lr=0.3)
    loss_fn(get_params(reference), support).backward()
    opt.step()
    for key, value in get_params(reference).items():
        torch.testing.assert_close(stepped[key], value, rtol=0, atol=1e-15)
        assert not torch.equal(stepped[key], params[key])


def test_sgd_step_passes_other_keys_through() -> None:
    params = {"a": torch.ones(2), "b": torch.ones(3)}
    grads = {"a": torch.tensor([1.0, 2.0])}
    out = sgd_step(params, grads, {"a": torch.tensor(-0.5)}, ("a",))
    assert out is not params and out["b"] is params["b"]
    torch.testing.assert_close(out["a"], torch.tensor([1.5, 2.0]))


def test_one_step_matches_hand_computed_linear_regression() -> None:
    w = torch.tensor([[2.0]], requires_grad=True)
    x, y = torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]])

    def loss(p: Params, data: Data) -> torch.Tensor:
        return ((data[0] @ p["w"] - data[1]) ** 2).mean()

    # d/dw mean((w x - y)^2) = mean(2 x (w x - y)) = (2*1*2 + 2*3*5) / 2 = 17.
    out = adapt({"w": w}, loss, (x, y), steps=1, rule=0.1, keys=("w",), first_order=False)
    assert isinstance(out, dict)
    torch.testing.assert_close(out["w"], torch.tensor([[2.0 - 1.7]]))
    # Second order: d w'/d w = 1 - lr * mean(2 x^2) = 1 - 0.1 * 10 = 0.
    (dw,) = torch.autograd.grad(out["w"].sum(), w)
    torch.testing.assert_close(dw, torch.tensor([[0.0]]))


def test_zero_steps_or_no_keys_return_params_unchanged(mlp: nn.Module, loss_fn: LossFn,
                                                       tasks: Any) -> None:
    support, _ = _task(tasks)
    params = get_params(mlp)
    for steps, keys in ((0, tuple(params)), (3, ())):
        out = adapt(params, loss_fn, support, steps=steps, rule=0.1, keys=keys, first_order=False)
        assert isinstance(out, dict)
        assert all(out[k] is params[k] for k in params)


def test_trajectory(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    support, _ = _task(tasks)
    params = get_params(mlp)
    kwargs: dict[str, Any] = {"steps": 3, "rule": 0.1, "keys": tuple(params),
                              "first_order": False}
    traj = adapt_trajectory(params, loss_fn, [support] * 3, rule=0.1, keys=tuple(params),
                            first_order=False)
    last = adapt(params, loss_fn, support, **kwargs)
    assert isinstance(last, dict) and len(traj) == 4
    assert all(traj[0][k] is params[k] for k in params)
    losses = [float(loss_fn(p, support).detach()) for p in traj]
    assert losses == sorted(losses, reverse=True)  # small lr: the support loss decreases
    for k in params:
        assert torch.equal(traj[-1][k], last[k])


@pytest.mark.parametrize(("lr", "keys_mode"), [(0.3, "all"), (-0.2, "all"), (0.5, "head")])
def test_second_order_meta_gradient_matches_finite_differences(
        mlp: nn.Module, loss_fn: LossFn, tasks: Any, lr: float, keys_mode: str) -> None:
    support, query = _task(tasks)
    params = get_params(mlp)
    keys = adapt_keys(params, keys_mode)
    grads = _autograd(_post_loss(params, loss_fn, support, query, lr, keys), params)
    numeric = _central_differences(
        lambda p: _post_loss(p, loss_fn, support, query, lr, keys), params)
    first = _autograd(_post_loss(params, loss_fn, support, query, lr, keys, True), params)
    gap = max(float((grads[k] - first[k]).abs().max()) for k in params)
    assert gap > 1e-3  # the second-order terms matter here, so the check can fail
    for k in params:
        torch.testing.assert_close(grads[k], numeric[k], rtol=1e-6, atol=1e-8)


def test_first_order_equals_detached_reference(mlp: nn.Module, loss_fn: LossFn,
                                               tasks: Any) -> None:
    support, query = _task(tasks)
    params = get_params(mlp)
    keys = tuple(params)
    grads = _autograd(_post_loss(params, loss_fn, support, query, 0.3, keys, True), params)
    current = dict(params)
    for _ in range(2):
        inner = torch.autograd.grad(loss_fn(current, support), [current[k] for k in keys])
        current = {k: current[k] - 0.3 * g.detach() for k, g in zip(keys, inner, strict=True)}
    reference = _autograd(loss_fn(current, query), params)
    for k in params:
        torch.testing.assert_close(grads[k], reference[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("first_order", [False, True])
def test_anil_keeps_body_identical_and_trains_it(mlp: nn.Module, loss_fn: LossFn, tasks: Any,
                                                 first_order: bool) -> None:
    support, query = _task(tasks)
    params = get_params(mlp)
    before = {k: v.detach().clone() for k, v in params.items()}
    head = adapt_keys(params, "head")
    adapted = adapt(params, loss_fn, support, steps=2, rule=0.5, keys=head,
                    first_order=first_order)
    assert isinstance(adapted, dict)
    for k in params:
        if k in head:
            assert not torch.equal(adapted[k], before[k])
        else:
            assert adapted[k] is params[k] and torch.equal(adapted[k], before[k])
    grads = _autograd(loss_fn(adapted, query), params)
    assert all(float(g.abs().sum()) > 0 for g in grads.values())


@pytest.mark.parametrize("kind", ["per_tensor", "per_step"])
@pytest.mark.parametrize("first_order", [False, True])
def test_learned_lrs_receive_gradients(mlp: nn.Module, loss_fn: LossFn, tasks: Any, kind: str,
                                       first_order: bool) -> None:
    support, query = _task(tasks)
    params = get_params(mlp)
    rule = InnerLR(tuple(params), steps=2, init=0.1, kind=kind)
    adapted = adapt(params, loss_fn, support, steps=2, rule=rule, keys=tuple(params),
                    first_order=first_order)
    assert isinstance(adapted, dict)
    loss_fn(adapted, query).backward()
    assert rule.lrs.grad is not None
    assert rule.lrs.shape == ((2 if kind == "per_step" else 1), len(params))
    assert bool((rule.lrs.grad.abs() > 0).all())


def test_inner_lr_rule_values() -> None:
    fixed = InnerLR(("a", "b"), steps=1, init=-0.25, kind="fixed")
    assert list(fixed.parameters()) == [] and "fixed_lr" in dict(fixed.named_buffers())
    assert float(fixed.lr(5, "b")) == -0.25
    assert float(InnerLR(("a",), steps=1, init=0.0, kind="fixed").lr(0, "a")) == 0.0
    per_step = InnerLR(("a", "b"), steps=2, init=0.1, kind="per_step")
    with torch.no_grad():
        per_step.lrs.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert [float(per_step.lr(s, "b").detach()) for s in range(4)] == [2.0, 4.0, 4.0, 4.0]
    per_tensor = InnerLR(("a", "b"), steps=3, init=0.1, kind="per_tensor")
    assert float(per_tensor.lr(2, "a").detach()) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="key 'c'"):
        per_tensor.lr(0, "c")


@pytest.mark.parametrize("init", [float("nan"), float("inf")])
def test_inner_lr_rejects_non_finite(init: float) -> None:
    with pytest.raises(ValueError, match="inner_lr"):
        InnerLR(("a",), steps=1, init=init, kind="fixed")
    with pytest.raises(ValueError, match="inner_lr"):
        check_adapt_args({"a": torch.ones(1)}, ("a",), init)


def test_bad_rule_and_adapt_arguments_raise() -> None:
    with pytest.raises(ValueError, match=r"kind.*'fixed', 'per_tensor', 'per_step'"):
        InnerLR(("a",), steps=1, init=0.1, kind="adam")
    with pytest.raises(ValueError, match="steps"):
        InnerLR(("a",), steps=0, init=0.1, kind="per_step")
    params = {"a": torch.ones(1)}
    with pytest.raises(ValueError, match="steps"):
        check_adapt_args(params, ("a",), 0.1, steps=-1)
    with pytest.raises(ValueError, match=r"keys \['z'\]"):
        check_adapt_args(params, ("z",), 0.1)
    with pytest.raises(ValueError, match=r"keys \['a'\] have no rate"):
        check_adapt_args(params, ("a",), InnerLR(("b",), steps=1, init=0.1, kind="fixed"))


def test_adapt_inside_vmap_matches_per_task_loop(mlp: nn.Module, loss_fn: LossFn,
                                                 tasks: Any) -> None:
    (xs, ys), _ = tasks
    params = get_params(mlp)
    rule = InnerLR(tuple(params), steps=2, init=0.2, kind="per_step")

    def one(x: torch.Tensor, y: torch.Tensor) -> Params:
        out = adapt(params, loss_fn, (x, y), steps=2, rule=rule, keys=tuple(params),
                    first_order=False)
        assert isinstance(out, dict)
        return out

    batched = torch.func.vmap(one)(xs, ys)
    for i in range(xs.shape[0]):
        single = one(xs[i], ys[i])
        for k in params:
            torch.testing.assert_close(batched[k][i], single[k], rtol=1e-12, atol=1e-14)
    assert not torch.allclose(batched["4.bias"][0], batched["4.bias"][1])


def test_hessian_vector_product_through_adapt(mlp: nn.Module, loss_fn: LossFn,
                                              tasks: Any) -> None:
    """d/dtheta <grad L(adapt(theta)), v> equals central differences of the gradient."""
    support, query = _task(tasks)
    params = get_params(mlp)
    keys = tuple(params)
    gen = torch.Generator().manual_seed(3)
    v = {k: torch.randn(p.shape, generator=gen) for k, p in params.items()}

    def gradient(p: Params, create_graph: bool) -> Params:
        loss = _post_loss(p, loss_fn, support, query, 0.3, keys)
        grads = torch.autograd.grad(loss, list(p.values()), create_graph=create_graph)
        return dict(zip(p, grads, strict=True))

    grads = gradient(params, create_graph=True)
    dot = sum((grads[k] * v[k]).sum() for k in keys)
    assert isinstance(dot, torch.Tensor)
    hvp = _autograd(dot, params)
    eps = 1e-5
    shifted = [{k: (params[k] + s * eps * v[k]).detach().requires_grad_() for k in keys}
               for s in (1.0, -1.0)]
    plus, minus = (gradient(p, create_graph=False) for p in shifted)
    for k in keys:
        torch.testing.assert_close(hvp[k], (plus[k] - minus[k]) / (2 * eps),
                                   rtol=1e-6, atol=1e-8)
