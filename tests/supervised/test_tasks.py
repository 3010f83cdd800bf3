"""Task samplers: ranges, exact targets, moments, determinism, the finite linear pool."""

from __future__ import annotations

import math

import pytest
import torch

from metarl.supervised.tasks import (
    LinearTaskPool,
    LinearTaskSpec,
    linear_points,
    sample_linear,
    sample_linear_weights,
    sample_sinusoid,
    sample_sinusoid_params,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_sinusoid_ranges_shapes_and_targets() -> None:
    amplitude, phase = sample_sinusoid_params(20_000, gen())
    assert 0.1 <= amplitude.min() and amplitude.max() <= 5.0
    assert 0.0 <= phase.min() and phase.max() <= math.pi
    # U[a, b] moments: mean (a + b) / 2, variance (b - a)^2 / 12 (4-sigma tolerances).
    assert abs(amplitude.mean().item() - 2.55) < 4 * 4.9 / math.sqrt(12 * 20_000)
    assert abs(amplitude.var().item() - 4.9**2 / 12) < 0.05
    assert abs(phase.mean().item() - math.pi / 2) < 4 * math.pi / math.sqrt(12 * 20_000)
    support, query = sample_sinusoid(7, 5, 9, gen(1))
    assert support["x"].shape == (7, 5, 1) and query["y"].shape == (7, 9, 1)
    assert support["x"].min() >= -5.0 and support["x"].max() <= 5.0


def test_sinusoid_targets_are_a_sin_x_minus_b() -> None:
    g1, g2 = gen(3), gen(3)
    support, query = sample_sinusoid(4, 6, 6, g1)
    amplitude, phase = sample_sinusoid_params(4, g2)
    for batch in (support, query):
        expected = amplitude[:, None, None] * torch.sin(batch["x"] - phase[:, None, None])
        torch.testing.assert_close(batch["y"], expected, rtol=0, atol=0)
    # Support and query of a task share the same sinusoid: |y| <= A on both.
    assert bool((query["y"].abs() <= amplitude[:, None, None] + 1e-6).all())


def test_same_seed_same_tasks_different_seed_different() -> None:
    a = sample_sinusoid(5, 10, 10, gen(7))
    b = sample_sinusoid(5, 10, 10, gen(7))
    c = sample_sinusoid(5, 10, 10, gen(8))
    assert torch.equal(a[0]["x"], b[0]["x"]) and torch.equal(a[1]["y"], b[1]["y"])
    assert not torch.equal(a[0]["x"], c[0]["x"])


@pytest.mark.parametrize("p,nu,w0", [(1, 1.0, 0.0), (10, 0.5, 1.5), (50, 2.0, -1.0)])
def test_linear_weight_moments(p: int, nu: float, w0: float) -> None:
    spec = LinearTaskSpec(p=p, nu=nu, sigma=0.1, w0=w0)
    n = 20_000
    w = sample_linear_weights(n, spec, gen(p))
    sq = ((w - w0) ** 2).sum(dim=1)
    # E||w - w0||^2 = nu^2; ||w - w0||^2 = (nu^2 / p) chi2_p has variance 2 nu^4 / p.
    assert abs(sq.mean().item() - nu**2) < 4 * nu**2 * math.sqrt(2 / p / n)
    assert abs(w.mean().item() - w0) < 4 * nu / math.sqrt(p * n)


def test_linear_labels_are_w_dot_x_plus_sigma_noise() -> None:
    spec = LinearTaskSpec(p=5, nu=1.0, sigma=0.3, w0=0.2)
    w = sample_linear_weights(3, spec, gen())
    data = linear_points(w, 20_000, spec.sigma, gen(1))
    residual = data["y"][..., 0] - torch.einsum("tnp,tp->tn", data["x"], w)
    assert abs(residual.std().item() - 0.3) < 0.01
    assert abs(data["x"].var().item() - 1.0) < 0.02
    noiseless = linear_points(w, 8, 0.0, gen(2))
    torch.testing.assert_close(noiseless["y"][..., 0],
                               torch.einsum("tnp,tp->tn", noiseless["x"], w))
    support, query = sample_linear(6, spec, 4, 9, gen(4))
    assert support["x"].shape == (6, 4, 5) and query["y"].shape == (6, 9, 1)


def test_linear_pool_is_finite_and_fixed() -> None:
    spec = LinearTaskSpec(p=3, nu=1.0, sigma=0.1, w0=0.0)
    pool = LinearTaskPool(spec, m=8, n_t=4, n_v=5, pool_generator=gen(0))
    again = LinearTaskPool(spec, m=8, n_t=4, n_v=5, pool_generator=gen(0))
    assert torch.equal(pool.support["x"], again.support["x"])
    support, query = pool.sample(5, gen(1))
    # Every sampled task is one of the pool's 8, with its fixed data, drawn without repeats.
    matches = [int((pool.support["x"] == s).flatten(1).all(1).nonzero()) for s in support["x"]]
    assert len(set(matches)) == 5
    for i, j in enumerate(matches):
        assert torch.equal(query["y"][i], pool.query["y"][j])
    big, _ = pool.sample(20, gen(2))  # more tasks than the pool: with replacement
    assert big["x"].shape[0] == 20


@pytest.mark.parametrize("field,kwargs", [("p", {"p": 0}), ("nu", {"nu": -1.0}),
                                          ("sigma", {"sigma": float("nan")}),
                                          ("w0", {"w0": float("inf")})])
def test_linear_spec_validation(field: str, kwargs: dict[str, float]) -> None:
    base = {"p": 2, "nu": 1.0, "sigma": 0.1, "w0": 0.0}
    with pytest.raises(ValueError, match=field):
        LinearTaskSpec(**{**base, **kwargs})  # type: ignore[arg-type]


def test_sampler_rejects_nonpositive_counts() -> None:
    with pytest.raises(ValueError, match="shots"):
        sample_sinusoid(3, 0, 5, gen())
