"""The functional meta-learning core: parameter dicts, head/body split, inner-loop rules,
meta-gradient estimators, meta-objectives batched over tasks with ``torch.func.vmap``, the
outer optimiser, and :class:`MetaAlgorithm`, the one value both trainers take.

It knows nothing about RL or datasets; the supervised trainer and the MAML/ANIL-TRPO
learners both call it (docs/architecture.md).
"""

from __future__ import annotations

from metarl.core.algorithm import (
    ALGO_NAMES,
    ALGORITHMS,
    OUTER_RULES,
    MetaAlgorithm,
    get_algorithm,
    with_fd_delta,
)
from metarl.core.batching import PATH_CHOICES, PathChooser, map_tasks, num_tasks, task_slice
from metarl.core.device import resolve_device
from metarl.core.estimators import (
    ESTIMATORS,
    Estimator,
    FirstOrder,
    SecondOrder,
    TaskProblem,
    with_gradient,
)
from metarl.core.finite_difference import FD_SCHEMES, FiniteDifference, check_delta
from metarl.core.inner import (
    LR_KINDS,
    InnerLR,
    Loss,
    LossFn,
    PerStepLoss,
    Rule,
    adapt,
    adapt_trajectory,
    check_adapt_args,
    inner_step,
    loss_at,
    sgd_step,
)
from metarl.core.meta import detached, meta_loss, msl_weights, task_losses, use_first_order
from metarl.core.outer import NormalizedMomentumSGD, OuterOptimizer, cosine_lr, grad_norm
from metarl.core.params import ADAPT_MODES, Params, adapt_keys, check_finite, get_params, head_keys

__all__ = [
    "ADAPT_MODES",
    "ALGORITHMS",
    "ALGO_NAMES",
    "ESTIMATORS",
    "FD_SCHEMES",
    "LR_KINDS",
    "OUTER_RULES",
    "PATH_CHOICES",
    "Estimator",
    "FiniteDifference",
    "FirstOrder",
    "InnerLR",
    "Loss",
    "LossFn",
    "MetaAlgorithm",
    "NormalizedMomentumSGD",
    "OuterOptimizer",
    "Params",
    "PathChooser",
    "PerStepLoss",
    "Rule",
    "SecondOrder",
    "TaskProblem",
    "adapt",
    "adapt_keys",
    "adapt_trajectory",
    "check_adapt_args",
    "check_delta",
    "check_finite",
    "cosine_lr",
    "detached",
    "get_algorithm",
    "get_params",
    "grad_norm",
    "head_keys",
    "inner_step",
    "loss_at",
    "map_tasks",
    "meta_loss",
    "msl_weights",
    "num_tasks",
    "resolve_device",
    "sgd_step",
    "task_losses",
    "task_slice",
    "use_first_order",
    "with_fd_delta",
    "with_gradient",
]
