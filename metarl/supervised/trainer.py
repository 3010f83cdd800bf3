"""The supervised meta-learner: MAML, first-order MAML, ANIL and Meta-SGD.

One meta-iteration adapts every task of the meta-batch at once with
:func:`metarl.core.meta_loss` (one ``torch.func.vmap`` over tasks) and takes one outer
Adam step (Finn et al., 2017). The algorithms differ only in which keys adapt, the
derivative order and the inner-lr rule:

* ``maml``: all keys, second order, a fixed inner lr (Finn et al., 2017);
* ``fomaml``: all keys, first order (Finn et al., 2017, sec. 5.2);
* ``anil``: head keys only, second order (Raghu et al., 2020);
* ``metasgd``: all keys with learned per-tensor inner lrs (Li et al., 2017).

MAML++ options (Antoniou et al., 2019) come on top: the multi-step loss (MSL) with
annealed weights, derivative-order annealing and a cosine-annealed outer lr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from metarl.core import (
    InnerLR,
    OuterOptimizer,
    Params,
    adapt_keys,
    get_params,
    meta_loss,
    msl_weights,
    use_first_order,
)
from metarl.supervised.models import mse_loss_fn
from metarl.supervised.tasks import Batch

ALGOS = ("maml", "fomaml", "anil", "metasgd")


@dataclass(frozen=True)
class AlgoSpec:
    """What distinguishes one algorithm: adapted keys, derivative order, default lr rule."""

    adapt: str
    first_order: bool
    lr_kind: str


ALGO_SPECS = {
    "maml": AlgoSpec("all", False, "fixed"),
    "fomaml": AlgoSpec("all", True, "fixed"),
    "anil": AlgoSpec("head", False, "fixed"),
    "metasgd": AlgoSpec("all", False, "per_tensor"),
}


def algo_spec(algo: str) -> AlgoSpec:
    """The :class:`AlgoSpec` of ``algo`` (one of ``ALGOS``)."""
    if algo not in ALGO_SPECS:
        raise ValueError(f"algo must be one of {ALGOS}, got {algo!r}")
    return ALGO_SPECS[algo]


class MetaLearner:
    """Meta-parameters, inner-lr rule and outer optimiser of a supervised meta-learner.

    Args:
        model: The regression model; its parameters are the meta-parameters (moved, not
            copied, so ``model`` stays usable for ``functional_call``).
        algo: One of ``ALGOS``.
        inner_steps: Inner steps during meta-training.
        inner_lr: Training inner lr (any finite sign); the initial value of learned rates.
        lr_kind: Inner-lr rule (``fixed``, ``per_tensor``, ``per_step``); ``None`` takes the
            algorithm's default.
        head_selector: Regex choosing ANIL's head keys (``None``: the last linear layer).
        outer_lr: Adam learning rate.
        total_steps: Meta-iterations of the run (the cosine schedule's length).
        cosine: Cosine-anneal the outer lr to 0 over ``total_steps``.
        clip_norm: Global gradient-norm clip, ``None`` for none.
        msl: Use the MAML++ multi-step loss.
        msl_anneal_epochs: Epochs over which MSL weights anneal to the last step.
        first_order_until: Epochs of first-order training before second order (MAML++).
        epoch_length: Meta-iterations per epoch, for the MAML++ schedules.
        device: Where the parameters live.
    """

    def __init__(self, model: nn.Module, *, algo: str, inner_steps: int, inner_lr: float,
                 lr_kind: str | None, head_selector: str | None, outer_lr: float,
                 total_steps: int, cosine: bool, clip_norm: float | None, msl: bool,
                 msl_anneal_epochs: int, first_order_until: int, epoch_length: int,
                 device: torch.device) -> None:
        self.spec = algo_spec(algo)
        self.model = model.to(device)
        self.params: Params = get_params(self.model)
        self.keys = adapt_keys(self.params, self.spec.adapt, head_selector)
        self.rule = InnerLR(self.keys, inner_steps, inner_lr, lr_kind or self.spec.lr_kind)
        self.rule.to(device)
        self.inner_steps = inner_steps
        self.loss_fn = mse_loss_fn(self.model)
        self.msl, self.msl_anneal_epochs = msl, msl_anneal_epochs
        self.first_order_until, self.epoch_length = first_order_until, epoch_length
        meta_params = list(self.params.values()) + list(self.rule.parameters())
        self.optimizer = OuterOptimizer(meta_params, lr=outer_lr, total_steps=total_steps,
                                        cosine=cosine, clip_norm=clip_norm)

    def first_order(self, iteration: int) -> bool:
        """FOMAML always; otherwise first order during MAML++'s first epochs."""
        epoch = iteration // self.epoch_length
        return self.spec.first_order or use_first_order(epoch, self.first_order_until)

    def step_weights(self, iteration: int) -> torch.Tensor | None:
        """MAML++ MSL weights over inner steps 1..K, or ``None`` for the final-step loss."""
        if not self.msl:
            return None
        return msl_weights(self.inner_steps, iteration // self.epoch_length,
                           self.msl_anneal_epochs, device=self.device)

    @property
    def device(self) -> torch.device:
        """The device of the meta-parameters."""
        return next(iter(self.params.values())).device

    def step(self, support: Batch, query: Batch, iteration: int) -> dict[str, float]:
        """One meta-iteration on a meta-batch (vmap over tasks); returns scalar logs."""
        loss, aux = meta_loss(self.params, self.loss_fn, support, query,
                              steps=self.inner_steps, rule=self.rule, keys=self.keys,
                              first_order=self.first_order(iteration),
                              step_weights=self.step_weights(iteration), vectorize=True)
        logs = self.optimizer.step(loss)
        logs.update({k: float(v) for k, v in aux.items() if k != "query_losses"})
        return logs

    def state_dict(self) -> dict[str, Any]:
        """Meta-parameters, learned inner lrs and optimiser state, for checkpoints."""
        return {"params": {k: v.detach().clone() for k, v in self.params.items()},
                "rule": self.rule.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` in place (the optimiser keeps its parameter refs)."""
        with torch.no_grad():
            for k, v in state["params"].items():
                self.params[k].copy_(v)
        self.rule.load_state_dict(state["rule"])
        self.optimizer.load_state_dict(state["optimizer"])
