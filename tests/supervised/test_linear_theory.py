"""MAML on mixed linear regression (Bernacchia, 2021): closed forms vs the core and sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from metarl.core import SecondOrder, adapt, meta_loss
from metarl.supervised.linear_theory import (
    MamlLinearSetting,
    adapt_linear,
    adapted_affine,
    expected_sq_distance,
    expected_test_loss,
    fit_maml,
    half_mse_loss_fn,
    large_p_optimal_alpha_train,
    large_p_sq_distance,
    large_p_test_loss,
    maml_least_squares,
    monte_carlo_runs,
    optimal_alpha_test,
    point_loss,
)
from metarl.supervised.models import linear_model, mse_loss_fn
from metarl.supervised.tasks import (
    Batch,
    LinearTaskSpec,
    linear_points,
    sample_linear,
    sample_linear_weights,
)

PAPER = MamlLinearSetting(LinearTaskSpec(p=60, nu=0.5, sigma=1.0, w0=0.0), m=3, n_t=30, n_v=2,
                          n_r=20)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def training_tasks(setting: MamlLinearSetting, seed: int) -> tuple[Batch, Batch]:
    """One run's ``m`` training tasks in float64, ``(m, n, p)`` and ``(m, n, 1)``."""
    support, query = sample_linear(setting.m, setting.spec, setting.n_t, setting.n_v, gen(seed))
    return ({k: v.double() for k, v in support.items()},
            {k: v.double() for k, v in query.items()})


def within(sample: torch.Tensor, expected: float | torch.Tensor, sigmas: float = 4.0) -> bool:
    """``expected`` lies within ``sigmas`` standard errors of the sample mean."""
    error = sigmas * sample.std().item() / math.sqrt(sample.numel())
    return abs(sample.mean().item() - float(expected)) < error


@pytest.mark.parametrize("alpha", [-1.5, 0.3])
def test_inner_step_is_the_affine_map_of_core_adapt(alpha: float) -> None:
    model = linear_model(7)
    data = {k: v[0].double() for k, v in
            linear_points(torch.randn(1, 7, generator=gen(1)), 11, 0.5, gen(2)).items()}
    w = torch.randn(7, generator=gen(3), dtype=torch.float64)
    params = {"weight": w[None].clone()}
    paper = adapt(params, half_mse_loss_fn(model), data, steps=1, rule=alpha, keys=("weight",),
                  first_order=False)
    a, c = adapted_affine(data["x"], data["y"], alpha)
    assert isinstance(paper, dict)
    torch.testing.assert_close(paper["weight"][0], a @ w + c, rtol=0, atol=1e-12)
    torch.testing.assert_close(adapt_linear(w, data["x"], data["y"], alpha), a @ w + c,
                               rtol=0, atol=1e-12)
    # The suite's loss is the plain MSE, twice the paper's: its lr alpha / 2 is the paper's alpha.
    suite = adapt(params, mse_loss_fn(model), data, steps=1, rule=alpha / 2, keys=("weight",),
                  first_order=False)
    assert isinstance(suite, dict)
    torch.testing.assert_close(suite["weight"], paper["weight"], rtol=0, atol=1e-12)


def core_meta_loss(w: torch.Tensor, support: Batch, query: Batch, alpha: float) -> torch.Tensor:
    """The suite's MAML objective (one inner step, second order) in the paper's loss."""
    model = linear_model(w.shape[-1])
    loss, _ = meta_loss({"weight": w[None]}, half_mse_loss_fn(model), support, query, steps=1,
                        rule=alpha, keys=("weight",), estimator=SecondOrder())
    return loss


def gradient_descent(support: Batch, query: Batch, alpha: float, init: float,
                     step: float) -> torch.Tensor:
    """Full-batch gradient descent on :func:`core_meta_loss` until the gradient vanishes."""
    w = torch.full((support["x"].shape[-1],), init, dtype=torch.float64, requires_grad=True)
    for _ in range(50_000):
        (grad,) = torch.autograd.grad(core_meta_loss(w, support, query, alpha), w)
        if grad.norm() < 1e-13:
            break
        with torch.no_grad():
            w -= step * grad
    return w.detach()


