"""Conv-4: shapes, vmap == loop, gradients vs finite differences, MAML++ batch-norm options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import Params, get_params, head_keys
from metarl.supervised.conv4 import (
    Conv4,
    StepBatchNorm,
    accuracy_fn,
    cross_entropy_fn,
    fold_batch_stats,
    loss_and_stats_fn,
    running_stats,
    set_running_stats,
)

Batch = dict[str, torch.Tensor]


def tiny(**kwargs: int | bool) -> Conv4:
    """A float64 Conv-4 small enough for finite differences: 4 filters on 16x16 images."""
    torch.manual_seed(0)
    return Conv4(3, filters=4, image_size=16, **kwargs).double()  # type: ignore[arg-type]


def data(tasks: int | None = None, n: int = 6, size: int = 16, dtype: torch.dtype = torch.float64,
         channels: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(1)
    lead = () if tasks is None else (tasks,)
    x = torch.rand((*lead, n, channels, size, size), generator=gen, dtype=dtype)
    return {"x": x, "y": torch.arange(n).remainder(3).expand(*lead, n).clone()}


def fd_grad(f: object, params: Params, key: str, index: tuple[int, ...],
            eps: float = 1e-6) -> float:
    """Central difference of ``f(params)`` in one entry of ``params[key]``."""
    assert callable(f)
    values = []
    for sign in (1, -1):
        moved = {k: v.detach().clone() for k, v in params.items()}
        moved[key][index] += sign * eps
        values.append(float(f(moved)))
    return (values[0] - values[1]) / (2 * eps)


CHECKED = [("blocks.0.conv.weight", (1, 0, 1, 2)), ("blocks.2.norm.weight", (3,)),
           ("blocks.3.conv.bias", (0,)), ("head.weight", (2, 1)), ("head.bias", (0,))]


def test_output_shapes_for_omniglot_and_mini_imagenet() -> None:
    logits, stats = Conv4(5)(torch.rand(10, 1, 28, 28))
    assert logits.shape == (10, 5) and Conv4(5).head.in_features == 64
    assert stats["blocks.3.norm.running_var"].shape == (64,) and len(stats) == 8
    mini = Conv4(5, in_channels=3, filters=32, image_size=84)
    assert mini.head.in_features == 800
    assert mini(torch.rand(4, 3, 84, 84))[0].shape == (4, 5)


@pytest.mark.parametrize("bnwb", [False, True])
def test_head_keys_select_the_linear_head(bnwb: bool) -> None:
    params = get_params(Conv4(5, steps=3, per_step_bn_weights=bnwb))
    assert head_keys(params) == ("head.weight", "head.bias")
    assert params["blocks.1.norm.weight"].shape == ((4, 64) if bnwb else (64,))


def test_vmap_over_tasks_with_own_params_equals_a_loop() -> None:
    torch.manual_seed(0)
    model = Conv4(5, filters=16)  # 28x28 down to 1x1 as in the paper set-up, fewer channels
    loss, accuracy = cross_entropy_fn(model), accuracy_fn(model)
    base = get_params(model)
    stacked = {k: v.detach() + 0.05 * torch.randn(4, *v.shape) for k, v in base.items()}
    batch = data(tasks=4, n=10, size=28, dtype=torch.float32)
    batch["y"] = torch.arange(10).remainder(5).expand(4, 10).clone()
    per_task = [{k: v[t] for k, v in stacked.items()} for t in range(4)]
    tasks = [{k: v[t] for k, v in batch.items()} for t in range(4)]
    for fn in (loss, accuracy):
        batched = torch.func.vmap(fn, in_dims=(0, 0, None))(stacked, batch, 0)
        looped = torch.stack([fn(p, d, 0) for p, d in zip(per_task, tasks, strict=True)])
        torch.testing.assert_close(batched, looped, atol=1e-5, rtol=0)
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(0, 0, None))(stacked, batch, 0)
    for t in range(4):
        want = torch.func.grad(loss)(per_task[t], tasks[t], 0)
        for k in base:
            torch.testing.assert_close(grads[k][t], want[k], atol=1e-5, rtol=1e-4)


def test_grad_matches_finite_differences() -> None:
    model = tiny()
    loss, batch = cross_entropy_fn(model), data()
    params = {k: v.detach() for k, v in get_params(model).items()}
    grads = torch.func.grad(loss)(params, batch, 0)
    for key, index in CHECKED:
        want = fd_grad(lambda p: loss(p, batch, 0), params, key, index)
        assert float(grads[key][index]) == pytest.approx(want, rel=1e-5, abs=1e-8)


def test_second_order_gradient_through_an_inner_step_matches_finite_differences() -> None:
    model = tiny(steps=1, per_step_bn_weights=True)
    loss, support, query = cross_entropy_fn(model), data(), data(n=9)
    params = {k: v.detach() for k, v in get_params(model).items()}

    def meta(p: Params) -> torch.Tensor:
        inner = torch.func.grad(loss)(p, support, 0)  # as metarl.core's inner loop takes it
        return loss({k: p[k] - 0.5 * inner[k] for k in p}, query, 1)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    grads = dict(zip(leaves, torch.autograd.grad(meta(leaves), list(leaves.values())),
                     strict=True))
    first_order = torch.func.grad(loss)(
        {k: params[k] - 0.5 * torch.func.grad(loss)(params, support, 0)[k] for k in params},
        query, 1)
    bnwb = [("blocks.2.norm.weight", (0, 3)), ("blocks.1.norm.bias", (1, 2))]
    for key, index in [*(c for c in CHECKED if "norm" not in c[0]), *bnwb]:
        want = fd_grad(meta, params, key, index)
        assert float(grads[key][index]) == pytest.approx(want, rel=1e-4, abs=1e-7)
    # The second-order term is really there: first-order MAML's gradient differs.
    assert not torch.allclose(grads["blocks.0.conv.weight"], first_order["blocks.0.conv.weight"])


def test_bnwb_step_s_uses_row_s_only() -> None:
    model = tiny(steps=2, per_step_bn_weights=True)
    params = {k: v.detach().clone() for k, v in get_params(model).items()}
    x = data()["x"]
    before = [model(x, step=s)[0] for s in range(4)]
    params["blocks.0.norm.bias"][1] += 0.3
    after = [torch.func.functional_call(model, params, (x,), {"step": s})[0] for s in range(4)]
    assert not torch.allclose(after[1], before[1])
    for s in (0, 2, 3):  # step 3 > steps reuses the last row, 2
        torch.testing.assert_close(after[s], before[s], rtol=0, atol=0)


def test_norm_uses_batch_statistics_or_the_running_row() -> None:
    torch.manual_seed(0)
    norm = StepBatchNorm(3, weight_rows=None, stat_rows=3).double()
    nn.init.normal_(norm.weight)
    norm.running_mean.normal_()
    norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    out, mean, var = norm(x, 1, False)
    torch.testing.assert_close(out, F.batch_norm(x, None, None, norm.weight, norm.bias,
                                                 training=True, eps=1e-5))
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.transpose(0, 1).reshape(3, -1).var(dim=1))  # unbiased
    running, _, _ = norm(x, 1, True)
    torch.testing.assert_close(running, F.batch_norm(
        x, norm.running_mean[1], norm.running_var[1], norm.weight, norm.bias, training=False,
        eps=1e-5))
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        norm(x, -1, False)


def test_fold_batch_stats_by_hand_and_as_batchnorm2d_updates() -> None:
    buffers = {"m": torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])}
    stats = {"m": torch.tensor([[1.0, 2.0], [3.0, 6.0]])}  # two tasks: mean [2, 4]
    new = fold_batch_stats(buffers, stats, step=1, momentum=0.1)
    assert torch.equal(buffers["m"][1], torch.tensor([2.0, 3.0]))  # not modified
    torch.testing.assert_close(new["m"], torch.tensor([[0.0, 1.0], [2.0, 3.1], [4.0, 5.0]]))
    # One training forward of nn.BatchNorm2d (momentum 0.1) updates its buffers the same way.
    x = torch.randn(8, 3, 5, 5, dtype=torch.float64)
    reference = nn.BatchNorm2d(3, momentum=0.1).double()
    reference(x)
    norm = StepBatchNorm(3, weight_rows=None, stat_rows=2).double()
    _, mean, var = norm(x, 0, False)
    folded = fold_batch_stats(running_stats(norm), {"running_mean": mean, "running_var": var}, 0)
    torch.testing.assert_close(folded["running_mean"][0], reference.running_mean)
    torch.testing.assert_close(folded["running_var"][0], reference.running_var)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\]"):
        fold_batch_stats(buffers, stats, 0, momentum=1.5)


def test_per_step_stats_under_vmap_fold_save_and_restore() -> None:
    model = tiny(steps=2, per_step_bn_stats=True)
    params = get_params(model)
    batch = data(tasks=3)
    loss_stats = loss_and_stats_fn(model)
    for step in range(3):  # "training": each step sees its own (shifted) batches
        shifted = {**batch, "x": batch["x"] + step}
        _, stats = torch.func.vmap(loss_stats, in_dims=(None, 0, None))(params, shifted, step)
        assert stats["blocks.0.norm.running_mean"].shape == (3, 4)
        set_running_stats(model, fold_batch_stats(running_stats(model), stats, step))
    trained = running_stats(model)
    rows = trained["blocks.0.norm.running_mean"]
    assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[1], rows[2])
    # An evaluation task folds its own statistics, then the saved ones are restored.
    grads, stats = torch.func.grad(loss_stats, has_aux=True)(
        params, {k: v[0] for k, v in batch.items()}, 1)
    assert set(grads) == set(params) and set(stats) <= set(trained)
    set_running_stats(model, fold_batch_stats(running_stats(model), stats, 1))
    assert not torch.equal(running_stats(model)["blocks.0.norm.running_mean"], rows)
    set_running_stats(model, trained)
    for key, value in running_stats(model).items():
        assert torch.equal(value, trained[key])


def test_running_stats_normalise_at_evaluation_and_can_come_in_the_dict() -> None:
    model = tiny(steps=1, per_step_bn_stats=True)
    params = get_params(model)
    task = data()
    train_loss, eval_loss = cross_entropy_fn(model), cross_entropy_fn(model, running_stats=True)
    assert not torch.isclose(train_loss(params, task, 0), eval_loss(params, task, 0))
    shifted = {k: v + 1.0 for k, v in running_stats(model).items() if k.endswith("mean")}
    moved = eval_loss({**params, **shifted}, task, 0)
    assert not torch.isclose(moved, eval_loss(params, task, 0))
    assert torch.isclose(train_loss({**params, **shifted}, task, 0), train_loss(params, task, 0))


@pytest.mark.parametrize("kwargs,message", [
    ({"ways": 0}, "ways must be an int >= 1, got 0"),
    ({"ways": 5, "filters": 0}, "filters must be an int >= 1"),
    ({"ways": 5, "image_size": 8}, "image_size must be an int >= 16, got 8"),
    ({"ways": 5, "steps": -1}, "steps must be an int >= 0, got -1"),
])
def test_bad_sizes(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Conv4(**kwargs)
