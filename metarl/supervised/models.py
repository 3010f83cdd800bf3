"""Regression models and their functional MSE loss.

The sinusoid network is Finn et al.'s (2017) 1-40-40-1 ReLU MLP; the mixed linear
regression model is Bernacchia's (2021) linear predictor ``y = w . x`` (no bias), whose
meta-parameter is the initial weight vector. Losses run the module with
``torch.func.functional_call`` on an explicit parameter dict, so the core can adapt and
vmap them without touching the module.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from metarl.core import Params

TASKS = ("sinusoid", "linear")


def sinusoid_mlp(hidden: int = 40) -> nn.Sequential:
    """1-``hidden``-``hidden``-1 ReLU MLP (Finn et al., 2017, sec. 5.1)."""
    return nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def linear_model(p: int) -> nn.Linear:
    """``y = w . x`` with ``w`` initialised at 0 (Bernacchia, 2021)."""
    model = nn.Linear(p, 1, bias=False)
    nn.init.zeros_(model.weight)
    return model


def build_model(task: str, p: int = 1) -> nn.Module:
    """The model of ``task`` (one of ``TASKS``); ``p`` is the linear task's input dimension."""
    if task == "sinusoid":
        return sinusoid_mlp()
    if task == "linear":
        return linear_model(p)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def mse_loss_fn(model: nn.Module) -> Callable[[Params, dict[str, torch.Tensor]], torch.Tensor]:
    """``loss(params, {"x", "y"}) -> mean squared error`` of ``model`` run with ``params``."""

    def loss(params: Params, data: dict[str, torch.Tensor]) -> torch.Tensor:
        prediction = torch.func.functional_call(model, params, (data["x"],))
        return ((prediction - data["y"]) ** 2).mean()

    return loss
