"""The meta-algorithm seam: the table, the value's validation, estimators as plug-ins,
per-step losses, and the vmap-or-loop path chooser."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from metarl.core import (
    ALGO_NAMES,
    ALGORITHMS,
    Estimator,
    FirstOrder,
    MetaAlgorithm,
    Params,
    PathChooser,
    PerStepLoss,
    SecondOrder,
    TaskProblem,
    adapt_trajectory,
    get_algorithm,
    get_params,
    map_tasks,
    meta_loss,
    with_gradient,
)

LossFn = Callable[[Params, Any], torch.Tensor]


def test_table_names_every_algorithm_once_with_its_paper() -> None:
    assert ALGO_NAMES == tuple(ALGORITHMS) == ("maml", "fomaml", "anil", "metasgd", "lslr",
                                             "fdmaml", "fdmaml-sym")
    for name, algo in ALGORITHMS.items():
        assert algo.name == name and algo.reference
    assert (get_algorithm("anil").adapt, get_algorithm("metasgd").lr_kind) == ("head",
                                                                               "per_tensor")
    assert get_algorithm("fomaml").first_order and not get_algorithm("maml").first_order
    with pytest.raises(ValueError, match=r"algo must be one of \('maml'"):
        get_algorithm("reptile")


@pytest.mark.parametrize(("changes", "field"), [
    ({"adapt": "body"}, "adapt"), ({"lr_kind": "adam"}, "lr_kind"),
    ({"outer": "sgd"}, "outer"), ({"estimator": "second_order"}, "estimator"),
])
def test_algorithm_value_is_validated(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        get_algorithm("maml").replace(**changes)


@dataclass(frozen=True)
class FixedGradient(Estimator):
    """A toy estimator defined outside the core: value = the query loss, gradient = ones."""

    name: ClassVar[str] = "fixed_gradient"

    def trajectory(self, params: Params, problem: TaskProblem) -> list[Params]:
        return FirstOrder().trajectory(params, problem)

    def outer_loss(self, params: Params, trajectory: Any, step: int,
                   problem: TaskProblem) -> torch.Tensor:
        value = super().outer_loss(params, trajectory, step, problem)
        return with_gradient(value, params, {k: torch.ones_like(v) for k, v in params.items()})


def test_a_new_estimator_plugs_into_meta_loss_unchanged(mlp: nn.Module, loss_fn: LossFn,
                                                        tasks: Any) -> None:
    """Adding an estimator needs no change to meta_loss: its value and gradient are used."""
    params = get_params(mlp)
    keys = tuple(params)
    reference, _ = meta_loss(params, loss_fn, *tasks, steps=1, rule=0.1, keys=keys,
                             estimator=SecondOrder())
    for vectorize in (True, False):
        loss, _ = meta_loss(params, loss_fn, *tasks, steps=1, rule=0.1, keys=keys,
                            estimator=FixedGradient(), vectorize=vectorize)
        torch.testing.assert_close(loss, reference.detach())
        grads = torch.autograd.grad(loss, list(params.values()))
        for g in grads:  # the mean over tasks of a gradient of ones
            torch.testing.assert_close(g, torch.ones_like(g))
    algo = MetaAlgorithm("toy", "all", "fixed", FixedGradient())
    assert algo.first_order and algo.estimator.name == "fixed_gradient"


def test_with_gradient_has_the_value_and_the_gradient() -> None:
    p = {"a": torch.tensor([1.0, 2.0], requires_grad=True)}
    out = with_gradient(torch.tensor(5.0), p, {"a": torch.tensor([3.0, -1.0])})
    assert float(out.detach()) == 5.0
    (grad,) = torch.autograd.grad(out, [p["a"]])
    torch.testing.assert_close(grad, torch.tensor([3.0, -1.0]))


def test_per_step_loss_sees_the_step_index() -> None:
    seen: list[int] = []

    def loss(params: Params, data: Any, step: int) -> torch.Tensor:
        seen.append(step)
        return (step + 1.0) * (params["w"] ** 2).sum()

    params = {"w": torch.tensor([1.0])}
    traj = adapt_trajectory(params, PerStepLoss(loss), [None] * 3, rule=0.1, keys=("w",),
                            first_order=False)
    assert seen == [0, 1, 2]
    # w <- w - 0.1 * 2 (step + 1) w: factors 0.8, 0.6, 0.4
    torch.testing.assert_close(traj[-1]["w"], torch.tensor([0.8 * 0.6 * 0.4]))


def test_map_tasks_vmap_equals_loop() -> None:
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    w = torch.tensor([1.0, -2.0, 0.5])

    def fn(shared: torch.Tensor, xi: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"dot": (shared * xi).sum(), "sq": xi**2}

    a = map_tasks(fn, (w, x), (None, 0), vectorize=True)
    b = map_tasks(fn, (w, x), (None, 0), vectorize=False)
    for k in a:
        torch.testing.assert_close(a[k], b[k])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_path_chooser_times_both_keeps_the_faster_per_size() -> None:
    clock = Clock()
    cost = {True: 1.0, False: 3.0}
    calls: list[bool] = []

    def probe(vectorize: bool) -> None:
        calls.append(vectorize)
        clock.now += cost[vectorize]

    chooser = PathChooser("auto", timer=clock, repeats=1)
    assert chooser.known((4, 100)) is None
    assert chooser.vectorize((4, 100), probe) and calls == [True, False]
    assert chooser.choices[(4, 100)] == {"batched_s": 1.0, "loop_s": 3.0, "batched": 1.0}
    assert chooser.vectorize((4, 100), probe) and len(calls) == 2  # remembered
    cost[True] = 9.0
    assert not chooser.vectorize((4, 4000), probe) and len(calls) == 4  # new size: re-timed
    other = PathChooser("auto")
    other.load_state_dict(chooser.state_dict())
    assert other.choices == chooser.choices
    assert PathChooser("loop").vectorize((1, 1), probe) is False and len(calls) == 4
    with pytest.raises(ValueError, match="meta_update_path"):
        PathChooser("fastest")


def test_first_and_second_order_estimators_differ_only_in_the_graph(
        mlp: nn.Module, loss_fn: LossFn, tasks: Any) -> None:
    params = get_params(mlp)
    keys = tuple(params)
    (xs, ys), (xq, yq) = tasks
    problem = TaskProblem(loss_fn, [(xs[0], ys[0])] * 2, loss_fn, (xq[0], yq[0]), 0.2, keys)
    second = SecondOrder().trajectory(params, problem)
    first = FirstOrder().trajectory(params, problem)
    for k in keys:
        torch.testing.assert_close(second[-1][k], first[-1][k])
    g2 = torch.autograd.grad(loss_fn(second[-1], problem.query), list(params.values()))
    g1 = torch.autograd.grad(loss_fn(first[-1], problem.query), list(params.values()))
    assert any(not torch.allclose(a, b) for a, b in zip(g1, g2, strict=True))
