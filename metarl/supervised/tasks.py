"""Few-shot regression task samplers: sinusoids and mixed linear regression.

Every sampler draws from a ``torch.Generator`` passed in (never a global RNG), so the seed
of that generator fixes the task sequence and a checkpoint of its state resumes it.

* Sinusoid (Finn et al., 2017, "Model-Agnostic Meta-Learning", sec. 5.1): amplitude
  ``A ~ U[0.1, 5]``, phase ``b ~ U[0, pi]``, inputs ``x ~ U[-5, 5]``, ``y = A sin(x - b)``.
* Mixed linear regression (Bernacchia, 2021, "Meta-learning with negative learning rates",
  ICLR): ``x ~ N(0, I_p)``, task weights ``w ~ N(w0, (nu^2 / p) I_p)``,
  ``y = w . x + eps`` with ``eps ~ N(0, sigma^2)``; meta-training sees a finite pool of
  ``m`` tasks, each with a fixed training set of ``n_t`` and validation set of ``n_v``
  points, while evaluation draws fresh tasks.

Task data is a dict ``{"x": (T, n, d), "y": (T, n, 1)}`` with a leading task dimension,
the layout :func:`metarl.core.meta_loss` batches over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

Batch = dict[str, torch.Tensor]

AMPLITUDE_RANGE = (0.1, 5.0)
PHASE_RANGE = (0.0, math.pi)
INPUT_RANGE = (-5.0, 5.0)


def _uniform(shape: tuple[int, ...], low: float, high: float,
             generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def sample_sinusoid_params(n_tasks: int,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitudes ``U[0.1, 5]`` and phases ``U[0, pi]`` of ``n_tasks`` sinusoids, each ``(T,)``."""
    amplitude = _uniform((n_tasks,), *AMPLITUDE_RANGE, generator)
    phase = _uniform((n_tasks,), *PHASE_RANGE, generator)
    return amplitude, phase


def sinusoid_points(amplitude: torch.Tensor, phase: torch.Tensor, n_points: int,
                    generator: torch.Generator) -> Batch:
    """``n_points`` inputs ``x ~ U[-5, 5]`` per task and targets ``A sin(x - b)``.

    Args:
        amplitude: ``(T,)`` amplitudes.
        phase: ``(T,)`` phases.
        n_points: Points per task.
        generator: Source of randomness.

    Returns:
        ``{"x": (T, n_points, 1), "y": (T, n_points, 1)}``.
    """
    x = _uniform((amplitude.shape[0], n_points, 1), *INPUT_RANGE, generator)
    y = amplitude[:, None, None] * torch.sin(x - phase[:, None, None])
    return {"x": x, "y": y}


def sample_sinusoid(n_tasks: int, shots: int, query: int,
                    generator: torch.Generator) -> tuple[Batch, Batch]:
    """A meta-batch of fresh sinusoid tasks (Finn et al., 2017): support and query sets."""
    _check_positive(n_tasks=n_tasks, shots=shots, query=query)
    amplitude, phase = sample_sinusoid_params(n_tasks, generator)
    return (sinusoid_points(amplitude, phase, shots, generator),
            sinusoid_points(amplitude, phase, query, generator))


@dataclass(frozen=True)
class LinearTaskSpec:
    """Mixed linear regression distribution of Bernacchia (2021).

    Args:
        p: Input dimension.
        nu: Task spread: ``w ~ N(w0, (nu^2 / p) I_p)``, so ``E||w - w0||^2 = nu^2``.
        sigma: Label-noise standard deviation.
        w0: Every component of the mean task weight vector (``w0 * 1_p``).
    """

    p: int
    nu: float
    sigma: float
    w0: float

    def __post_init__(self) -> None:
        if self.p < 1:
            raise ValueError(f"p must be an int >= 1, got {self.p}")
        for name in ("nu", "sigma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not math.isfinite(self.w0):
            raise ValueError(f"w0 must be finite, got {self.w0}")


def sample_linear_weights(n_tasks: int, spec: LinearTaskSpec,
                          generator: torch.Generator) -> torch.Tensor:
    """Task weights ``w ~ N(w0 1_p, (nu^2 / p) I_p)``, shape ``(T, p)``."""
    _check_positive(n_tasks=n_tasks)
    noise = torch.randn((n_tasks, spec.p), generator=generator)
    return spec.w0 + spec.nu / math.sqrt(spec.p) * noise


def linear_points(weights: torch.Tensor, n_points: int, sigma: float,
                  generator: torch.Generator) -> Batch:
    """``x ~ N(0, I_p)`` and ``y = w . x + N(0, sigma^2)`` for each task's ``w``.

    Returns:
        ``{"x": (T, n_points, p), "y": (T, n_points, 1)}``.
    """
    n_tasks, p = weights.shape
    x = torch.randn((n_tasks, n_points, p), generator=generator)
    noise = torch.randn((n_tasks, n_points, 1), generator=generator)
    y = torch.einsum("tnp,tp->tn", x, weights)[..., None] + sigma * noise
    return {"x": x, "y": y}


def sample_linear(n_tasks: int, spec: LinearTaskSpec, n_t: int, n_v: int,
                  generator: torch.Generator) -> tuple[Batch, Batch]:
    """Fresh linear tasks with ``n_t`` training (support) and ``n_v`` validation points."""
    _check_positive(n_t=n_t, n_v=n_v)
    weights = sample_linear_weights(n_tasks, spec, generator)
    return (linear_points(weights, n_t, spec.sigma, generator),
            linear_points(weights, n_v, spec.sigma, generator))


class LinearTaskPool:
    """The finite pool of ``m`` training tasks of Bernacchia (2021), data fixed per task.

    The pool is drawn once from ``pool_generator``; :meth:`sample` then draws a meta-batch
    of task indices (without replacement when ``m >= n_tasks``) from the generator passed
    in, so only that generator's state has to be checkpointed.

    Args:
        spec: The task distribution.
        m: Number of training tasks.
        n_t: Training (support) points per task.
        n_v: Validation (query) points per task.
        pool_generator: Generator the pool is drawn from.
    """

    def __init__(self, spec: LinearTaskSpec, m: int, n_t: int, n_v: int,
                 pool_generator: torch.Generator) -> None:
        _check_positive(m=m)
        self.m = m
        self.weights = sample_linear_weights(m, spec, pool_generator)
        self.support, self.query = (linear_points(self.weights, n, spec.sigma, pool_generator)
                                    for n in (n_t, n_v))

    def sample(self, n_tasks: int, generator: torch.Generator) -> tuple[Batch, Batch]:
        """A meta-batch of ``n_tasks`` pool tasks: their fixed support and query sets."""
        _check_positive(n_tasks=n_tasks)
        if n_tasks <= self.m:
            index = torch.randperm(self.m, generator=generator)[:n_tasks]
        else:
            index = torch.randint(self.m, (n_tasks,), generator=generator)
        return ({k: v[index] for k, v in self.support.items()},
                {k: v[index] for k, v in self.query.items()})


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value}")
