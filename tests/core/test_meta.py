from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from metarl.core import (
    FirstOrder,
    InnerLR,
    Params,
    SecondOrder,
    adapt_keys,
    adapt_trajectory,
    get_params,
    meta_loss,
    msl_weights,
    use_first_order,
)

LossFn = Callable[[Params, Any], torch.Tensor]

CASES: dict[str, dict[str, Any]] = {
    "maml": {"mode": "all", "kind": "fixed", "weights": None, "first_order": False},
    "maml_neg_lr": {"mode": "all", "kind": "neg", "weights": None, "first_order": False},
    "fomaml": {"mode": "all", "kind": "fixed", "weights": None, "first_order": True},
    "anil": {"mode": "head", "kind": "fixed", "weights": None, "first_order": False},
    "per_step": {"mode": "all", "kind": "per_step", "weights": None, "first_order": False},
    "per_tensor_anil": {"mode": "head", "kind": "per_tensor", "weights": None,
                        "first_order": False},
    "msl": {"mode": "all", "kind": "per_step", "weights": "steps", "first_order": False},
    "msl_with_step0": {"mode": "all", "kind": "fixed", "weights": "steps+1",
                       "first_order": False},
}


def _setup(mlp: nn.Module, case: dict[str, Any]) -> tuple[Params, tuple[str, ...], Any, Any]:
    params = get_params(mlp)
    keys = adapt_keys(params, case["mode"])
    rule: InnerLR | float
    if case["kind"] in ("fixed", "neg"):
        rule = 0.3 if case["kind"] == "fixed" else -0.2
    else:
        rule = InnerLR(keys, steps=2, init=0.3, kind=case["kind"])
        with torch.no_grad():  # distinct rates so a mix-up of steps or keys shows
            rule.lrs.add_(0.05 * torch.arange(rule.lrs.numel()).view_as(rule.lrs))
    weights = {None: None, "steps": torch.tensor([0.3, 0.7]),
               "steps+1": torch.tensor([0.2, 0.3, 0.5])}[case["weights"]]
    return params, keys, rule, weights


def _meta_params(params: Params, rule: Any) -> list[torch.Tensor]:
    return list(params.values()) + (list(rule.parameters()) if isinstance(rule, InnerLR) else [])


