"""Meta-steps for online meta-learning of an update rule: momentum-like and optimistic.

Flennerhag et al. ("Optimistic meta-gradients", NeurIPS 2023) observe that gradient descent
with momentum is a meta-gradient method: learn the step ``w`` of the rule ``x' = x + w`` by
``w <- decay * w - lr * d f(x + w) / dw`` and ``x`` follows heavy-ball momentum (Polyak,
1964) with momentum ``decay``; a learned rule alone speeds convergence by a constant at
most, and acceleration needs *optimism*, a prediction of the next meta-gradient.

The optimistic step implemented here is the optimistic online-gradient form (Chiang et al.,
2012; Rakhlin & Sridharan, 2013) with the last meta-gradient as the hint:

    w <- decay * w - lr * (g_t + optimism * (g_t - g_{t-1})).

For ``x + w`` with ``optimism = decay`` this is Nesterov's accelerated gradient in its
gradient-correction form (``torch.optim.SGD(nesterov=True)``; tests check both identities
step for step). The paper's other route to optimism, BMG's target ``L`` steps ahead, is
:mod:`metarl.core.bootstrap`. This is our reading of the method, not the paper's code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from metarl.core.params import Params


def check_meta_step(lr: float, decay: float, optimism: float) -> None:
    """``ValueError`` naming ``lr`` (finite > 0), ``decay`` (finite, any sign: BMG's pull
    toward the target already acts as momentum, so its tuned decay can be below 0) or
    ``optimism`` (finite >= 0)."""
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    if not math.isfinite(decay):
        raise ValueError(f"decay must be a finite number, got {decay}")
    if not (math.isfinite(optimism) and optimism >= 0):
        raise ValueError(f"optimism must be a finite number >= 0, got {optimism}")


def meta_step(w: Params, grads: Mapping[str, torch.Tensor], *, lr: float, decay: float = 1.0,
              optimism: float = 0.0,
              previous: Mapping[str, torch.Tensor] | None = None) -> Params:
    """``decay * w - lr * (g + optimism * (g - g_prev))``, detached; ``g_prev = 0`` at first.

    ``decay = 1, optimism = 0`` is plain SGD on the meta-parameters; ``decay < 1`` on
    ``x + w`` gives heavy ball; ``optimism > 0`` the optimistic step.
    """
    check_meta_step(lr, decay, optimism)
    new = {}
    for k, g in grads.items():
        hint = g if previous is None else g - previous[k]
        new[k] = (decay * w[k] - lr * (g + optimism * hint)).detach()
    return new