@pytest.mark.parametrize("alpha,init,p", [(-1.0, 0.0, 60), (0.2, 0.0, 60), (0.5, 0.3, 60),
                                          (-0.5, 0.2, 4)])
def test_closed_form_is_where_gradient_descent_converges(alpha: float, init: float,
                                                          p: int) -> None:
    setting = MamlLinearSetting(LinearTaskSpec(p=p, nu=0.5, sigma=1.0, w0=0.0), m=3, n_t=30,
                                n_v=2, n_r=20, init=init)
    support, query = training_tasks(setting, seed=p)
    design, target = maml_least_squares(support, query, alpha)
    probe = torch.randn(p, generator=gen(5), dtype=torch.float64)
    least_squares = ((design @ probe - target) ** 2).sum() / (2 * setting.m * setting.n_v)
    torch.testing.assert_close(core_meta_loss(probe, support, query, alpha), least_squares,
                               rtol=1e-12, atol=0)
    curvature = torch.linalg.matrix_norm(design, ord=2) ** 2 / (setting.m * setting.n_v)
    descended = gradient_descent(support, query, alpha, init, step=1.0 / curvature.item())
    fit = fit_maml(support, query, alpha, init)
    torch.testing.assert_close(descended, fit.weights, rtol=0, atol=1e-6)
    if setting.gamma < 1:  # overparameterised: the meta-training loss is driven to 0
        torch.testing.assert_close(design @ fit.weights, target, rtol=0, atol=1e-9)


def test_point_loss_is_the_expectation_over_a_fresh_point() -> None:
    task, adapted = (torch.randn(1, 8, generator=gen(s)) for s in (6, 7))
    points = linear_points(task, 200_000, 0.7, gen(8))
    sampled = 0.5 * (points["y"][0, :, 0] - points["x"][0] @ adapted[0]) ** 2
    assert within(sampled.double(), point_loss(adapted[0], task[0], 0.7).item())


@pytest.mark.parametrize("alpha_r", [-0.4, 0.2, 1.0])
def test_expected_test_loss_matches_sampled_test_tasks(alpha_r: float) -> None:
    setting = MamlLinearSetting(LinearTaskSpec(p=12, nu=0.8, sigma=0.6, w0=0.3), m=3, n_t=5,
                                n_v=2, n_r=6)
    trained = torch.randn(12, generator=gen(9))
    tasks = sample_linear_weights(200_000, setting.spec, gen(10))
    adaptation = linear_points(tasks, setting.n_r, setting.spec.sigma, gen(11))
    adapted = adapt_linear(trained, adaptation["x"], adaptation["y"], alpha_r)
    sampled = point_loss(adapted, tasks, setting.spec.sigma).double()
    sq_distance = ((trained - setting.spec.w0) ** 2).sum().item()
    assert within(sampled, expected_test_loss(sq_distance, alpha_r, setting))


@pytest.mark.parametrize("p,init", [(60, 0.0), (60, 0.25), (4, 0.25)])
def test_expected_sq_distance_matches_sampled_labels(p: int, init: float) -> None:
    """Inputs fixed, task weights and label noise resampled (over- and underparameterised)."""
    setting = MamlLinearSetting(LinearTaskSpec(p=p, nu=0.5, sigma=1.0, w0=0.1), m=3, n_t=30,
                                n_v=2, n_r=20, init=init)
    support, query = training_tasks(setting, seed=12)
    labels = 20_000
    weights = sample_linear_weights(labels * setting.m, setting.spec, gen(13)).double()
    weights = weights.unflatten(0, (labels, setting.m))
    g = gen(14)

    def relabel(batch: Batch) -> Batch:
        noise = torch.randn(labels, *batch["y"].shape, generator=g, dtype=torch.float64)
        y = batch["x"] @ weights[..., None] + setting.spec.sigma * noise
        return {"x": batch["x"].expand(labels, *batch["x"].shape), "y": y}

    alpha = -0.7
    fit = fit_maml(relabel(support), relabel(query), alpha, init)
    sampled = ((fit.weights - setting.spec.w0) ** 2).sum(-1)
    exact = expected_sq_distance(fit, support, query, alpha, setting)
    assert torch.allclose(exact, exact[0])  # it depends on the inputs only
    assert within(sampled, exact[0])


