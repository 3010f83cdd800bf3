"""The outer (meta) optimiser: Adam, cosine-annealed lr, grad-norm clipping, NaN guard.

Adam (Kingma & Ba, 2015) on the meta-objective as in MAML (Finn et al., 2017), with the
cosine annealing of the outer lr used by MAML++ (Antoniou et al., 2019; schedule of
Loshchilov & Hutter, 2017, "SGDR") and global-norm clipping. A step whose loss or
gradient is not finite is skipped, leaving parameters and optimiser state untouched.

Two more outer rules suit objectives whose smoothness grows with the gradient norm, as
MAML's does (Chayti & Jaggi, 2024): ``nsgdm``, normalised SGD with momentum
(``m <- beta m + (1 - beta) g``, ``theta <- theta - lr m / |m|``; Cutkosky & Mehta, 2020),
and ``clipped_sgd``, ``theta <- theta - lr min(1, c / |g|) g`` (Zhang et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from metarl.core.params import check_finite


def cosine_lr(base_lr: float, min_lr: float, step: int, total_steps: int) -> float:
    """``min_lr + (base_lr - min_lr) * (1 + cos(pi * t / T)) / 2`` with ``t`` clamped to ``T``."""
    progress = min(step, total_steps) / total_steps
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def grad_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """Global 2-norm of the gradients present on ``params`` (0 when there are none)."""
    norms = [p.grad.detach().norm(2) for p in params if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms]))


# ``default`` is the trainer's own rule: Adam here, TRPO in meta-RL (which takes no other).
OUTER_RULES = ("default", "nsgdm", "clipped_sgd")


class NormalizedMomentumSGD(torch.optim.Optimizer):
    """Normalised SGD with momentum over all parameters together (Cutkosky & Mehta, 2020).

    ``m <- beta m + (1 - beta) g`` per tensor, then every tensor moves by
    ``-lr m / |m|`` with ``|m|`` the global norm of the momentum over all tensors, so each
    step has length ``lr`` whatever the gradient's scale.
    """

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        moments = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(group["momentum"]).add_(p.grad, alpha=1.0 - group["momentum"])
                moments.append((p, buf, group["lr"]))
        if not moments:
            return
        norm = torch.sqrt(sum((b * b).sum() for _, b, _ in moments))  # type: ignore[arg-type]
        scale = 1.0 / float(norm.clamp_min(1e-12))
        for p, buf, lr in moments:
            p.add_(buf, alpha=-lr * scale)


def check_outer_rule(rule: str, momentum: float, clip_norm: float | None) -> None:
    """Raise ``ValueError`` naming ``outer``, ``outer_momentum`` or ``clip_norm``."""
    if rule not in OUTER_RULES:
        raise ValueError(f"outer must be one of {OUTER_RULES}, got {rule!r}")
    if isinstance(momentum, bool) or not (math.isfinite(momentum) and 0.0 <= momentum < 1.0):
        raise ValueError(f"outer_momentum must be a number in [0, 1), got {momentum}")
    if rule == "clipped_sgd" and clip_norm is None:
        raise ValueError("clip_norm must be a finite number > 0 with outer 'clipped_sgd' "
                         "(the clipping threshold), got None")


def make_optimizer(rule: str, params: list[torch.Tensor], lr: float,
                   momentum: float) -> torch.optim.Optimizer:
    """The torch optimiser of an outer rule: Adam, normalised momentum SGD or plain SGD."""
    if rule == "nsgdm":
        return NormalizedMomentumSGD(params, lr=lr, momentum=momentum)
    if rule == "clipped_sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


def _validate(lr: float, total_steps: int | None, cosine: bool, min_lr: float,
              clip_norm: float | None) -> None:
    check_finite("lr", lr)
    check_finite("min_lr", min_lr)
    if cosine and (total_steps is None or total_steps < 1):
        raise ValueError(f"total_steps must be an int >= 1 when cosine=True, got {total_steps}")
    if clip_norm is not None and not (math.isfinite(clip_norm) and clip_norm > 0):
        raise ValueError(f"clip_norm must be a finite number > 0 or None, got {clip_norm}")


class OuterOptimizer:
    """An outer rule (Adam by default) with optional cosine lr annealing and grad-norm clipping.

    Args:
        params: Meta-parameters (model parameters and learned inner lrs).
        lr: Initial outer learning rate.
        total_steps: Steps of the cosine schedule (required when ``cosine``).
        cosine: Anneal the lr from ``lr`` to ``min_lr`` over ``total_steps`` steps.
        min_lr: Final lr of the cosine schedule.
        clip_norm: Clip the global gradient norm to this value; ``None`` disables clipping
            (required by ``clipped_sgd``: its threshold).
        rule: ``default`` (Adam), ``nsgdm`` (normalised SGD with momentum) or
            ``clipped_sgd`` (SGD on the clipped gradient).
        momentum: The momentum ``beta`` of ``nsgdm``, in [0, 1).
    """

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, total_steps: int | None,
                 cosine: bool, min_lr: float = 0.0, clip_norm: float | None,
                 rule: str = "default", momentum: float = 0.9) -> None:
        _validate(lr, total_steps, cosine, min_lr, clip_norm)
        check_outer_rule(rule, momentum, clip_norm)
        self.rule = rule
        self.params = list(params)
        self.base_lr = lr
        self.min_lr = min_lr
        self.total_steps = total_steps
        self.cosine = cosine
        self.clip_norm = clip_norm
        self.steps_taken = 0
        self.optimizer = make_optimizer(rule, self.params, lr, momentum)

    @property
    def lr(self) -> float:
        """The lr the next step will use."""
        if not self.cosine or self.total_steps is None:
            return self.base_lr
        return cosine_lr(self.base_lr, self.min_lr, self.steps_taken, self.total_steps)

    def step(self, loss: torch.Tensor) -> dict[str, float]:
        """Zero grads, backpropagate ``loss``, and take one guarded, clipped step of the rule.

        Returns:
            Logs: ``loss``, ``grad_norm`` (before clipping), ``lr`` (used by this step),
            ``nonfinite_skipped`` (1.0 when the step was skipped, else 0.0).
        """
        self.optimizer.zero_grad(set_to_none=True)
        lr = self.lr
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            return self._logs(loss_value, float("nan"), lr, skipped=True)
        loss.backward()
        norm = float(grad_norm(self.params))
        if not math.isfinite(norm):
            self.optimizer.zero_grad(set_to_none=True)
            return self._logs(loss_value, norm, lr, skipped=True)
        self._clip(norm)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.steps_taken += 1
        return self._logs(loss_value, norm, lr, skipped=False)

    def _clip(self, norm: float) -> None:
        # Same rule as torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6).
        if self.clip_norm is None or norm <= self.clip_norm:
            return
        scale = self.clip_norm / (norm + 1e-6)
        for p in self.params:
            if p.grad is not None:
                p.grad.mul_(scale)

    @staticmethod
    def _logs(loss: float, norm: float, lr: float, skipped: bool) -> dict[str, float]:
        return {"loss": loss, "grad_norm": norm, "lr": lr,
                "nonfinite_skipped": 1.0 if skipped else 0.0}

    def state_dict(self) -> dict[str, Any]:
        """The rule's optimiser state and schedule position, for checkpoints."""
        return {"optimizer": self.optimizer.state_dict(), "steps_taken": self.steps_taken}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_taken = int(state["steps_taken"])
