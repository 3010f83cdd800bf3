"""Linear feature baseline: features, per-task least squares vs NumPy, regularisation."""

from __future__ import annotations

import numpy as np
import torch

from metarl.rl.baseline import LinearFeatureBaseline, solve_regularized


def test_features_layout() -> None:
    obs = torch.tensor([[[[1.0, -20.0], [2.0, 3.0]]]], dtype=torch.float64)
    f = LinearFeatureBaseline.features(obs)
    expected = torch.tensor([[[[1.0, -10.0, 1.0, 100.0, 0.0, 0.0, 0.0, 1.0],
                               [2.0, 3.0, 4.0, 9.0, 0.01, 1e-4, 1e-6, 1.0]]]], dtype=torch.float64)
    torch.testing.assert_close(f, expected)


def test_fit_matches_numpy_lstsq_on_valid_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(3, 4, 30, 2, generator=gen, dtype=torch.float64)
    returns = torch.randn(3, 4, 30, generator=gen, dtype=torch.float64)
    masks = torch.ones(3, 4, 30, dtype=torch.float64)
    masks[1, 2, 17:] = 0.0
    masks[2, :, 25:] = 0.0
    base = LinearFeatureBaseline(reg_coeff=0.0)
    fit = base.fit(obs, returns, masks)
    values = base.predict(fit.weights, obs)
    for t in range(3):
        valid = masks[t].flatten().bool().numpy()
        f = base.features(obs[t]).reshape(-1, 8).numpy()[valid]
        g = returns[t].flatten().numpy()[valid]
        w, *_ = np.linalg.lstsq(f, g, rcond=None)
        np.testing.assert_allclose(fit.weights[t].numpy(), w, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(values[t].flatten().numpy()[valid], f @ w, atol=1e-10)
        r2 = 1 - ((f @ w - g) ** 2).sum() / ((g - g.mean()) ** 2).sum()
        np.testing.assert_allclose(float(fit.fit_error[t]), 1 - r2, rtol=1e-8)
    assert torch.all(fit.reg == 0.0)


def test_solve_escalates_regularisation_until_cholesky_succeeds() -> None:
    a = torch.stack([torch.diag(torch.tensor([1.0, -0.5])), torch.eye(2)]).double()
    b = torch.tensor([[2.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    w, reg = solve_regularized(a, b, reg_coeff=0.1, max_tries=5, reg_factor=10.0)
    # Task 0: diag(1.1, -0.4) fails, diag(2, 0.5) at c = 1 works; task 1 keeps c = 0.1.
    torch.testing.assert_close(reg, torch.tensor([1.0, 0.1], dtype=torch.float64))
    torch.testing.assert_close(w[0], torch.tensor([1.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(w[1], torch.tensor([1 / 1.1, 1 / 1.1], dtype=torch.float64))


def test_solve_falls_back_to_lstsq_after_max_tries() -> None:
    a = torch.diag(torch.tensor([1.0, -100.0])).double()[None]
    b = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    w, reg = solve_regularized(a, b, reg_coeff=1.0, max_tries=2, reg_factor=10.0)
    assert float(reg[0]) == 10.0
    torch.testing.assert_close(w[0], torch.tensor([1 / 11, -1 / 90], dtype=torch.float64))


def test_degenerate_task_is_regularised_and_finite() -> None:
    # Constant zero observations: the obs and obs^2 columns vanish and F^T F is singular.
    obs = torch.zeros(2, 3, 10, 2, dtype=torch.float64)
    obs[1] = torch.randn(3, 10, 2, dtype=torch.float64)
    returns = torch.randn(2, 3, 10, dtype=torch.float64)
    masks = torch.ones(2, 3, 10, dtype=torch.float64)
    fit = LinearFeatureBaseline(reg_coeff=0.0).fit(obs, returns, masks)
    assert float(fit.reg[0]) > 0.0 and float(fit.reg[1]) == 0.0
    assert torch.isfinite(fit.weights).all()
    assert float(fit.fit_error[0]) < 1.0  # the time features still explain part of it
