"""The meta-learner's step against a hand-written per-task autograd reference, and evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metarl.core import ALGO_NAMES, FirstOrder, SecondOrder, get_algorithm, msl_weights
from metarl.supervised.evaluate import summarize, task_curves
from metarl.supervised.models import build_model
from metarl.supervised.tasks import sample_sinusoid
from metarl.supervised.trainer import SupervisedMetaLearner


def make_learner(algo: str, **overrides: object) -> SupervisedMetaLearner:
    torch.manual_seed(0)
    kwargs: dict[str, object] = dict(algorithm=get_algorithm(algo), inner_steps=1,
                                     inner_lr=0.01,
                                     head_selector=None, outer_lr=1e-3, total_steps=10,
                                     cosine=False, clip_norm=None, msl=False,
                                     msl_anneal_epochs=5, first_order_until=0, epoch_length=10,
                                     device=torch.device("cpu"))
    kwargs.update(overrides)
    return SupervisedMetaLearner(build_model("sinusoid"), **kwargs)  # type: ignore[arg-type]


def mse(model: nn.Module, params: dict[str, torch.Tensor], x: torch.Tensor,
        y: torch.Tensor) -> torch.Tensor:
    return ((torch.func.functional_call(model, params, (x,)) - y) ** 2).mean()


def reference_grads(learner: SupervisedMetaLearner, support: dict[str, torch.Tensor],
                    query: dict[str, torch.Tensor], first_order: bool) -> list[torch.Tensor]:
    """MAML meta-gradient with a Python loop and torch.autograd.grad (Finn et al., 2017)."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in learner.params.items()}
    lrs = {k: learner.rule.lr(0, k).detach().clone().requires_grad_(True) for k in learner.keys}
    losses = []
    for t in range(support["x"].shape[0]):
        inner = mse(learner.model, params, support["x"][t], support["y"][t])
        grads = torch.autograd.grad(inner, [params[k] for k in learner.keys],
                                    create_graph=not first_order)
        adapted = dict(params)
        for k, g in zip(learner.keys, grads, strict=True):
            adapted[k] = params[k] - lrs[k] * g
        losses.append(mse(learner.model, adapted, query["x"][t], query["y"][t]))
    meta = torch.stack(losses).mean()
    leaves = list(params.values()) + (list(lrs.values()) if list(learner.rule.parameters())
                                      else [])
    return list(torch.autograd.grad(meta, leaves, allow_unused=True))


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_step_matches_per_task_autograd_reference(algo: str) -> None:
    learner = make_learner(algo)
    support, query = sample_sinusoid(6, 5, 7, torch.Generator().manual_seed(1))
    expected = reference_grads(learner, support, query, first_order=algo == "fomaml")
    # Finite differences (fdmaml*) of a ReLU net's gradients see the jumps at the kinks, so
    # they are not compared here (tests/core/test_finite_difference.py checks them).
    fd = algo.startswith("fdmaml")
    before = {k: v.detach().clone() for k, v in learner.params.items()}
    logs = learner.step(support, query, iteration=0)
    got = [p.grad for p in learner.params.values()]
    if learner.rule.learned:
        got += [learner.rule.lrs.grad[0, i] for i in range(len(learner.keys))]
    for g, e in zip(got, expected, strict=True):
        assert g is not None and e is not None
        if not fd:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
        assert float(g.abs().max()) > 0  # every meta-parameter is connected
    # Adam's first step moves each entry by lr * g / (|g| + eps).
    for (k, p), g in zip(learner.params.items(), expected[:len(before)], strict=True):
        if fd:
            break
        step = 1e-3 * g / (g.abs() + 1e-8)
        torch.testing.assert_close(before[k] - p.detach(), step, rtol=1e-3, atol=1e-7)
    assert logs["loss"] == pytest.approx(logs["query_loss_step1"])


def test_algo_keys_and_order() -> None:
    assert make_learner("anil").keys == ("4.weight", "4.bias")
    assert len(make_learner("maml").keys) == 6
    assert isinstance(make_learner("fomaml").estimator(10**6), FirstOrder)
    assert isinstance(make_learner("maml").estimator(0), SecondOrder)
    assert list(make_learner("metasgd").rule.parameters())
    assert make_learner("lslr").rule.kind == "per_step"
    assert not list(make_learner("maml").rule.parameters())
    with pytest.raises(ValueError, match="algo must be one of"):
        get_algorithm("reptile")


