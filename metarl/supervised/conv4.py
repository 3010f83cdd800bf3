"""The Conv-4 few-shot classifier with MAML++'s per-step batch-norm, run functionally.

Conv-4 (Vinyals et al., 2016; Finn et al., 2017): four blocks of a 3x3 convolution
(padding 1), batch-norm, ReLU and 2x2 max-pooling, then a linear head over N ways. With 64
filters a 28x28 Omniglot image ends as 64x1x1 features; MAML uses 32 filters on 84x84
mini-ImageNet, giving 32x5x5 = 800 features.

Batch-norm follows "How to train your MAML" (MAML++, Antoniou et al., 2019):

* normalisation with the batch's own statistics (transductive, as in MAML's code), or
  with running statistics (``running_stats=True``);
* BNRS: running mean and variance kept per inner step, buffers ``[steps + 1, C]``, row
  ``s`` used at inner step ``s`` (a single row ``[1, C]`` without BNRS). The forward never
  writes them: under ``torch.func.vmap`` each task would need its own copy. It returns the
  batch statistics instead, and the caller folds their task mean in after the outer step
  with :func:`fold_batch_stats` (momentum 0.1, as in MAML++). MAML++'s code normalises with
  batch statistics even at evaluation (``training=True`` always), the paper with running
  ones: both are a choice of ``running_stats`` here;
* BNWB: batch-norm weight and bias per inner step, ``[steps + 1, C]``, row ``s`` at step
  ``s``; ``[C]`` shared by all steps without it.

The module runs from an explicit dict with ``torch.func.functional_call`` (parameters, and
optionally buffers in the same dict) and is traced by ``torch.func.grad`` and ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from metarl.core import Params

Batch = dict[str, torch.Tensor]
StepFn = Callable[[Params, Batch, int], torch.Tensor]
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
BLOCKS = 4


class StepBatchNorm(nn.Module):
    """Batch-norm over ``[B, C, H, W]`` with optional per-step weights and statistics.

    Args:
        channels: Channels ``C``.
        weight_rows: ``None`` for ``[C]`` weight and bias, else rows ``[weight_rows, C]``.
        stat_rows: Rows of the running mean and variance buffers ``[stat_rows, C]``.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, channels: int, *, weight_rows: int | None, stat_rows: int) -> None:
        super().__init__()
        shape = (channels,) if weight_rows is None else (weight_rows, channels)
        self.weight = nn.Parameter(torch.ones(shape))
        self.bias = nn.Parameter(torch.zeros(shape))
        self.register_buffer("running_mean", torch.zeros(stat_rows, channels))
        self.register_buffer("running_var", torch.ones(stat_rows, channels))

    def forward(self, x: torch.Tensor, step: int,
                running_stats: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised ``x`` and the batch's mean and unbiased variance per channel (detached).

        Step ``step`` selects row ``min(step, rows - 1)`` of per-step tensors, so extra
        evaluation steps reuse the last row.
        """
        if step < 0:
            raise ValueError(f"step must be an int >= 0, got {step}")
        batch_mean = x.mean(dim=(0, 2, 3))
        batch_var = x.var(dim=(0, 2, 3), unbiased=False)
        mean, var = batch_mean, batch_var
        if running_stats:
            mean, var = _row(self.running_mean, step), _row(self.running_var, step)
        weight, bias = (_row(p, step) for p in (self.weight, self.bias))
        scale = weight * torch.rsqrt(var + BN_EPS)
        out = (x - mean[:, None, None]) * scale[:, None, None] + bias[:, None, None]
        n = x.numel() // x.shape[1]
        return out, batch_mean.detach(), (batch_var * (n / max(n - 1, 1))).detach()


def _row(p: torch.Tensor, step: int) -> torch.Tensor:
    return p if p.dim() == 1 else p[min(step, p.shape[0] - 1)]


class Conv4(nn.Module):
    """Four conv/batch-norm/ReLU/max-pool blocks and a linear head (Vinyals et al., 2016).

    Parameter keys: ``blocks.{i}.conv.{weight,bias}``, ``blocks.{i}.norm.{weight,bias}``,
    ``head.{weight,bias}`` (last, so ``metarl.core.head_keys`` picks the head for ANIL).

    Args:
        ways: Output classes N.
        in_channels: 1 for Omniglot, 3 for mini-ImageNet.
        filters: Channels of every block (64 for Omniglot, 32 for mini-ImageNet in MAML).
        image_size: Input height and width (28 or 84), sets the head's input size.
        steps: Inner steps the per-step rows are for (rows 0..steps).
        per_step_bn_stats: BNRS, running statistics ``[steps + 1, C]`` (else ``[1, C]``).
        per_step_bn_weights: BNWB, weight and bias ``[steps + 1, C]`` (else ``[C]``).
    """

    def __init__(self, ways: int, *, in_channels: int = 1, filters: int = 64,
                 image_size: int = 28, steps: int = 0, per_step_bn_stats: bool = False,
                 per_step_bn_weights: bool = False) -> None:
        super().__init__()
        _check_sizes(ways=ways, in_channels=in_channels, filters=filters, image_size=image_size,
                     steps=steps)
        rows = steps + 1
        self.blocks = nn.ModuleList(
            _block(in_channels if i == 0 else filters, filters,
                   weight_rows=rows if per_step_bn_weights else None,
                   stat_rows=rows if per_step_bn_stats else 1) for i in range(BLOCKS))
        side = image_size // 2**BLOCKS  # each 2x2 pool floors the side: 28 -> 1, 84 -> 5
        self.head = nn.Linear(filters * side * side, ways)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.xavier_uniform_(module.weight)  # as MAML++'s code
                assert module.bias is not None
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, step: int = 0, running_stats: bool = False,
                body_only: bool = False) -> tuple[torch.Tensor, Params]:
        """Logits ``[B, ways]`` of ``x`` ``[B, C, H, W]`` at inner step ``step``.

        ``body_only`` returns the flattened body features ``[B, features]`` instead of the
        logits (NIL, Raghu et al., 2020, drops the head at test time).

        Returns:
            The logits and the batch statistics of every batch-norm, keyed by the name of
            the buffer they update (``blocks.{i}.norm.running_{mean,var}``), each ``[C]``.
        """
        stats: Params = {}
        for i, block in enumerate(self.blocks):
            assert isinstance(block, nn.ModuleDict)
            x, mean, var = block["norm"](block["conv"](x), step, running_stats)
            stats[f"blocks.{i}.norm.running_mean"] = mean
            stats[f"blocks.{i}.norm.running_var"] = var
            x = F.max_pool2d(F.relu(x), 2)
        features = x.flatten(1)
        return (features if body_only else self.head(features)), stats


def _block(in_channels: int, filters: int, *, weight_rows: int | None,
           stat_rows: int) -> nn.ModuleDict:
    return nn.ModuleDict({
        "conv": nn.Conv2d(in_channels, filters, kernel_size=3, padding=1),
        "norm": StepBatchNorm(filters, weight_rows=weight_rows, stat_rows=stat_rows)})


def _check_sizes(**sizes: int) -> None:
    lows = {"image_size": 2**BLOCKS, "steps": 0}
    for name, value in sizes.items():
        low = lows.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def forward_with_stats(model: nn.Module, params: Params, x: torch.Tensor, step: int,
                       running_stats: bool,
                       body_only: bool = False) -> tuple[torch.Tensor, Params]:
    """``model`` run on ``x`` with ``params`` (buffers may be in it too) at step ``step``;
    the body features instead of the logits with ``body_only``."""
    out: tuple[torch.Tensor, Params] = torch.func.functional_call(
        model, params, (x,), {"step": step, "running_stats": running_stats,
                              "body_only": body_only})
    return out


def cross_entropy_fn(model: nn.Module, *, running_stats: bool = False) -> StepFn:
    """``loss(params, {"x", "y"}, step) -> mean cross-entropy`` of ``model`` at ``step``."""

    def loss(params: Params, data: Batch, step: int) -> torch.Tensor:
        logits, _ = forward_with_stats(model, params, data["x"], step, running_stats)
        return F.cross_entropy(logits, data["y"])

    return loss


def loss_and_stats_fn(
        model: nn.Module, *, running_stats: bool = False
) -> Callable[[Params, Batch, int], tuple[torch.Tensor, Params]]:
    """Like :func:`cross_entropy_fn`, also returning the batch statistics (for BNRS), in the
    form ``torch.func.grad(..., has_aux=True)`` takes."""

    def loss(params: Params, data: Batch, step: int) -> tuple[torch.Tensor, Params]:
        logits, stats = forward_with_stats(model, params, data["x"], step, running_stats)
        return F.cross_entropy(logits, data["y"]), stats

    return loss


def accuracy_fn(model: nn.Module, *, running_stats: bool = False) -> StepFn:
    """``accuracy(params, {"x", "y"}, step) -> fraction of argmax predictions equal to y``."""

    def accuracy(params: Params, data: Batch, step: int) -> torch.Tensor:
        logits, _ = forward_with_stats(model, params, data["x"], step, running_stats)
        return (logits.argmax(dim=-1) == data["y"]).float().mean()

    return accuracy


def fold_batch_stats(buffers: Params, stats: Params, step: int,
                     momentum: float = BN_MOMENTUM) -> Params:
    """Running statistics after one update of row ``step`` from batch statistics (BNRS).

    ``running[row] <- (1 - momentum) * running[row] + momentum * stat``, where ``stat`` is
    the mean of ``stats[key]`` over every leading dimension (tasks of a vmapped call) and
    ``row = min(step, rows - 1)``; the update of ``torch.nn.BatchNorm2d`` (unbiased
    variance), one row per inner step as in MAML++ (Antoniou et al., 2019).

    Args:
        buffers: Running statistics by name, each ``[rows, C]`` (e.g. :func:`running_stats`).
        stats: Batch statistics from the forward, each ``[..., C]``, keys among ``buffers``.
        step: The inner step the statistics were taken at.
        momentum: Weight of the new statistics, in ``[0, 1]``.

    Returns:
        A new dict; ``buffers`` is not modified.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    new = dict(buffers)
    for key, stat in stats.items():
        old = buffers[key]
        row = min(step, old.shape[0] - 1)
        task_mean = stat.detach().reshape(-1, old.shape[1]).mean(dim=0)
        new[key] = old.clone()
        new[key][row] = (1.0 - momentum) * old[row] + momentum * task_mean
    return new


def running_stats(model: nn.Module) -> Params:
    """Copies of the model's running-statistics buffers, to save before an evaluation task."""
    return {k: v.detach().clone() for k, v in model.named_buffers()
            if k.rsplit(".", 1)[-1] in ("running_mean", "running_var")}


def set_running_stats(model: nn.Module, saved: Params) -> None:
    """Write ``saved`` (from :func:`running_stats` or :func:`fold_batch_stats`) into ``model``."""
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for key, value in saved.items():
            buffers[key].copy_(value)
