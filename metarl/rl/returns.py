"""Discounted returns and generalised advantage estimation over padded, masked episodes.

Episodes are ``[..., H]`` tensors along time; ``masks_t`` is 1 on an episode's valid steps and
0 after it ended (it never restarts). A step past the end contributes nothing, and the value
after the last valid step is 0 (the episode is treated as over, as in rllab and
pytorch-maml-rl).
"""

from __future__ import annotations

import torch


def _check_time_major(name: str, x: torch.Tensor, like: torch.Tensor) -> None:
    if x.shape != like.shape:
        raise ValueError(f"{name} must have shape {tuple(like.shape)} (like rewards_t), "
                         f"got {tuple(x.shape)}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a time dimension (last), got a scalar")


def _check_factor(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def discounted_returns(rewards_t: torch.Tensor, masks_t: torch.Tensor,
                       gamma: float) -> torch.Tensor:
    """``G_t = m_t (r_t + gamma G_{t+1})`` with ``G_H = 0``, along the last dimension.

    Args:
        rewards_t: Rewards ``r_t``, shape ``[..., H]``.
        masks_t: 1 where step ``t`` is valid, 0 after the episode's end; same shape.
        gamma: Discount factor in [0, 1].

    Returns:
        The reward-to-go ``G_t`` (0 on masked steps), shape ``[..., H]``.
    """
    _check_time_major("masks_t", masks_t, rewards_t)
    _check_factor("gamma", gamma)
    returns_t = torch.zeros_like(rewards_t)
    g_tp1 = torch.zeros_like(rewards_t[..., 0])
    for t in range(rewards_t.shape[-1] - 1, -1, -1):
        g_tp1 = masks_t[..., t] * (rewards_t[..., t] + gamma * g_tp1)
        returns_t[..., t] = g_tp1
    return returns_t


def gae_advantages(rewards_t: torch.Tensor, values_t: torch.Tensor, masks_t: torch.Tensor,
                   gamma: float, gae_lambda: float) -> torch.Tensor:
    """GAE (Schulman et al., 2016): ``A_t = sum_l (gamma lambda)^l delta_{t+l}``.

    ``delta_t = r_t + gamma m_{t+1} V_{t+1} - V_t`` on valid steps (``m_H = 0``: no value after
    the horizon) and ``A_t = m_t (delta_t + gamma lambda A_{t+1})``.

    Args:
        rewards_t: Rewards, shape ``[..., H]``.
        values_t: Baseline values ``V(s_t)``, same shape.
        masks_t: Valid-step masks, same shape.
        gamma: Discount factor in [0, 1].
        gae_lambda: GAE lambda in [0, 1] (1: Monte-Carlo return minus baseline).

    Returns:
        Advantages ``A_t`` (0 on masked steps), shape ``[..., H]``.
    """
    _check_time_major("values_t", values_t, rewards_t)
    _check_time_major("masks_t", masks_t, rewards_t)
    _check_factor("gamma", gamma)
    _check_factor("gae_lambda", gae_lambda)
    values_t = values_t * masks_t
    values_tp1 = torch.cat([values_t[..., 1:], torch.zeros_like(values_t[..., :1])], dim=-1)
    deltas_t = masks_t * (rewards_t + gamma * values_tp1 - values_t)
    advantages_t = torch.zeros_like(rewards_t)
    a_tp1 = torch.zeros_like(rewards_t[..., 0])
    for t in range(rewards_t.shape[-1] - 1, -1, -1):
        a_tp1 = masks_t[..., t] * (deltas_t[..., t] + gamma * gae_lambda * a_tp1)
        advantages_t[..., t] = a_tp1
    return advantages_t


def normalize_advantages(advantages_t: torch.Tensor, masks_t: torch.Tensor,
                         dims: tuple[int, ...] = (-2, -1), eps: float = 1e-8) -> torch.Tensor:
    """``(A - mean) / (std + eps)`` over the valid steps of ``dims`` (per task), 0 when masked.

    The mean and (biased) standard deviation are weighted by the mask, as pytorch-maml-rl's
    ``weighted_normalize``.
    """
    _check_time_major("masks_t", masks_t, advantages_t)
    count = masks_t.sum(dim=dims, keepdim=True).clamp_min(1.0)
    mean = (advantages_t * masks_t).sum(dim=dims, keepdim=True) / count
    var = ((advantages_t - mean).pow(2) * masks_t).sum(dim=dims, keepdim=True) / count
    return masks_t * (advantages_t - mean) / (var.sqrt() + eps)
