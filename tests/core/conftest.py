"""Shared fixtures: a small float64 tanh MLP, its regression loss, and stacked task data."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn

from metarl.core import Params


@pytest.fixture(autouse=True)
def _float64() -> Iterator[None]:
    # Finite-difference and equivalence checks need double precision.
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 6), nn.Tanh(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 1))


@pytest.fixture
def loss_fn(mlp: nn.Module) -> Callable[[Params, Any], torch.Tensor]:
    def loss(params: Params, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = data
        return ((torch.func.functional_call(mlp, params, (x,)) - y) ** 2).mean()

    return loss


@pytest.fixture
def tasks() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Support and query sets of 4 sinusoid tasks, 5 and 7 points each, task dim first."""
    gen = torch.Generator().manual_seed(1)
    amp = 0.5 + torch.rand(4, 1, 1, generator=gen)
    phase = 3.0 * torch.rand(4, 1, 1, generator=gen)
    xs = 4.0 * torch.rand(4, 5, 1, generator=gen) - 2.0
    xq = 4.0 * torch.rand(4, 7, 1, generator=gen) - 2.0
    return (xs, amp * torch.sin(xs + phase)), (xq, amp * torch.sin(xq + phase))