@pytest.mark.parametrize("name", list(CASES))
def test_vmap_equals_loop(mlp: nn.Module, loss_fn: LossFn, tasks: Any, name: str) -> None:
    params, keys, rule, weights = _setup(mlp, CASES[name])
    support, query = tasks
    results = []
    estimator = FirstOrder() if CASES[name]["first_order"] else SecondOrder()
    for vectorize in (True, False):
        loss, logs = meta_loss(params, loss_fn, support, query, steps=2, rule=rule, keys=keys,
                               estimator=estimator, step_weights=weights, vectorize=vectorize)
        grads = torch.autograd.grad(loss, _meta_params(params, rule))
        results.append((loss, logs, grads))
    (loss_v, logs_v, grads_v), (loss_l, logs_l, grads_l) = results
    torch.testing.assert_close(loss_v, loss_l, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(logs_v["query_losses"], logs_l["query_losses"])
    for g_v, g_l in zip(grads_v, grads_l, strict=True):
        assert float(g_v.abs().sum()) > 0
        torch.testing.assert_close(g_v, g_l, rtol=1e-10, atol=1e-12)


def _adapted_query_losses(params: Params, loss_fn: LossFn, tasks: Any, keys: tuple[str, ...],
                          rule: Any) -> torch.Tensor:
    (xs, ys), (xq, yq) = tasks
    rows = []
    for i in range(xs.shape[0]):
        traj = adapt_trajectory(params, loss_fn, [(xs[i], ys[i])] * 2, rule=rule, keys=keys,
                                first_order=False)
        rows.append(torch.stack([loss_fn(p, (xq[i], yq[i])) for p in traj]))
    return torch.stack(rows)  # (tasks, steps + 1)


def test_meta_loss_values_and_logs(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    reference = _adapted_query_losses(params, loss_fn, tasks, keys, 0.3)
    loss, logs = meta_loss(params, loss_fn, *tasks, steps=2, rule=0.3, keys=keys,
                           estimator=SecondOrder())
    torch.testing.assert_close(loss, reference[:, -1].mean())
    torch.testing.assert_close(logs["query_losses"], reference.mean(0).detach())
    assert not logs["query_losses"].requires_grad
    assert float(logs["query_loss_step0"]) == pytest.approx(float(reference[:, 0].mean().detach()))
    assert float(logs["query_loss_step2"]) < float(logs["query_loss_step0"])
    weights = torch.tensor([0.25, 0.75])
    msl, _ = meta_loss(params, loss_fn, *tasks, steps=2, rule=0.3, keys=keys,
                       estimator=SecondOrder(), step_weights=weights)
    torch.testing.assert_close(msl, 0.25 * reference[:, 1].mean() + 0.75 * reference[:, 2].mean())


def test_meta_loss_is_nil_without_adaptation(mlp: nn.Module, loss_fn: LossFn,
                                             tasks: Any) -> None:
    params = get_params(mlp)
    (_, _), (xq, yq) = tasks
    loss, _ = meta_loss(params, loss_fn, *tasks, steps=2, rule=0.3, keys=(),
                        estimator=SecondOrder())
    expected = torch.stack([loss_fn(params, (xq[i], yq[i])) for i in range(4)]).mean()
    torch.testing.assert_close(loss, expected)


def test_meta_loss_rejects_bad_shapes(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    params = get_params(mlp)
    support, (xq, yq) = tasks
    kwargs: dict[str, Any] = {"steps": 2, "rule": 0.1, "keys": tuple(params),
                              "estimator": SecondOrder()}
    with pytest.raises(ValueError, match="step_weights"):
        meta_loss(params, loss_fn, support, (xq, yq), step_weights=torch.ones(4), **kwargs)
    with pytest.raises(ValueError, match="query"):
        meta_loss(params, loss_fn, support, (xq[:3], yq[:3]), **kwargs)
    with pytest.raises(ValueError, match="support"):
        meta_loss(params, loss_fn, (support[0], support[1][:2]), (xq, yq), **kwargs)


def test_second_order_hvp_through_vmapped_meta_loss(mlp: nn.Module, loss_fn: LossFn,
                                                    tasks: Any) -> None:
    """The RL learner differentiates through the vmapped inner step twice (Fisher products)."""
    params = get_params(mlp)
    keys = tuple(params)
    gen = torch.Generator().manual_seed(5)
    v = {k: torch.randn(p.shape, generator=gen) for k, p in params.items()}

    def gradient(p: Params, create_graph: bool) -> list[torch.Tensor]:
        loss, _ = meta_loss(p, loss_fn, *tasks, steps=1, rule=0.3, keys=keys,
                            estimator=SecondOrder())
        return list(torch.autograd.grad(loss, list(p.values()), create_graph=create_graph))

    grads = gradient(params, True)
    dot = torch.stack([(g * v[k]).sum() for g, k in zip(grads, keys, strict=True)]).sum()
    hvp = torch.autograd.grad(dot, list(params.values()))
    eps = 1e-5
    plus, minus = (gradient({k: (params[k] + s * eps * v[k]).detach().requires_grad_()
                             for k in keys}, False) for s in (1.0, -1.0))
    for h, gp, gm in zip(hvp, plus, minus, strict=True):
        torch.testing.assert_close(h, (gp - gm) / (2 * eps), rtol=1e-6, atol=1e-8)


def test_msl_weights_follow_the_maml_plus_plus_schedule() -> None:
    torch.testing.assert_close(msl_weights(5, 0, 10), torch.full((5,), 0.2))
    # decay = 1/5/10 = 0.02 per epoch: non-final 0.2 - 3*0.02 = 0.14, final 1 - 4*0.14.
    torch.testing.assert_close(msl_weights(5, 3, 10), torch.tensor([0.14] * 4 + [0.44]))
    # Past the floor 0.03/5 = 0.006 the final weight is 1 - 4*0.006.
    torch.testing.assert_close(msl_weights(5, 100, 10), torch.tensor([0.006] * 4 + [0.976]))
    torch.testing.assert_close(msl_weights(1, 7, 10), torch.tensor([1.0]))
    for epoch in range(0, 40):
        w = msl_weights(3, epoch, 15, dtype=torch.float64)
        assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
        assert bool((w[:-1] >= 0.01 - 1e-12).all()) and float(w[-1]) >= 1 / 3 - 1e-12


@pytest.mark.parametrize(("args", "field"), [((0, 1, 1), "steps"), ((2, -1, 1), "epoch"),
                                             ((2, 1, 0), "anneal_epochs")])
def test_msl_weights_reject_bad_inputs(args: tuple[int, int, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        msl_weights(*args)


def test_use_first_order() -> None:
    assert [use_first_order(e, 2) for e in range(4)] == [True, True, False, False]
    assert not use_first_order(0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_vmap_equals_cpu_loop(mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    rule = InnerLR(keys, steps=2, init=0.3, kind="per_step")
    weights = msl_weights(2, 1, 5)
    loss, _ = meta_loss(params, loss_fn, *tasks, steps=2, rule=rule, keys=keys,
                        estimator=SecondOrder(), step_weights=weights, vectorize=False)
    mlp.cuda()
    rule.cuda()
    cuda_params = get_params(mlp)
    cuda_tasks = tuple(tuple(t.cuda() for t in part) for part in tasks)
    cuda_loss, _ = meta_loss(cuda_params, loss_fn, *cuda_tasks, steps=2, rule=rule, keys=keys,
                             estimator=SecondOrder(), step_weights=weights.cuda())
    torch.testing.assert_close(cuda_loss.cpu(), loss.detach(), rtol=1e-10, atol=1e-12)
    cuda_loss.backward()
    assert all(p.grad is not None and p.grad.is_cuda for p in cuda_params.values())
