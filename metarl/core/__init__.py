"""The functional meta-learning core: parameter dicts, head/body split, inner-loop rules,
meta-objectives batched over tasks with ``torch.func.vmap``, and the outer optimiser.

It knows nothing about RL or datasets; the supervised trainer and the MAML/ANIL-TRPO
learners both call it.
"""

from __future__ import annotations

from metarl.core.device import resolve_device
from metarl.core.inner import LR_KINDS, InnerLR, adapt, sgd_step
from metarl.core.meta import meta_loss, msl_weights, num_tasks, use_first_order
from metarl.core.outer import OuterOptimizer, cosine_lr, grad_norm
from metarl.core.params import ADAPT_MODES, Params, adapt_keys, check_finite, get_params, head_keys

__all__ = [
    "ADAPT_MODES",
    "LR_KINDS",
    "InnerLR",
    "OuterOptimizer",
    "Params",
    "adapt",
    "adapt_keys",
    "check_finite",
    "cosine_lr",
    "get_params",
    "grad_norm",
    "head_keys",
    "meta_loss",
    "msl_weights",
    "num_tasks",
    "resolve_device",
    "sgd_step",
    "use_first_order",
]
