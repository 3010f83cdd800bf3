"""The finite-difference estimator (fdmaml*) in the MAML-TRPO learner on Navigation2D: its
meta-gradient against second order, and a full TRPO step through it."""

from __future__ import annotations

import math

import torch

from metarl.core import ALGORITHMS, get_params, with_fd_delta
from metarl.envs.batched import make_batched
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler


def _learner(algo: str, inner_steps: int = 1, delta: float = 1e-4) -> TrpoMetaLearner:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(16, 16)).double()
    return TrpoMetaLearner(policy, algorithm=with_fd_delta(ALGORITHMS[algo], delta),
                           inner_lr=0.5, inner_steps=inner_steps, meta_update_path="batched")


def _grad(learner: TrpoMetaLearner, batch: object) -> torch.Tensor:
    params = get_params(learner.policy)
    loss, _ = learner.meta_objective(params, batch, vectorize=True)  # type: ignore[arg-type]
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(params.values()))])


def test_fd_meta_gradient_matches_second_order_in_the_rl_learner() -> None:
    """Same policy, same episodes: fdmaml-sym's surrogate gradient is MAML-TRPO's, within
    the finite-difference error, and first-order MAML's is not."""
    learners = {a: _learner(a, inner_steps=2) for a in ("maml", "fomaml", "fdmaml-sym")}
    sampler = BatchedSampler(make_batched("Navigation2D", 4 * 5, horizon=16, seed=0), 5, "cpu")
    torch.manual_seed(0)
    batch = learners["maml"].collect(sampler, sampler.env.sample_tasks(4))
    exact = _grad(learners["maml"], batch)
    fd = _grad(learners["fdmaml-sym"], batch)
    fo = _grad(learners["fomaml"], batch)
    assert float((fd - exact).norm()) < 1e-6 * float(exact.norm())
    assert float((fo - exact).norm()) > 1e-2 * float(exact.norm())


def test_fd_trpo_step_is_taken() -> None:
    learner = _learner("fdmaml", delta=1e-3)
    sampler = BatchedSampler(make_batched("Navigation2D", 4 * 5, horizon=16, seed=0), 5, "cpu")
    torch.manual_seed(0)
    logs = learner.step(sampler, sampler.env.sample_tasks(4))
    assert logs["trpo/accepted"] == 1.0 and math.isfinite(logs["trpo/surrogate_after"])
