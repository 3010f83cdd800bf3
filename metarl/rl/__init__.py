"""Meta-RL on batched task distributions: Gaussian MLP policy, linear feature baseline,
returns/GAE, the batched sampler, TRPO pieces and the learner that runs any meta-algorithm
(MAML, ANIL, first-order MAML, Meta-SGD, ...) with a TRPO outer step."""

from __future__ import annotations

from metarl.rl.baseline import BaselineFit, LinearFeatureBaseline, solve_regularized
from metarl.rl.collect import Collector, MetaBatch
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy, entropy, kl_divergence, log_prob
from metarl.rl.returns import discounted_returns, gae_advantages, normalize_advantages
from metarl.rl.sampler import BatchedSampler, Episodes, forward_per_task
from metarl.rl.trpo import (
    TrpoConfig,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    trpo_update,
)

__all__ = [
    "BaselineFit",
    "BatchedSampler",
    "Collector",
    "Episodes",
    "GaussianMLPPolicy",
    "LinearFeatureBaseline",
    "MetaBatch",
    "TrpoConfig",
    "TrpoMetaLearner",
    "backtracking_line_search",
    "conjugate_gradient",
    "discounted_returns",
    "entropy",
    "fisher_vector_product",
    "forward_per_task",
    "gae_advantages",
    "kl_divergence",
    "log_prob",
    "normalize_advantages",
    "solve_regularized",
    "trpo_update",
]
