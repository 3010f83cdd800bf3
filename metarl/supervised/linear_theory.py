"""MAML on mixed linear regression solved exactly (Bernacchia, 2021, ICLR, arXiv 2102.00940).

The setting of "Meta-learning with negative learning rates", sec. 3-4, in its normalisation:

* tasks ``w ~ N(w0 1_p, (nu^2 / p) I_p)``, inputs ``x ~ N(0, I_p)``, labels
  ``y = w . x + sigma * noise`` (:class:`~metarl.supervised.tasks.LinearTaskSpec`);
* loss ``L(w; X, y) = ||y - X w||^2 / (2 n)``, half the mean squared error. The suite's
  :func:`~metarl.supervised.models.mse_loss_fn` is the plain MSE, twice this loss, so its
  inner lr ``eta`` is the paper's ``alpha = 2 eta``;
* one inner step ``w' = w + (alpha / n) X^T (y - X w)``, affine in ``w``;
* meta-training on ``m`` tasks with ``n_t`` support and ``n_v`` query points each, from the
  initialisation ``omega0`` with the training lr ``alpha_t``; testing on fresh tasks after
  one step with the adaptation lr ``alpha_r`` on ``n_r`` points.

Because the adapted weights are affine in ``w``, the MAML objective is the least-squares
problem ``||M w - b||^2 / (2 m n_v)``, and gradient descent from ``omega0`` converges to
``omega0 + M^+ (b - M omega0)``, the solution nearest ``omega0`` (the minimum-norm one when
``omega0 = 0``). The expected test loss given the trained weights is exact, and so is its
expectation over the training labels given the training inputs; the paper's large-p closed
form (overparameterised case) approximates the remaining average over inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from metarl.core import Params
from metarl.supervised.models import mse_loss_fn
from metarl.supervised.tasks import (
    Batch,
    LinearTaskSpec,
    linear_points,
    sample_linear,
    sample_linear_weights,
)


@dataclass(frozen=True)
class MamlLinearSetting:
    """Meta-training and test sizes of Bernacchia (2021), with the task distribution.

    Args:
        spec: The mixed linear regression distribution (``p``, ``nu``, ``sigma``, ``w0``).
        m: Meta-training tasks.
        n_t: Support ("training") points per meta-training task.
        n_v: Query ("validation") points per meta-training task.
        n_r: Adaptation points per test task.
        init: Every component of the initialisation ``omega0`` gradient descent starts from.
    """

    spec: LinearTaskSpec
    m: int
    n_t: int
    n_v: int
    n_r: int
    init: float = 0.0

    def __post_init__(self) -> None:
        for name in ("m", "n_t", "n_v", "n_r"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value}")
        if not math.isfinite(self.init):
            raise ValueError(f"init must be finite, got {self.init}")

    @property
    def gamma(self) -> float:
        """``m n_v / p``: below 1 the model is overparameterised (fewer equations than ``p``)."""
        return self.m * self.n_v / self.spec.p


@dataclass(frozen=True)
class MamlFit:
    """Meta-trained weights ``(..., p)``, the design ``M (..., m n_v, p)``, its pseudo-inverse."""

    weights: torch.Tensor
    design: torch.Tensor
    pinv: torch.Tensor


def half_mse_loss_fn(model: nn.Module) -> Callable[[Params, Batch], torch.Tensor]:
    """The paper's loss ``||y - f(x)||^2 / (2 n)`` of ``model`` run with ``params``."""
    mse = mse_loss_fn(model)

    def loss(params: Params, data: Batch) -> torch.Tensor:
        return 0.5 * mse(params, data)

    return loss


