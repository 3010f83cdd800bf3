"""The linear feature baseline of Duan et al. (2016), "Benchmarking Deep Reinforcement Learning
for Continuous Control" (rllab), fitted per task by regularised least squares.

Features of step ``t`` (time ``t / 100`` as rllab): ``[clip(s, -10, 10), clip(s, -10, 10)^2,
t, t^2, t^3, 1]``. Each task's weights solve ``(F^T F + c I) w = F^T G`` over its valid steps
by Cholesky; a task whose factorisation fails or gives a non-finite solution retries with
``c`` multiplied by ``reg_factor`` (rllab's escalation), and ``torch.linalg.lstsq`` is the last
resort. The solve runs in float64 whatever the policy dtype: the normal matrix of squared
features is badly conditioned in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BaselineFit:
    """Per-task result of :meth:`LinearFeatureBaseline.fit`.

    Attributes:
        weights: ``[T, F]`` feature weights.
        reg: ``[T]`` regularisation actually used.
        fit_error: ``[T]`` unexplained fraction of the returns' variance, ``1 - R^2``.
    """

    weights: torch.Tensor
    reg: torch.Tensor
    fit_error: torch.Tensor


def solve_regularized(a: torch.Tensor, b: torch.Tensor, reg_coeff: float, max_tries: int,
                      reg_factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``(A_i + c_i I) w_i = b_i`` for a batch of symmetric PSD ``A_i``.

    Every system starts at ``c_i = reg_coeff``; systems whose Cholesky factorisation fails
    or whose solution is not finite retry with ``c_i *= reg_factor``, up to ``max_tries``
    attempts; the ones still failing are solved by ``torch.linalg.lstsq`` at the last ``c_i``.

    Args:
        a: ``[T, F, F]`` symmetric matrices.
        b: ``[T, F]`` right-hand sides.
        reg_coeff: Initial ridge coefficient, >= 0.
        max_tries: Cholesky attempts, >= 1.
        reg_factor: Escalation factor, > 1.

    Returns:
        ``(w [T, F], c [T])``.
    """
    if reg_coeff < 0 or max_tries < 1 or reg_factor <= 1:
        raise ValueError("reg_coeff must be >= 0, max_tries >= 1 and reg_factor > 1, got "
                         f"{reg_coeff}, {max_tries}, {reg_factor}")
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    reg = torch.full(a.shape[:1], float(reg_coeff), dtype=a.dtype, device=a.device)
    # Non-finite data gets NaN weights: the learner's NaN guard must see it, not a solver.
    finite = torch.isfinite(a).flatten(1).all(dim=1) & torch.isfinite(b).all(dim=1)
    w = torch.where(finite[:, None], torch.zeros_like(b), torch.full_like(b, math.nan))
    todo = finite.clone()
    for attempt in range(max_tries):
        if not bool(todo.any()):
            return w, reg
        idx = todo.nonzero().flatten()
        system = a[idx] + reg[idx, None, None] * eye
        chol, info = torch.linalg.cholesky_ex(system)
        sol = torch.cholesky_solve(b[idx, :, None], chol)[..., 0]
        ok = (info == 0) & torch.isfinite(sol).all(dim=-1)
        w[idx[ok]] = sol[ok]
        todo[idx[ok]] = False
        if attempt < max_tries - 1:
            reg[todo] = torch.where(reg[todo] > 0, reg[todo] * reg_factor, 1e-8)
    idx = todo.nonzero().flatten()
    if idx.numel() == 0:
        return w, reg
    last = a[idx] + reg[idx, None, None] * eye
    w[idx] = torch.linalg.lstsq(last, b[idx, :, None]).solution[..., 0]
    return w, reg


class LinearFeatureBaseline:
    """Per-task linear value baseline (Duan et al., 2016), refitted on every batch.

    Args:
        reg_coeff: Initial ridge coefficient (rllab: 1e-5).
        max_tries: Cholesky attempts with escalating regularisation.
        reg_factor: Factor applied to the ridge coefficient after each failure.
    """

    def __init__(self, reg_coeff: float = 1e-5, max_tries: int = 5,
                 reg_factor: float = 10.0) -> None:
        self.reg_coeff, self.max_tries, self.reg_factor = reg_coeff, max_tries, reg_factor

    @staticmethod
    def features(obs_t: torch.Tensor) -> torch.Tensor:
        """``[..., H, d] -> [..., H, 2d + 4]``: ``s, s^2, t, t^2, t^3, 1`` with ``t = step/100``."""
        obs = obs_t.clamp(-10.0, 10.0)
        steps = obs_t.shape[-2]
        t = torch.arange(steps, dtype=obs_t.dtype, device=obs_t.device) / 100.0
        t = t.reshape(steps, 1).expand(*obs_t.shape[:-1], 1)
        return torch.cat([obs, obs.pow(2), t, t.pow(2), t.pow(3), torch.ones_like(t)], dim=-1)

    def fit(self, obs_t: torch.Tensor, returns_t: torch.Tensor,
            masks_t: torch.Tensor) -> BaselineFit:
        """Fit one weight vector per task on its valid steps.

        Args:
            obs_t: ``[T, E, H, d]`` observations.
            returns_t: ``[T, E, H]`` discounted returns.
            masks_t: ``[T, E, H]`` valid-step masks.
        """
        shapes_ok = returns_t.shape == obs_t.shape[:3] and masks_t.shape == returns_t.shape
        if obs_t.dim() != 4 or not shapes_ok:
            raise ValueError("obs_t must be [T, E, H, d] and returns_t, masks_t [T, E, H], got "
                             f"{tuple(obs_t.shape)}, {tuple(returns_t.shape)}, "
                             f"{tuple(masks_t.shape)}")
        feats = self.features(obs_t.double()).flatten(1, 2)
        m = masks_t.double().flatten(1)
        g = returns_t.double().flatten(1) * m
        fm = feats * m[..., None]
        a = fm.transpose(1, 2) @ fm
        b = (fm.transpose(1, 2) @ g[..., None])[..., 0]
        w, reg = solve_regularized(a, b, self.reg_coeff, self.max_tries, self.reg_factor)
        return BaselineFit(w, reg, _fit_error(fm, g, m, w))

    @staticmethod
    def predict(weights: torch.Tensor, obs_t: torch.Tensor) -> torch.Tensor:
        """Values ``[T, E, H]`` of ``obs_t [T, E, H, d]`` under per-task ``weights [T, F]``."""
        feats = LinearFeatureBaseline.features(obs_t.double())
        values = torch.einsum("tehf,tf->teh", feats, weights.double())
        return values.to(obs_t.dtype)


def _fit_error(fm: torch.Tensor, g: torch.Tensor, m: torch.Tensor,
               w: torch.Tensor) -> torch.Tensor:
    """``1 - R^2`` per task over the valid steps (0 when the returns are constant)."""
    residual = ((fm @ w[..., None])[..., 0] - g) * m
    count = m.sum(dim=1).clamp_min(1.0)
    mean = g.sum(dim=1) / count
    total = (((g - mean[:, None]) * m).pow(2)).sum(dim=1)
    sse = residual.pow(2).sum(dim=1)
    return torch.where(total > 0, sse / total.clamp_min(1e-300), torch.zeros_like(sse))
