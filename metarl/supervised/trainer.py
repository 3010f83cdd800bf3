"""The supervised meta-learner: any :class:`~metarl.core.MetaAlgorithm` on regression or
classification tasks.

One meta-iteration adapts every task of the meta-batch at once with
:func:`metarl.core.meta_loss` (one ``torch.func.vmap`` over tasks) and takes one outer
Adam step (Finn et al., 2017). The algorithm value says which keys adapt, the inner-lr rule
and the meta-gradient estimator; ``--algo`` names map to it in
:data:`metarl.core.ALGORITHMS` (maml, fomaml, anil, metasgd, lslr, ...).

MAML++ options (Antoniou et al., 2019) come on top: the multi-step loss (MSL) with
annealed weights, derivative-order annealing (first-order estimator for the first epochs)
and a cosine-annealed outer lr.

``compile=True`` runs the meta-loss (every inner step and the query losses, vmapped over
tasks) and its meta-gradient as one ``torch.compile`` graph, forward and backward (on CUDA
in ``reduce-overhead`` mode, i.e. CUDA graphs), to fuse the many small kernels of a
meta-iteration (on a GPU they are launch-bound); the guarded Adam step stays eager. Eager is
the default: on a 2-core CPU compiling takes one to three minutes and gains 1.5x per CPU-second
at meta-batch 25, nothing at 1,000 (docs/speed.md).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metarl.core import (
    FirstOrder,
    InnerLR,
    Loss,
    MetaAlgorithm,
    OuterOptimizer,
    Params,
    adapt_keys,
    get_params,
    meta_loss,
    msl_weights,
    use_first_order,
)
from metarl.core.bootstrap import BootstrapOptions, FrozenLR, bootstrapped_lr_loss
from metarl.core.estimators import Estimator
from metarl.supervised.models import mse_loss_fn
from metarl.supervised.tasks import Batch


class SupervisedMetaLearner:
    """Meta-parameters, inner-lr rule and outer optimiser of a supervised meta-learner.

    Args:
        model: The model; its parameters are the meta-parameters (moved, not copied, so
            ``model`` stays usable for ``functional_call``).
        algorithm: The meta-algorithm (adapted keys, inner-lr rule, estimator).
        inner_steps: Inner steps during meta-training.
        inner_lr: Training inner lr (any finite sign); the initial value of learned rates.
        loss_fn: The task loss (``None``: the model's mean squared error).
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
        bootstrap: Learn the inner lrs by bootstrapped meta-gradients (Flennerhag et al.,
            2022) toward this target; the initialisation keeps the MAML meta-gradient.
            ``None``: everything learns by the meta-gradient.
        outer_momentum: Momentum of the ``nsgdm`` outer rule (``algorithm.outer``).
        fixed_keys: Keys the inner loop never adapts, whatever the algorithm (MAML++'s
            per-step batch-norm weights are learned by the outer loop only).
        compile: Run the meta-loss and its gradient compiled (``torch.compile``); the
            update equals the eager one to float tolerance.
    """

    def __init__(self, model: nn.Module, *, algorithm: MetaAlgorithm, inner_steps: int,
                 inner_lr: float, head_selector: str | None, outer_lr: float,
                 total_steps: int, cosine: bool, clip_norm: float | None, msl: bool,
                 msl_anneal_epochs: int, first_order_until: int, epoch_length: int,
                 device: torch.device, loss_fn: Loss | None = None,
                 bootstrap: BootstrapOptions | None = None,
                 outer_momentum: float = 0.9, fixed_keys: tuple[str, ...] = (),
                 compile: bool = False) -> None:
        self.algorithm = algorithm
        self.model = model.to(device)
        self.params: Params = get_params(self.model)
        self.keys = tuple(k for k in adapt_keys(self.params, algorithm.adapt, head_selector)
                          if k not in fixed_keys)
        self.rule = InnerLR(self.keys, inner_steps, inner_lr, algorithm.lr_kind)
        self.rule.to(device)
        self.inner_steps = inner_steps
        self.loss_fn: Loss = mse_loss_fn(self.model) if loss_fn is None else loss_fn
        self.bootstrap = bootstrap
        if bootstrap is not None and not self.rule.learned:
            raise ValueError("bootstrap needs learned inner lrs (lr_kind per_tensor or "
                             f"per_step), got lr_kind {algorithm.lr_kind!r}")
        # Under BMG the MAML loss sees the rates as constants; they learn from the target.
        self.maml_rule = self.rule if bootstrap is None else FrozenLR(self.rule)
        self.msl, self.msl_anneal_epochs = msl, msl_anneal_epochs
        self.first_order_until, self.epoch_length = first_order_until, epoch_length
        meta_params = list(self.params.values()) + list(self.rule.parameters())
        self.optimizer = OuterOptimizer(meta_params, lr=outer_lr, total_steps=total_steps,
                                        cosine=cosine, clip_norm=clip_norm,
                                        rule=algorithm.outer, momentum=outer_momentum)
        self.compiled = compile
        self._meta_loss = self._meta_loss_eager
        if compile:
            mode = "reduce-overhead" if self.device.type == "cuda" else None
            self._meta_loss = torch.compile(self._meta_loss_eager, mode=mode, dynamic=False)

    def estimator(self, iteration: int) -> Estimator:
        """The algorithm's estimator, or first order during MAML++'s first epochs (DA)."""
        if use_first_order(iteration // self.epoch_length, self.first_order_until):
            return FirstOrder()
        return self.algorithm.estimator

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
        loss, aux = self.meta_objective(support, query, iteration)
        logs = self.optimizer.step(loss)
        logs.update({k: float(v) for k, v in aux.items() if k != "query_losses"})
        return logs

    def meta_objective(self, support: Batch, query: Batch,
                       iteration: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss whose gradient the outer step takes (value: the query loss) and logs;
        compiled with ``compile`` (the iteration enters only through the estimator and the
        MSL weights, so the graph is not rebuilt every iteration)."""
        return self._meta_loss(support, query, self.estimator(iteration),
                               self.step_weights(iteration))

    def _meta_loss_eager(self, support: Batch, query: Batch, estimator: Estimator,
                         step_weights: torch.Tensor | None
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """:meth:`meta_objective` for one estimator and MSL weights; logs as fresh tensors
        (a compiled graph may not return views of its outputs)."""
        loss, aux = meta_loss(self.params, self.loss_fn, support, query,
                              steps=self.inner_steps, rule=self.maml_rule, keys=self.keys,
                              estimator=estimator, step_weights=step_weights, vectorize=True)
        if self.bootstrap is not None:
            match = bootstrapped_lr_loss(self.params, self.loss_fn, support, query,
                                         steps=self.inner_steps, rule=self.rule, keys=self.keys,
                                         options=self.bootstrap, distribution=self.predictive)
            loss = loss + match - match.detach()  # the logged loss stays the query loss
            aux["bmg_match"] = match.detach()
        return loss, {k: v.clone() for k, v in aux.items()}

    def predictive(self, params: Params, data: Batch) -> torch.distributions.Distribution:
        """Unit-variance Gaussian around the model's predictions (BMG's ``kl`` matching)."""
        mean = torch.func.functional_call(self.model, params, (data["x"],))
        return torch.distributions.Normal(mean, torch.ones_like(mean), validate_args=False)

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
