"""Gaussian MLP policy, run functionally over explicit parameter dicts.

The policy of MAML-TRPO (Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation
of Deep Networks"): an MLP body (2x64 tanh by default), a linear head giving the action mean
and a state-independent log standard deviation. The head is the last ``nn.Linear`` so that
:func:`metarl.core.head_keys` finds it (ANIL, Raghu et al., 2020). Distribution maths are pure
functions of ``(mean, log_std)`` so they run per task inside ``torch.func.vmap``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from metarl.core import Params

ACTIVATIONS = ("tanh", "relu")
LOG_2PI = math.log(2.0 * math.pi)


def _activation(name: str) -> nn.Module:
    if name == "tanh":
        return nn.Tanh()
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")


def _check_sizes(obs_dim: int, act_dim: int, hidden: Sequence[int], init_log_std: float) -> None:
    for field, value in (("obs_dim", obs_dim), ("act_dim", act_dim)):
        if value < 1:
            raise ValueError(f"{field} must be an int >= 1, got {value}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden must hold layer sizes >= 1, got {tuple(hidden)}")
    if not math.isfinite(init_log_std):
        raise ValueError(f"init_log_std must be finite, got {init_log_std}")


class GaussianMLPPolicy(nn.Module):
    """``a ~ N(head(body(s)), diag(exp(log_std))^2)`` (Finn et al., 2017; Duan et al., 2016).

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Hidden layer sizes of the body (empty: a linear policy).
        activation: One of ``ACTIVATIONS``.
        init_log_std: Initial value of every log-std entry.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", init_log_std: float = 0.0) -> None:
        super().__init__()
        _check_sizes(obs_dim, act_dim, hidden, init_log_std)
        layers: list[nn.Module] = []
        sizes = [obs_dim, *hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(fan_in, fan_out), _activation(activation)]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], act_dim)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))
        self._init_weights()

    def _init_weights(self) -> None:
        # Xavier-uniform weights and zero biases, as pytorch-maml-rl's policies.
        for module in [*self.body, self.head]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [..., act_dim], log_std [act_dim])`` of the action distribution."""
        return self.head(self.body(obs)), self.log_std

    def dist_params(self, params: Params, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` with the parameters ``params`` (``torch.func.functional_call``)."""
        out: tuple[torch.Tensor, torch.Tensor] = torch.func.functional_call(self, params, (obs,))
        return out

    def dist_params_per_task(self, params_per_task: Params,
                             obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean [T, B, a], log_std [T, a])`` of ``obs [T, B, d]``, task ``i`` with params ``i``.

        The sampler's per-step forward: one ``torch.baddbmm`` per layer over the stacked
        ``[T, out, in]`` weights. The same function as ``vmap(dist_params)``
        (:func:`metarl.rl.sampler.forward_per_task`, its reference in the tests), in a third of
        its CPU time (vmap's per-call dispatch dominates at these sizes; docs/speed.md).
        """
        x = obs
        for name, module in [*(("body." + k, m) for k, m in self.body.named_children()),
                             ("head", self.head)]:
            if isinstance(module, nn.Linear):
                weight, bias = params_per_task[f"{name}.weight"], params_per_task[f"{name}.bias"]
                x = torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
            else:
                x = module(x)  # an elementwise activation
        return x, params_per_task["log_std"]


def log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Diagonal Gaussian log-density summed over the action dimension.

    ``log N(a; mu, sigma) = -sum_j [(a_j - mu_j)^2 / (2 sigma_j^2) + log sigma_j + log(2 pi)/2]``.
    """
    z = (actions - mean) * torch.exp(-log_std)
    return -(0.5 * z.pow(2) + log_std + 0.5 * LOG_2PI).sum(dim=-1)


def kl_divergence(mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor,
                  log_std_q: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` of diagonal Gaussians summed over the action dimension.

    ``KL = sum_j [log(s_q/s_p) + (s_p^2 + (mu_p - mu_q)^2) / (2 s_q^2) - 1/2]``.
    """
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    mean_term = (mean_p - mean_q).pow(2) * torch.exp(-2.0 * log_std_q)
    return (log_std_q - log_std_p + 0.5 * (var_ratio + mean_term) - 0.5).sum(dim=-1)


def entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian: ``sum_j [log sigma_j + (1 + log 2 pi) / 2]``."""
    return (log_std + 0.5 * (1.0 + LOG_2PI)).sum(dim=-1)
