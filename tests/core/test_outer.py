from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from metarl.core import OuterOptimizer, get_params


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _loss(net: nn.Module, scale: float = 1.0) -> torch.Tensor:
    x = torch.linspace(-1, 1, 15).view(5, 3)
    return scale * (net(x) ** 2).mean()


def _snapshot(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_plain_step_equals_adam() -> None:
    net, ref = _net(), _net()
    opt = OuterOptimizer(net.parameters(), lr=1e-2, total_steps=None, cosine=False,
                         clip_norm=None)
    adam = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(3):
        logs = opt.step(_loss(net))
        adam.zero_grad()
        _loss(ref).backward()
        adam.step()
    assert logs["nonfinite_skipped"] == 0.0 and logs["lr"] == 1e-2 and logs["grad_norm"] > 0
    for a, b in zip(net.parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b)


def _nan_loss(net: nn.Module) -> torch.Tensor:
    return _loss(net) * float("nan")


def _nan_grad(net: nn.Sequential) -> torch.Tensor:
    w = get_params(net)["0.weight"]
    return _loss(net) + torch.sqrt(w - w).sum()  # value 0, gradient 0 * inf = nan


def _inf_grad(net: nn.Sequential) -> torch.Tensor:
    w = get_params(net)["0.weight"]
    return _loss(net) + torch.sqrt(w - w.detach()).sum()  # value 0, gradient +inf


@pytest.mark.parametrize("bad_loss", [_nan_loss, _nan_grad, _inf_grad])
def test_nonfinite_step_is_skipped(bad_loss: object) -> None:
    net = _net()
    opt = OuterOptimizer(net.parameters(), lr=1e-2, total_steps=10, cosine=True,
                         clip_norm=1.0)
    opt.step(_loss(net))
    params, state = _snapshot(net), copy.deepcopy(opt.state_dict())
    assert callable(bad_loss)
    logs = opt.step(bad_loss(net))
    assert logs["nonfinite_skipped"] == 1.0
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), params, strict=True))
    after = opt.state_dict()
    assert after["steps_taken"] == state["steps_taken"] == 1
    for key, value in state["optimizer"]["state"][0].items():
        assert torch.equal(after["optimizer"]["state"][0][key], value)
    assert opt.step(_loss(net))["nonfinite_skipped"] == 0.0  # training goes on


def test_clipping_scales_gradients_to_clip_norm() -> None:
    net = _net()
    opt = OuterOptimizer(net.parameters(), lr=1e-3, total_steps=None, cosine=False,
                         clip_norm=0.5)
    logs = opt.step(_loss(net, scale=1e4))
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()
                                                    if p.grad is not None]))
    assert logs["grad_norm"] > 100
    assert float(clipped) == pytest.approx(0.5, rel=1e-6)
    small = OuterOptimizer(net.parameters(), lr=1e-3, total_steps=None, cosine=False,
                           clip_norm=1e9)
    logs = small.step(_loss(net))
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in net.parameters()
                                                 if p.grad is not None]))
    assert float(norm) == pytest.approx(logs["grad_norm"], rel=1e-12)


def test_cosine_lr_reaches_min_lr() -> None:
    net = _net()
    opt = OuterOptimizer(net.parameters(), lr=1e-2, total_steps=10, cosine=True, min_lr=1e-4,
                         clip_norm=None)
    lrs = [opt.step(_loss(net))["lr"] for _ in range(10)]
    assert lrs[0] == 1e-2
    assert lrs[5] == pytest.approx(1e-4 + (1e-2 - 1e-4) / 2)
    assert lrs == sorted(lrs, reverse=True)
    assert opt.optimizer.param_groups[0]["lr"] == lrs[-1]
    assert opt.lr == 1e-4
    opt.step(_loss(net))
    assert opt.optimizer.param_groups[0]["lr"] == 1e-4  # stays at the floor afterwards
    assert lrs[9] == pytest.approx(1e-4 + (1e-2 - 1e-4) * 0.5 * (1 + math.cos(0.9 * math.pi)))


def test_state_dict_round_trip_through_disk(tmp_path: Path) -> None:
    net = _net()
    kwargs = {"lr": 1e-2, "total_steps": 20, "cosine": True, "clip_norm": 1.0}
    opt = OuterOptimizer(net.parameters(), **kwargs)  # type: ignore[arg-type]
    for _ in range(3):
        opt.step(_loss(net))
    torch.save({"net": net.state_dict(), "opt": opt.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt")
    resumed = _net()
    resumed.load_state_dict(ckpt["net"])
    opt2 = OuterOptimizer(resumed.parameters(), **kwargs)  # type: ignore[arg-type]
    opt2.load_state_dict(ckpt["opt"])
    for _ in range(2):
        assert opt.step(_loss(net)) == opt2.step(_loss(resumed))
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), resumed.parameters(),
                                                 strict=True))


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"lr": float("nan"), "total_steps": None, "cosine": False, "clip_norm": None}, "lr"),
    ({"lr": 1e-3, "total_steps": None, "cosine": True, "clip_norm": None}, "total_steps"),
    ({"lr": 1e-3, "total_steps": 0, "cosine": True, "clip_norm": None}, "total_steps"),
    ({"lr": 1e-3, "total_steps": None, "cosine": False, "clip_norm": 0.0}, "clip_norm"),
    ({"lr": 1e-3, "total_steps": 5, "cosine": True, "min_lr": float("inf"),
      "clip_norm": None}, "min_lr"),
])
def test_bad_arguments_raise(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        OuterOptimizer(_net().parameters(), **kwargs)  # type: ignore[arg-type]
