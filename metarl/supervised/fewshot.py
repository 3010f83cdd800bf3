"""The few-shot classification meta-learner: Conv-4 with MAML++'s per-step batch-norm.

:class:`ClassificationMetaLearner` is the supervised meta-learner (one ``torch.func.vmap``
over the meta-batch through :func:`metarl.core.meta_loss`) on a Conv-4 cross-entropy loss
that takes the inner-step index (:class:`metarl.core.PerStepLoss`), so BNWB's per-step
batch-norm weights follow the step (Antoniou et al., 2019, "How to train your MAML"); with
BNWB they are outer-loop parameters only (:func:`per_step_norm_keys`).

Training always normalises with the batch's own statistics (as MAML's and MAML++'s code
do). When running statistics are kept (BNRS per step, or one shared row), each
meta-iteration also records the batch statistics the inner loop met at every step: the
support set at the parameters after 0..K-1 steps and the query set after K steps, and folds
their task means into the buffers (momentum 0.1) after the outer step. The forward never
writes the buffers (under vmap each task would need its own copy), so this pass repeats the
inner steps without a second-order graph on the parameters the meta-loss used: the same
values, a cost of about one first-order inner loop.
"""

from __future__ import annotations

from typing import Any

import torch

from metarl.core import Params, PerStepLoss, adapt_trajectory, detached
from metarl.supervised.conv4 import (
    Conv4,
    cross_entropy_fn,
    fold_batch_stats,
    forward_with_stats,
    running_stats,
    set_running_stats,
)
from metarl.supervised.tasks import Batch
from metarl.supervised.trainer import SupervisedMetaLearner


def build_conv4(*, ways: int, channels: int, image_size: int, filters: int, steps: int,
                bnrs: bool, bnwb: bool) -> Conv4:
    """The Conv-4 of an N-way task, with per-step rows for ``steps`` inner steps."""
    return Conv4(ways, in_channels=channels, filters=filters, image_size=image_size,
                 steps=steps, per_step_bn_stats=bnrs, per_step_bn_weights=bnwb)


def classification_loss(model: Conv4, *, running: bool = False) -> PerStepLoss:
    """Cross-entropy of ``model`` at each inner step (batch statistics unless ``running``)."""
    return PerStepLoss(cross_entropy_fn(model, running_stats=running))


def per_step_norm_keys(model: Conv4) -> tuple[str, ...]:
    """BNWB's per-step batch-norm weights and biases: meta-parameters the inner loop leaves
    alone. Adapting row ``s`` at step ``s`` could not change anything (the forward after the
    step reads row ``s + 1``), and MAML++'s code does not adapt them either."""
    return tuple(k for k, v in model.named_parameters() if ".norm." in k and v.dim() == 2)


class ClassificationMetaLearner(SupervisedMetaLearner):
    """The supervised meta-learner on Conv-4 classification, keeping BN running statistics.

    Args:
        model: The :class:`Conv4`.
        collect_stats: Record batch statistics into the running-statistics buffers after
            every meta-iteration (needed when evaluation normalises with them).
        **kwargs: The arguments of :class:`SupervisedMetaLearner` (the loss is the
            classification loss).
    """

    def __init__(self, model: Conv4, *, collect_stats: bool, **kwargs: Any) -> None:
        super().__init__(model, loss_fn=classification_loss(model),
                         fixed_keys=per_step_norm_keys(model), **kwargs)
        self.conv4 = model
        self.collect_stats = collect_stats

    @property
    def buffers(self) -> Params:
        """Copies of the running statistics (``[rows, C]`` each)."""
        return running_stats(self.conv4)

    def step(self, support: Batch, query: Batch, iteration: int) -> dict[str, float]:
        """One meta-iteration (vmap over tasks), then the batch statistics folded in."""
        stats = self.step_statistics(support, query) if self.collect_stats else None
        logs = super().step(support, query, iteration)
        if stats is not None and not logs["nonfinite_skipped"]:
            buffers = self.buffers
            for step, step_stats in enumerate(stats):
                buffers = fold_batch_stats(buffers, step_stats, step)
            set_running_stats(self.conv4, buffers)
        return logs

    def step_statistics(self, support: Batch, query: Batch) -> list[Params]:
        """Per inner step 0..K, the batch statistics of every batch-norm, ``[tasks, C]``.

        Steps 0..K-1: the support set at the parameters after that many inner steps (what
        the inner loop normalised); step K: the query set after K steps.
        """
        params = detached(self.params)
        model, loss, steps = self.conv4, self.loss_fn, self.inner_steps

        def one_task(sup: Batch, qry: Batch) -> list[Params]:
            trajectory = adapt_trajectory(params, loss, [sup] * steps, rule=self.rule,
                                          keys=self.keys, first_order=True)
            data = [sup] * steps + [qry]
            return [forward_with_stats(model, detached(p), d["x"], s, False)[1]
                    for s, (p, d) in enumerate(zip(trajectory, data, strict=True))]

        with torch.no_grad():
            out: list[Params] = torch.func.vmap(one_task)(support, query)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The learner's state and the running statistics."""
        return {**super().state_dict(), "buffers": self.buffers}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` in place."""
        super().load_state_dict(state)
        set_running_stats(self.conv4, state["buffers"])
