"""Outer rules for objectives whose smoothness grows with the gradient norm (Chayti & Jaggi,
2024): normalised SGD with momentum and clipped SGD, checked step by step by hand; their
options, in the core and in both trainers' configs."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch

from metarl.core import ALGORITHMS, OUTER_RULES, NormalizedMomentumSGD, OuterOptimizer
from metarl.rl.config import TrainConfig
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.train import build_learner


def _quadratic(a: torch.Tensor, b: torch.Tensor, ga: list[float],
               gb: list[float]) -> torch.Tensor:
    """A loss whose gradient w.r.t. (a, b) is (ga, gb): linear in the parameters."""
    return (a * torch.tensor(ga)).sum() + (b * torch.tensor(gb)).sum()


def test_nsgdm_steps_by_hand() -> None:
    """m1 = (1-beta) g1, step -lr m1/|m1|; m2 = beta m1 + (1-beta) g2, step -lr m2/|m2|,
    with |m| the norm over both tensors together."""
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(1, requires_grad=True)
    opt = OuterOptimizer([a, b], lr=0.5, total_steps=None, cosine=False, clip_norm=None,
                         rule="nsgdm", momentum=0.75)
    assert isinstance(opt.optimizer, NormalizedMomentumSGD)
    logs = opt.step(_quadratic(a, b, [3.0, 0.0], [4.0]))
    assert logs["grad_norm"] == pytest.approx(5.0)
    # m1 = 0.25 * (3, 0, 4), |m1| = 1.25: the step is 0.5 * (3, 0, 4) / 5.
    torch.testing.assert_close(a.detach(), torch.tensor([-0.3, 0.0]))
    torch.testing.assert_close(b.detach(), torch.tensor([-0.4]))
    opt.step(_quadratic(a, b, [0.0, 8.0], [0.0]))
    m2 = 0.75 * 0.25 * torch.tensor([3.0, 0.0, 4.0]) + 0.25 * torch.tensor([0.0, 8.0, 0.0])
    step = -0.5 * m2 / m2.norm()
    torch.testing.assert_close(a.detach(), torch.tensor([-0.3, 0.0]) + step[:2])
    torch.testing.assert_close(b.detach(), torch.tensor([-0.4]) + step[2:])
    # Whatever the gradient's scale, a step has length lr.
    before = torch.cat([a.detach(), b.detach()])
    opt.step(_quadratic(a, b, [1e6, -1e6], [1e6]))
    assert float((torch.cat([a.detach(), b.detach()]) - before).norm()) == pytest.approx(0.5)


def test_nsgdm_state_round_trips() -> None:
    a = torch.zeros(2, requires_grad=True)
    opt = OuterOptimizer([a], lr=0.1, total_steps=None, cosine=False, clip_norm=None,
                         rule="nsgdm", momentum=0.5)
    opt.step((a * torch.tensor([1.0, 2.0])).sum())
    twin_param = a.detach().clone().requires_grad_(True)
    twin = OuterOptimizer([twin_param], lr=0.1, total_steps=None, cosine=False,
                          clip_norm=None, rule="nsgdm", momentum=0.5)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))  # as a checkpoint would
    for opt_, p in ((opt, a), (twin, twin_param)):
        opt_.step((p * torch.tensor([-3.0, 1.0])).sum())
    assert torch.equal(a, twin_param)


@pytest.mark.parametrize(("grad", "scale"), [([3.0, 4.0], 1.0 / (5.0 + 1e-6)), ([0.3, 0.4], 1.0)])
def test_clipped_sgd_steps_by_hand(grad: list[float], scale: float) -> None:
    """theta <- theta - lr min(1, c / |g|) g, with c = 1 (torch's clip rule: c / (|g| + 1e-6))."""
    a = torch.ones(2, requires_grad=True)
    opt = OuterOptimizer([a], lr=0.1, total_steps=None, cosine=False, clip_norm=1.0,
                         rule="clipped_sgd")
    assert type(opt.optimizer) is torch.optim.SGD
    opt.step((a * torch.tensor(grad)).sum())
    torch.testing.assert_close(a.detach(), 1.0 - 0.1 * scale * torch.tensor(grad))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rule": "lion"}, r"outer must be one of \('default', 'nsgdm', 'clipped_sgd'\)"),
    ({"rule": "nsgdm", "momentum": 1.0}, "outer_momentum must be a number in"),
    ({"rule": "nsgdm", "momentum": math.nan}, "outer_momentum"),
    ({"rule": "clipped_sgd"}, "clip_norm must be a finite number > 0 with outer"),
])
def test_outer_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    a = torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        OuterOptimizer([a], lr=0.1, total_steps=None, cosine=False, clip_norm=None, **kwargs)


def test_supervised_config_builds_the_rule_and_the_delta() -> None:
    cfg = SupervisedConfig(algo="fdmaml-sym", fd_delta=0.02, outer="nsgdm",
                           outer_momentum=0.5, iterations=2)
    assert cfg.algorithm.outer == "nsgdm" and cfg.algorithm.estimator.delta == 0.02
    learner = build_learner(cfg, torch.device("cpu"))
    assert isinstance(learner.optimizer.optimizer, NormalizedMomentumSGD)
    assert learner.optimizer.optimizer.param_groups[0]["momentum"] == 0.5
    assert set(OUTER_RULES) == {"default", "nsgdm", "clipped_sgd"}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"fd_delta": 0.0}, "fd_delta must be a finite number > 0"),
    ({"fd_delta": -1.0, "algo": "maml"}, "fd_delta"),
    ({"fd_delta": math.inf}, "fd_delta"),
    ({"outer": "adamw"}, "outer must be one of"),
    ({"outer": "nsgdm", "outer_momentum": -0.1}, "outer_momentum"),
    ({"outer": "clipped_sgd"}, "clip_norm"),
])
def test_supervised_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SupervisedConfig(**{"algo": "fdmaml", **kwargs})


@pytest.mark.parametrize("delta", [0.0, -1e-3, math.nan])
def test_rl_fd_delta_is_validated(delta: float) -> None:
    with pytest.raises(ValueError, match="fd_delta must be a finite number > 0"):
        TrainConfig(algo="fdmaml", fd_delta=delta)
    assert TrainConfig(algo="fdmaml", fd_delta=0.05).algorithm.estimator.delta == 0.05


def test_rl_keeps_trpo_as_its_outer_step() -> None:
    with pytest.raises(ValueError, match="outer must be 'default' for meta-RL"):
        TrpoMetaLearner(GaussianMLPPolicy(2, 2, hidden=(4,)),
                        algorithm=ALGORITHMS["fdmaml"].replace(outer="nsgdm"))