def adapted_affine(x: torch.Tensor, y: torch.Tensor,
                   alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The inner step as an affine map ``w' = A w + c``: ``A = I - alpha X^T X / n``,
    ``c = alpha X^T y / n`` (inputs ``(..., n, p)``, labels ``(..., n, 1)``)."""
    n, p = x.shape[-2:]
    a = torch.eye(p, dtype=x.dtype) - alpha / n * x.mT @ x
    return a, alpha / n * (x.mT @ y)[..., 0]


def adapt_linear(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """One inner step ``w + (alpha / n) X^T (y - X w)`` without forming ``A`` (``w: (..., p)``)."""
    residual = y - x @ w[..., None]
    return w + alpha / x.shape[-2] * (x.mT @ residual)[..., 0]


def maml_least_squares(support: Batch, query: Batch,
                       alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The MAML objective of ``m`` tasks as ``||M w - b||^2 / (2 m n_v)`` (Bernacchia, 2021).

    Task ``i`` contributes ``M_i = X_v (I - alpha X_t^T X_t / n_t)`` and
    ``b_i = y_v - alpha X_v X_t^T y_t / n_t``; ``X_v X_t^T`` is formed first, so no ``p x p``
    matrix is built.

    Args:
        support: ``{"x": (..., m, n_t, p), "y": (..., m, n_t, 1)}``.
        query: ``{"x": (..., m, n_v, p), "y": (..., m, n_v, 1)}``.
        alpha: The training inner lr ``alpha_t`` (any sign).

    Returns:
        ``M`` of shape ``(..., m n_v, p)`` and ``b`` of shape ``(..., m n_v)``.
    """
    n_t = support["x"].shape[-2]
    cross = query["x"] @ support["x"].mT
    design = query["x"] - alpha / n_t * cross @ support["x"]
    target = (query["y"] - alpha / n_t * cross @ support["y"])[..., 0]
    return design.flatten(-3, -2), target.flatten(-2)


def fit_maml(support: Batch, query: Batch, alpha: float, init: float) -> MamlFit:
    """Where gradient descent on the MAML objective from ``init * 1_p`` converges.

    The iterates move only in the row space of ``M``, so the limit is the least-squares
    solution nearest the start, ``init + M^+ (b - M init)``: the interpolating one nearest
    ``init`` when ``m n_v < p`` (overparameterised), the unique one otherwise.
    """
    design, target = maml_least_squares(support, query, alpha)
    pinv = torch.linalg.pinv(design)
    start = torch.full(design.shape[:-2] + design.shape[-1:], float(init), dtype=design.dtype)
    residual = target - (design @ start[..., None])[..., 0]
    return MamlFit(start + (pinv @ residual[..., None])[..., 0], design, pinv)


def h_factor(alpha: float, n: int, p: int) -> float:
    """``E ||(I - alpha X^T X / n) u||^2 / ||u||^2 = (1 - alpha)^2 + alpha^2 (p + 1) / n``,
    exact for Gaussian inputs (``E (X^T X)^2 = n (n + p + 1) I``)."""
    return (1 - alpha) ** 2 + alpha**2 * (p + 1) / n


def point_loss(adapted: torch.Tensor, task: torch.Tensor, sigma: float) -> torch.Tensor:
    """Expected loss on one fresh point ``x ~ N(0, I)``: ``(sigma^2 + ||w' - w||^2) / 2``."""
    return 0.5 * (sigma**2 + ((adapted - task) ** 2).sum(-1))


def expected_test_loss(sq_distance: torch.Tensor | float, alpha_r: float,
                       setting: MamlLinearSetting) -> torch.Tensor | float:
    """Test loss expected over test tasks, their ``n_r`` adaptation points and the test point.

    ``(sigma^2 (1 + alpha_r^2 p / n_r) + h_r (nu^2 + ||omega - w0||^2)) / 2``, exact given the
    meta-trained weights' squared distance ``||omega - w0 1||^2`` to the task mean.
    """
    spec = setting.spec
    noise = spec.sigma**2 * (1 + alpha_r**2 * spec.p / setting.n_r)
    return 0.5 * (noise + h_factor(alpha_r, setting.n_r, spec.p) * (spec.nu**2 + sq_distance))


def expected_sq_distance(fit: MamlFit, support: Batch, query: Batch, alpha: float,
                         setting: MamlLinearSetting) -> torch.Tensor:
    """``E ||omega - w0 1||^2`` over the training tasks' weights and label noise, given inputs.

    ``omega - w0 = (I - M^+ M)(omega0 - w0) + M^+ r`` with ``r_i = M_i (w_i - w0) + e_i``, where
    ``Cov r_i = (nu^2 / p) M_i M_i^T + sigma^2 (I + alpha^2 X_v X_t^T X_t X_v^T / n_t^2)``
    and tasks are independent, so the expectation is the projection term plus
    ``sum_i tr((M^+T M^+)_ii Cov r_i)``.
    """
    spec, m, n_v = setting.spec, setting.m, setting.n_v
    cross = query["x"] @ support["x"].mT
    noise = torch.eye(n_v, dtype=cross.dtype) + (alpha / setting.n_t) ** 2 * cross @ cross.mT
    gram = _diagonal_blocks(fit.design @ fit.design.mT, m, n_v)
    covariance = spec.nu**2 / spec.p * gram + spec.sigma**2 * noise
    inverse = _diagonal_blocks(fit.pinv.mT @ fit.pinv, m, n_v)
    gap = torch.full(fit.weights.shape, setting.init - spec.w0, dtype=fit.weights.dtype)
    projected = gap - (fit.pinv @ (fit.design @ gap[..., None]))[..., 0]
    return (projected**2).sum(-1) + (inverse * covariance).sum((-3, -2, -1))


def _diagonal_blocks(matrix: torch.Tensor, m: int, n: int) -> torch.Tensor:
    """The ``m`` diagonal ``n x n`` blocks of ``(..., m n, m n)`` as ``(..., m, n, n)``."""
    split = matrix.unflatten(-1, (m, n)).unflatten(-3, (m, n))
    return torch.diagonal(split, dim1=-4, dim2=-2).movedim(-1, -3)


def monte_carlo_runs(setting: MamlLinearSetting, alpha_t: float, alpha_r: float, *, runs: int,
                     test_tasks: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent runs: fresh training tasks, meta-training to convergence, fresh test tasks.

    Meta-training is solved in float64; the test side (the bulk of the samples) runs in the
    samplers' float32, far below the Monte-Carlo error.

    Returns:
        Two ``(runs,)`` float64 tensors: the sampled test loss (the mean over ``test_tasks``
        tasks, each adapted on ``n_r`` sampled points, of :func:`point_loss`), and the same
        run's test loss expected over everything but its training inputs.
    """
    spec, m = setting.spec, setting.m
    support, query = (_by_run(b, runs, m, torch.float64) for b in
                      sample_linear(runs * m, spec, setting.n_t, setting.n_v, generator))
    fit = fit_maml(support, query, alpha_t, setting.init)
    tasks = sample_linear_weights(runs * test_tasks, spec, generator)
    adaptation = _by_run(linear_points(tasks, setting.n_r, spec.sigma, generator), runs,
                         test_tasks, tasks.dtype)
    adapted = adapt_linear(fit.weights.to(tasks.dtype)[:, None], adaptation["x"],
                           adaptation["y"], alpha_r)
    sampled = point_loss(adapted, tasks.unflatten(0, (runs, test_tasks)), spec.sigma)
    exact = expected_test_loss(expected_sq_distance(fit, support, query, alpha_t, setting),
                               alpha_r, setting)
    assert isinstance(exact, torch.Tensor)
    return sampled.double().mean(-1), exact


def _by_run(batch: Batch, runs: int, per_run: int, dtype: torch.dtype) -> Batch:
    """``(runs * per_run, ...)`` task data as ``(runs, per_run, ...)`` of ``dtype``."""
    return {k: v.to(dtype).unflatten(0, (runs, per_run)) for k, v in batch.items()}


def large_p_sq_distance(alpha_t: float, setting: MamlLinearSetting) -> float:
    """Bernacchia's (2021) overparameterised large-p value of ``E ||omega - w0 1||^2``.

    ``(1 - gamma) p (omega0 - w0)^2 + gamma (nu^2 + sigma^2 (1 + alpha_t^2 p / n_t) / h_t)``
    with ``gamma = m n_v / p``: :func:`expected_sq_distance` with ``M M^T`` replaced by its
    mean ``p h_t I``, leading order in ``gamma`` (re-derived here; the projection term is
    exact, since the row space of ``M`` is uniformly distributed).
    """
    spec = setting.spec
    if setting.gamma >= 1:
        raise ValueError(f"m * n_v must be < p for the overparameterised formula, got "
                         f"m * n_v = {setting.m * setting.n_v}, p = {spec.p}")
    h_t = h_factor(alpha_t, setting.n_t, spec.p)
    trained = spec.nu**2 + spec.sigma**2 * (1 + alpha_t**2 * spec.p / setting.n_t) / h_t
    gap = spec.p * (setting.init - spec.w0) ** 2
    return (1 - setting.gamma) * gap + setting.gamma * trained


def large_p_test_loss(alpha_t: float, alpha_r: float, setting: MamlLinearSetting) -> float:
    """Bernacchia's (2021) overparameterised closed form of the average test loss:
    :func:`expected_test_loss` at :func:`large_p_sq_distance`."""
    return float(expected_test_loss(large_p_sq_distance(alpha_t, setting), alpha_r, setting))


def large_p_optimal_alpha_train(setting: MamlLinearSetting) -> float:
    """The ``alpha_t`` minimising :func:`large_p_test_loss` (for ``sigma > 0``): the negative
    root of ``(p / n_t) a^2 + (1 + 1 / n_t) a - 1 = 0``, whatever ``alpha_r``, ``m``, ``nu``."""
    a, b = setting.spec.p / setting.n_t, 1 + 1 / setting.n_t
    return -(b + math.sqrt(b * b + 4 * a)) / (2 * a)


def optimal_alpha_test(sq_distance: float, setting: MamlLinearSetting) -> float:
    """The ``alpha_r`` minimising :func:`expected_test_loss`: ``q / (sigma^2 p / n_r +
    q (n_r + p + 1) / n_r)`` with ``q = nu^2 + ||omega - w0||^2``, positive whenever ``q > 0``."""
    spec, n_r = setting.spec, setting.n_r
    q = spec.nu**2 + sq_distance
    return q / (spec.sigma**2 * spec.p / n_r + q * (n_r + spec.p + 1) / n_r)