@pytest.mark.parametrize("alpha_t,alpha_r", [(-1.0, 0.2), (0.2, 1.0)])
def test_monte_carlo_sampled_loss_agrees_with_its_expectation(alpha_t: float,
                                                              alpha_r: float) -> None:
    sampled, exact = monte_carlo_runs(PAPER, alpha_t, alpha_r, runs=4_000, test_tasks=5,
                                      generator=gen(15))
    assert sampled.shape == exact.shape == (4_000,)
    assert within(sampled - exact, 0.0)  # paired: the same runs' training inputs
    assert exact.std() < sampled.std()


def test_large_p_formula_is_exact_for_one_noiseless_task() -> None:
    """One task, sigma = 0: ``E ||omega - w0||^2 = (1 - gamma) ||omega0 - w0||^2 + gamma nu^2``."""
    setting = MamlLinearSetting(LinearTaskSpec(p=30, nu=0.5, sigma=0.0, w0=0.1), m=1, n_t=10,
                                n_v=3, n_r=20, init=0.4)
    sampled, _ = monte_carlo_runs(setting, 0.2, 0.3, runs=20_000, test_tasks=1, generator=gen(16))
    support, query = sample_linear(20_000, setting.spec, 10, 3, gen(17))
    support, query = ({k: v.double()[:, None] for k, v in b.items()} for b in (support, query))
    exact = expected_sq_distance(fit_maml(support, query, 0.2, 0.4), support, query, 0.2, setting)
    assert within(exact, large_p_sq_distance(0.2, setting))
    assert within(sampled, large_p_test_loss(0.2, 0.3, setting))


def test_large_p_formula_approaches_the_exact_loss_as_gamma_shrinks() -> None:
    """0.5-1.5% low at the paper's setting (m n_v / p = 0.1), under 0.05% at m n_v / p = 1/80."""
    for setting, tolerance in ((PAPER, 0.02), (MamlLinearSetting(
            LinearTaskSpec(p=160, nu=0.5, sigma=1.0, w0=0.0), m=1, n_t=80, n_v=2, n_r=20),
            0.002)):
        for alpha_t in (-1.0, 0.5):
            _, exact = monte_carlo_runs(setting, alpha_t, 0.2, runs=4_000, test_tasks=1,
                                        generator=gen(18))
            theory = large_p_test_loss(alpha_t, 0.2, setting)
            assert 0 < exact.mean().item() - theory < tolerance * theory


def test_optima_of_the_closed_forms() -> None:
    grid = np.linspace(-3, 1, 40_001)
    losses = [large_p_test_loss(a, 0.2, PAPER) for a in grid]
    best = large_p_optimal_alpha_train(PAPER)
    assert best < 0 and abs(grid[int(np.argmin(losses))] - best) < 1e-3
    sq_distance = large_p_sq_distance(0.2, PAPER)
    test_losses = [expected_test_loss(sq_distance, a, PAPER) for a in grid]
    assert abs(grid[int(np.argmin(test_losses))] - optimal_alpha_test(sq_distance, PAPER)) < 1e-3
    assert optimal_alpha_test(sq_distance, PAPER) > 0


@pytest.mark.parametrize("field", ["m", "n_t", "n_v", "n_r"])
def test_setting_rejects_non_positive_sizes(field: str) -> None:
    sizes = {"m": 3, "n_t": 30, "n_v": 2, "n_r": 20, field: 0}
    with pytest.raises(ValueError, match=f"{field} must be an int >= 1"):
        MamlLinearSetting(PAPER.spec, **sizes)


def test_large_p_formula_rejects_the_underparameterised_case() -> None:
    setting = MamlLinearSetting(LinearTaskSpec(p=4, nu=0.5, sigma=1.0, w0=0.0), m=3, n_t=30,
                                n_v=2, n_r=20)
    with pytest.raises(ValueError, match="m \\* n_v must be < p"):
        large_p_test_loss(0.2, 0.2, setting)