def test_maml_plus_plus_schedules() -> None:
    learner = make_learner("maml", inner_steps=3, msl=True, first_order_until=2,
                           epoch_length=10, msl_anneal_epochs=5)
    assert isinstance(learner.estimator(19), FirstOrder)
    assert isinstance(learner.estimator(20), SecondOrder)
    weights = learner.step_weights(25)
    assert weights is not None
    torch.testing.assert_close(weights, msl_weights(3, 2, 5))
    assert make_learner("maml").step_weights(0) is None
    support, query = sample_sinusoid(4, 5, 5, torch.Generator().manual_seed(0))
    logs = learner.step(support, query, iteration=25)
    w = weights.tolist()
    expected = sum(wi * logs[f"query_loss_step{i + 1}"] for i, wi in enumerate(w))
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)


def test_task_curves_match_manual_sgd_steps() -> None:
    learner = make_learner("maml")
    support, query = sample_sinusoid(5, 10, 20, torch.Generator().manual_seed(2))
    curves = task_curves(learner.params, learner.loss_fn, support, query, steps=2, rule=-0.02,
                         keys=learner.keys, chunk=2)
    assert curves.shape == (5, 3)
    for t in range(5):
        params = {k: v.detach().clone().requires_grad_(True)
                  for k, v in learner.params.items()}
        for step in range(3):
            loss = mse(learner.model, params, query["x"][t], query["y"][t])
            torch.testing.assert_close(curves[t, step], loss.detach(), rtol=1e-5, atol=1e-6)
            inner = mse(learner.model, params, support["x"][t], support["y"][t])
            grads = torch.autograd.grad(inner, list(params.values()))
            params = {k: (v + 0.02 * g).detach().requires_grad_(True)
                      for (k, v), g in zip(params.items(), grads, strict=True)}


def test_summarize_mean_and_ci() -> None:
    curves = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    stats = summarize(curves)
    assert stats["mse_mean"] == [2.0, 0.0]
    # t_{0.975, 1} * std / sqrt(2) = 12.706 * sqrt(2) / sqrt(2)
    assert stats["mse_ci95"][0] == pytest.approx(12.706)
    assert stats["mse_ci95"][1] == 0.0
    assert stats["mse_median"] == [2.0, 0.0] and stats["diverged"] == [0, 0]


def test_summarize_counts_diverged_tasks() -> None:
    curves = torch.tensor([[1.0, float("nan")], [3.0, 0.5], [5.0, 0.7], [2.0, 0.6]])
    stats = summarize(curves)
    assert stats["diverged"] == [0, 1]
    assert stats["mse_median"] == pytest.approx([2.5, 0.65])  # the NaN task ranks last
    assert np.isnan(stats["mse_mean"][1])


def test_compiled_meta_iteration_gives_the_eager_update() -> None:
    """``compile=True`` (torch.compile of the inner steps, meta-loss and meta-gradient) takes
    the same Adam steps as the eager path: 2 inner steps, second order, three iterations,
    parameters and logs equal to float32 tolerance."""
    eager, compiled = make_learner("maml", inner_steps=2), make_learner("maml", inner_steps=2,
                                                                       compile=True)
    assert compiled.compiled and not eager.compiled
    gen = torch.Generator().manual_seed(0)
    for i in range(3):
        support, query = sample_sinusoid(4, 10, 10, gen)
        logs_e, logs_c = eager.step(support, query, i), compiled.step(support, query, i)
        assert logs_e.keys() == logs_c.keys()
        for key in ("loss", "grad_norm", "query_loss_step0", "query_loss_step2"):
            assert logs_c[key] == pytest.approx(logs_e[key], rel=1e-5, abs=1e-7), key
    for key, value in eager.params.items():
        torch.testing.assert_close(compiled.params[key], value, rtol=1e-5, atol=1e-6)
        assert not torch.equal(value, make_learner("maml").params[key]) or "bias" in key
