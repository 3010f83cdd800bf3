"""Discounted returns, GAE and advantage normalisation against hand-computed values."""

from __future__ import annotations

import pytest
import torch

from metarl.rl.returns import discounted_returns, gae_advantages, normalize_advantages

REWARDS = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
MASKS = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]], dtype=torch.float64)


def test_discounted_returns_hand_values_with_mask() -> None:
    returns = discounted_returns(REWARDS, MASKS, gamma=0.5)
    # Episode 0 ends after 3 steps: G2 = 3, G1 = 2 + 0.5 * 3, G0 = 1 + 0.5 * 3.5; G3 masked.
    # Episode 1: G3 = 1, G2 = 1.5, G1 = 1.75, G0 = 1.875.
    expected = torch.tensor([[2.75, 3.5, 3.0, 0.0], [1.875, 1.75, 1.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(returns, expected, rtol=0, atol=1e-12)


def test_gae_hand_values_with_mask() -> None:
    values = torch.tensor([[1.0, 1.0, 2.0, 5.0]], dtype=torch.float64)
    adv = gae_advantages(REWARDS[:1], values, MASKS[:1], gamma=0.5, gae_lambda=0.5)
    # deltas: 1 + .5*1 - 1 = .5; 2 + .5*2 - 1 = 2; 3 + 0 - 2 = 1 (no value after the end).
    # A2 = 1, A1 = 2 + .25 * 1 = 2.25, A0 = .5 + .25 * 2.25 = 1.0625, A3 = 0 (masked).
    expected = torch.tensor([[1.0625, 2.25, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


def test_gae_lambda_one_is_return_minus_value() -> None:
    values = torch.randn(2, 4, dtype=torch.float64)
    adv = gae_advantages(REWARDS, values, MASKS, gamma=0.9, gae_lambda=1.0)
    expected = (discounted_returns(REWARDS, MASKS, 0.9) - values) * MASKS
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


def test_gae_lambda_zero_is_td_error() -> None:
    values = torch.tensor([[0.5, -1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    adv = gae_advantages(REWARDS, values, MASKS, gamma=0.9, gae_lambda=0.0)
    expected = torch.tensor([[1 + 0.9 * -1.0 - 0.5, 2 + 0.9 * 2.0 + 1.0, 3.0 - 2.0, 0.0],
                             [1 + 1.8 - 1.0, 1 + 2.7 - 2.0, 1 + 3.6 - 3.0, 1 - 4.0]],
                            dtype=torch.float64)
    torch.testing.assert_close(adv, expected, rtol=0, atol=1e-12)


def test_normalize_ignores_masked_steps() -> None:
    adv = torch.tensor([[[1.0, 3.0, 100.0]]], dtype=torch.float64)
    masks = torch.tensor([[[1.0, 1.0, 0.0]]], dtype=torch.float64)
    out = normalize_advantages(adv, masks, eps=0.0)
    torch.testing.assert_close(out, torch.tensor([[[-1.0, 1.0, 0.0]]], dtype=torch.float64))


def test_shape_and_range_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="masks_t"):
        discounted_returns(REWARDS, MASKS[:, :3], 0.9)
    with pytest.raises(ValueError, match="values_t"):
        gae_advantages(REWARDS, REWARDS[:1], MASKS, 0.9, 1.0)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(REWARDS, MASKS, 1.5)
    with pytest.raises(ValueError, match="gae_lambda"):
        gae_advantages(REWARDS, REWARDS, MASKS, 0.9, -0.1)
