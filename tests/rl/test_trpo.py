"""TRPO pieces: conjugate gradient, Fisher-vector products, line search, NaN guard."""

from __future__ import annotations

import math

import torch
from torch.nn.utils import parameters_to_vector

from metarl.core import get_params
from metarl.rl.policy import GaussianMLPPolicy, kl_divergence
from metarl.rl.trpo import (
    TrpoConfig,
    backtracking_line_search,
    conjugate_gradient,
    fisher_vector_product,
    trpo_update,
)


def _spd(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return m @ m.T + 0.5 * torch.eye(n, dtype=torch.float64)


def test_conjugate_gradient_solves_spd_system() -> None:
    a = _spd(6, 0)
    b = torch.arange(1.0, 7.0, dtype=torch.float64)
    x, residual = conjugate_gradient(lambda v: a @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-8, atol=1e-8)
    assert residual < 1e-6
    x2, residual2 = conjugate_gradient(lambda v: a @ v, b, iters=2)
    assert residual2 > residual  # truncated CG has not converged


def test_fvp_equals_explicit_hessian_of_kl() -> None:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(3, 2, hidden=(4,)).double()
    obs = torch.randn(16, 3, dtype=torch.float64)
    params = get_params(policy)
    with torch.no_grad():
        old_mean, old_log_std = (t.detach().clone() for t in policy(obs))
    names, shapes = list(params), [v.shape for v in params.values()]

    def kl_of(flat: torch.Tensor) -> torch.Tensor:
        chunks = torch.split(flat, [s.numel() for s in shapes])
        p = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes, strict=True)}
        mean, log_std = policy.dist_params(p, obs)
        return kl_divergence(old_mean, old_log_std, mean, log_std).mean()

    flat0 = parameters_to_vector(params.values()).detach()
    hessian = torch.autograd.functional.hessian(kl_of, flat0)
    mean, log_std = policy(obs)
    fvp = fisher_vector_product(kl_divergence(old_mean, old_log_std, mean, log_std).mean(),
                                list(params.values()), damping=0.1)
    v = torch.randn(flat0.numel(), dtype=torch.float64)
    torch.testing.assert_close(fvp(v), hessian @ v + 0.1 * v, rtol=1e-10, atol=1e-12)
    assert float(hessian.abs().sum()) > 0


def _quadratic(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
    x0 = x.detach().clone()

    def loss_kl() -> tuple[torch.Tensor, torch.Tensor]:
        d = x - x0
        return -(b * x).sum(), 0.5 * d @ a @ d

    return loss_kl


def test_line_search_accepts_first_trial_that_fits() -> None:
    x = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    a, b = torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    step = torch.tensor([1.0, 0.0], dtype=torch.float64)
    # KL of ratio^i * step is 0.5 * 0.8^(2i): > 0.2 for i = 0, 1, 2 (0.5, .32, .2048), ok at 3.
    res = backtracking_line_search([x], step, _quadratic(x, a, b), 0.0, max_kl=0.2,
                                   ls_steps=10, ls_ratio=0.8)
    assert res.accepted and res.steps == 4
    torch.testing.assert_close(x.detach(), torch.tensor([0.512, 0.0], dtype=torch.float64))
    assert math.isclose(res.kl, 0.5 * 0.512**2)


def test_line_search_restores_parameters_when_nothing_improves() -> None:
    x = torch.tensor([0.3, -0.7], dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    a, b = torch.eye(2, dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)
    step = torch.tensor([-1.0, 0.0], dtype=torch.float64)  # increases the loss
    res = backtracking_line_search([x], step, _quadratic(x, a, b), float(-(b * before).sum()),
                                   max_kl=1.0, ls_steps=5, ls_ratio=0.5)
    assert not res.accepted and res.steps == 5
    assert torch.equal(x.detach(), before)


def test_trpo_update_takes_the_natural_step_within_the_trust_region() -> None:
    a = _spd(3, 1)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    loss_kl = _quadratic(x, a, b)
    loss, _ = loss_kl()
    d = x - x.detach()
    kl_graph = 0.5 * d @ a @ d
    logs = trpo_update([x], loss, kl_graph, loss_kl, TrpoConfig(max_kl=0.01, cg_iters=3,
                                                                cg_damping=0.0))
    assert logs["trpo/accepted"] == 1.0 and logs["trpo/nonfinite_skipped"] == 0.0
    direction = torch.linalg.solve(a, b)
    cos = torch.dot(x.detach(), direction) / (x.detach().norm() * direction.norm())
    assert float(cos) > 1 - 1e-8
    assert logs["trpo/kl"] <= 0.01 and logs["trpo/kl"] > 0.005
    assert logs["trpo/surrogate_after"] < logs["trpo/surrogate_before"]


def test_nonfinite_loss_or_gradient_skips_update_bit_identically() -> None:
    x = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    before = x.detach().clone()
    kl = 0.5 * ((x - before) ** 2).sum()

    def never() -> tuple[torch.Tensor, torch.Tensor]:
        raise AssertionError("the line search must not run")

    nan_loss = (x * torch.tensor([float("nan"), 1.0], dtype=torch.float64)).sum()
    logs = trpo_update([x], nan_loss, kl, never, TrpoConfig())
    assert logs["trpo/nonfinite_skipped"] == 1.0 and logs["trpo/accepted"] == 0.0
    inf_grad = torch.sqrt(x[0]) + x[1]  # finite loss, infinite gradient at 0
    logs = trpo_update([x], inf_grad, kl, never, TrpoConfig())
    assert logs["trpo/nonfinite_skipped"] == 1.0
    assert torch.equal(x.detach(), before)
