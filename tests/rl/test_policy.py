"""Gaussian MLP policy: distribution maths vs torch.distributions, head split, vmap forward."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from metarl.core import adapt_keys, get_params
from metarl.rl import policy as pol
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import forward_per_task


def test_structure_and_head_keys() -> None:
    p = GaussianMLPPolicy(5, 3, hidden=(7, 6), init_log_std=-0.5)
    params = get_params(p)
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    assert shapes == {"log_std": (3,), "body.0.weight": (7, 5), "body.0.bias": (7,),
                      "body.2.weight": (6, 7), "body.2.bias": (6,), "head.weight": (3, 6),
                      "head.bias": (3,)}
    assert adapt_keys(params, "head") == ("head.weight", "head.bias")
    assert torch.all(p.log_std == -0.5)
    assert torch.all(p.head.bias == 0)
    mean, log_std = p(torch.zeros(4, 5))
    assert mean.shape == (4, 3) and log_std is p.log_std


def test_distribution_maths_match_torch_distributions() -> None:
    gen = torch.Generator().manual_seed(0)
    mean_p, mean_q, a = (torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    ls_p, ls_q = (torch.randn(3, generator=gen, dtype=torch.float64) for _ in range(2))
    p, q = Normal(mean_p, ls_p.exp()), Normal(mean_q, ls_q.exp())
    torch.testing.assert_close(pol.log_prob(mean_p, ls_p, a), p.log_prob(a).sum(-1))
    torch.testing.assert_close(pol.kl_divergence(mean_p, ls_p, mean_q, ls_q),
                               kl_divergence(p, q).sum(-1))
    torch.testing.assert_close(pol.entropy(ls_p), p.entropy()[0].sum())


def test_functional_call_and_vmap_over_tasks_match_the_module() -> None:
    torch.manual_seed(0)
    p = GaussianMLPPolicy(2, 2).double()
    obs = torch.randn(3, 5, 2, dtype=torch.float64)
    stacked = {k: torch.stack([v.detach() + 0.1 * i for i in range(3)])
               for k, v in get_params(p).items()}
    mean, log_std = forward_per_task(p, stacked, obs)
    for i in range(3):
        one = {k: v[i] for k, v in stacked.items()}
        m, ls = p.dist_params(one, obs[i])
        torch.testing.assert_close(mean[i], m, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(log_std[i], ls)
    m0, _ = p(obs[0])
    torch.testing.assert_close(p.dist_params(get_params(p), obs[0])[0], m0)


def test_batched_matmul_forward_equals_vmap_over_tasks() -> None:
    """The sampler's per-step forward (baddbmm per layer) against vmap(functional_call), with
    per-task parameters and with the expanded (stride-0) meta-parameters, relu and tanh."""
    torch.manual_seed(0)
    for activation in ("tanh", "relu"):
        p = GaussianMLPPolicy(5, 3, hidden=(7, 4), activation=activation).double()
        obs = torch.randn(4, 6, 5, dtype=torch.float64)
        stacked = {k: torch.stack([v.detach() + 0.1 * torch.randn_like(v) for _ in range(4)])
                   for k, v in get_params(p).items()}
        expanded = {k: v.detach().expand(4, *v.shape) for k, v in get_params(p).items()}
        for params in (stacked, expanded):
            mean, log_std = p.dist_params_per_task(params, obs)
            ref_mean, ref_log_std = forward_per_task(p, params, obs)
            torch.testing.assert_close(mean, ref_mean, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(log_std, ref_log_std, rtol=0, atol=0)
    linear = GaussianMLPPolicy(3, 2, hidden=()).double()
    params = {k: v.detach().expand(2, *v.shape) for k, v in get_params(linear).items()}
    obs = torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(linear.dist_params_per_task(params, obs)[0],
                               forward_per_task(linear, params, obs)[0])


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(ValueError, match="activation"):
        GaussianMLPPolicy(2, 2, activation="gelu")
    with pytest.raises(ValueError, match="act_dim"):
        GaussianMLPPolicy(2, 0)
    with pytest.raises(ValueError, match="hidden"):
        GaussianMLPPolicy(2, 2, hidden=(0,))
