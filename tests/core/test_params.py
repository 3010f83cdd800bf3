from __future__ import annotations

import pytest
import torch
from torch import nn

from metarl.core import adapt_keys, check_finite, get_params, head_keys


class GaussianPolicy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.LayerNorm(4))
        self.mean = nn.Linear(4, 2)
        self.log_std = nn.Parameter(torch.zeros(2))


def test_get_params_returns_the_module_tensors(mlp: nn.Module) -> None:
    params = get_params(mlp)
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert params["2.weight"] is mlp.get_parameter("2.weight")


def test_head_is_last_linear_layer(mlp: nn.Module) -> None:
    assert head_keys(get_params(mlp)) == ("4.weight", "4.bias")
    # The 1-D LayerNorm weight and the trailing log-std are not a linear layer.
    assert head_keys(get_params(GaussianPolicy())) == ("mean.weight", "mean.bias")
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1, bias=False), nn.LayerNorm(1))
    assert head_keys(get_params(net)) == ("1.weight",)


def test_head_selector_regex() -> None:
    params = get_params(GaussianPolicy())
    # Keys come in named_parameters order: a module's own parameters before submodules'.
    assert head_keys(params, r"^(mean|log_std)") == ("log_std", "mean.weight", "mean.bias")
    assert head_keys(params, "body.2") == ("body.2.weight", "body.2.bias")


def test_head_selector_errors_name_the_field_and_keys() -> None:
    params = get_params(GaussianPolicy())
    with pytest.raises(ValueError, match=r"head_selector.*mean\.weight"):
        head_keys(params, "^decoder")
    with pytest.raises(ValueError, match="head_selector"):
        head_keys(params, "(unclosed")
    with pytest.raises(ValueError, match=r"head_selector.*'0\.weight'"):
        head_keys(get_params(nn.Sequential(nn.LayerNorm(3))))


def test_adapt_keys_modes(mlp: nn.Module) -> None:
    params = get_params(mlp)
    assert adapt_keys(params, "all") == tuple(params)
    assert adapt_keys(params, "head") == ("4.weight", "4.bias")
    assert adapt_keys(params, "head", r"^2\.") == ("2.weight", "2.bias")
    assert adapt_keys(params, "none") == ()
    with pytest.raises(ValueError, match=r"adapt.*'all', 'head', 'none'"):
        adapt_keys(params, "body")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"),
                                 torch.tensor([1.0, float("nan")])])
def test_check_finite_rejects(bad: float | torch.Tensor) -> None:
    with pytest.raises(ValueError, match="inner_lr"):
        check_finite("inner_lr", bad)


def test_check_finite_accepts() -> None:
    check_finite("inner_lr", -0.5)
    check_finite("inner_lr", 0)
    check_finite("x", torch.tensor([1.0, -2.0]))
