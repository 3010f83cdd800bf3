"""First-order MAML and Reptile stall at a biased point; finite differences do not.

Chayti & Jaggi (arXiv 2409.03682) claim that first-order MAML and Reptile have an
irreducible bias, while their finite-difference estimator of the meta-gradient converges to
a stationary point of the MAML objective. This study checks it on a synthetic problem where
the true meta-gradient is computable: ``m`` tasks in ``d`` dimensions with non-quadratic
losses

    L_i(theta) = 1/2 (theta - c_i)^T A_i (theta - c_i) + b * sum_j log cosh(theta_j - c_ij),

``A_i`` random positive definite with eigenvalues in [lam_min, lam_max] (tasks differ in
curvature, so the second-order term of the meta-gradient matters), ``K`` inner SGD steps of
rate ``alpha``, and the MAML objective ``F(theta) = mean_i L_i(phi_i^K(theta))``. Every
method runs full-batch gradient descent on its own meta-gradient estimate from the same
start with the same outer lr; the plot shows the true meta-gradient norm ``|grad F|`` (exact
second order, float64) at each method's iterate. A delta sweep shows how far the
finite-difference runs stop from stationarity (their bias) as delta shrinks.

    python scripts/first_order_study.py --json docs/first_order_study.json \
        --plot docs/first_order_study.png
    python scripts/first_order_study.py --quick --json /tmp/q.json    # under a minute
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from metarl.core import (
    Estimator,
    FiniteDifference,
    FirstOrder,
    Params,
    SecondOrder,
    adapt,
    meta_loss,
)

Data = dict[str, torch.Tensor]
METHODS = ("maml", "fomaml", "reptile", "fdmaml", "fdmaml-sym")


def make_tasks(m: int, d: int, lam_min: float, lam_max: float, seed: int) -> Data:
    """Centres ``c`` [m, d], curvatures ``A`` [m, d, d] (random rotations, log-uniform
    eigenvalues in [lam_min, lam_max])."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, d, d, generator=gen, dtype=torch.float64))
    log_lam = torch.empty(m, d, dtype=torch.float64).uniform_(math.log(lam_min),
                                                              math.log(lam_max), generator=gen)
    a = q @ torch.diag_embed(log_lam.exp()) @ q.transpose(1, 2)
    c = torch.randn(m, d, generator=gen, dtype=torch.float64)
    return {"c": c, "A": a}


def task_loss(b: float) -> Callable[[Params, Data], torch.Tensor]:
    """``L_i`` of one task (``data`` holds its ``c`` and ``A``)."""

    def loss(params: Params, data: Data) -> torch.Tensor:
        r = params["theta"] - data["c"]
        return 0.5 * r @ data["A"] @ r + b * torch.log(torch.cosh(r)).sum()

    return loss


class Problem:
    """The synthetic meta-learning problem and its exact MAML meta-gradient."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.tasks = make_tasks(args.tasks, args.dim, args.lam_min, args.lam_max, args.seed)
        self.loss = task_loss(args.nonquadratic)
        self.alpha, self.steps = args.alpha, args.inner_steps

    def objective(self, theta: torch.Tensor, estimator: Estimator) -> torch.Tensor:
        params = {"theta": theta}
        loss, _ = meta_loss(params, self.loss, self.tasks, self.tasks, steps=self.steps,
                            rule=self.alpha, keys=("theta",), estimator=estimator)
        return loss

    def gradient(self, theta: torch.Tensor, estimator: Estimator) -> torch.Tensor:
        theta = theta.detach().requires_grad_(True)
        return torch.autograd.grad(self.objective(theta, estimator), theta)[0]

    def reptile(self, theta: torch.Tensor) -> torch.Tensor:
        """Reptile's direction ``mean_i (theta - phi_i^K) / (alpha K)`` (Nichol et al., 2018),
        scaled to be a gradient estimate (first-order MAML's for K = 1)."""
        def adapted(c: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            out = adapt({"theta": theta}, self.loss, {"c": c, "A": a}, steps=self.steps,
                        rule=self.alpha, keys=("theta",), first_order=True)
            return out["theta"]

        phi = torch.vmap(adapted)(self.tasks["c"], self.tasks["A"])
        return (theta - phi).mean(dim=0) / (self.alpha * self.steps)


def estimate(problem: Problem, method: str, theta: torch.Tensor, delta: float) -> torch.Tensor:
    """One method's meta-gradient estimate at ``theta``."""
    if method == "reptile":
        return problem.reptile(theta)
    estimator: Estimator = {"maml": SecondOrder(), "fomaml": FirstOrder(),
                            "fdmaml": FiniteDifference(delta, "forward"),
                            "fdmaml-sym": FiniteDifference(delta, "symmetric")}[method]
    return problem.gradient(theta, estimator)


def run(problem: Problem, method: str, iterations: int, lr: float, delta: float,
        record_every: int) -> dict[str, Any]:
    """Gradient descent on ``method``'s estimate; the true |grad F| every ``record_every``."""
    theta = torch.zeros(problem.tasks["c"].shape[1], dtype=torch.float64)
    its, norms = [], []
    for t in range(iterations + 1):
        if t % record_every == 0 or t == iterations:
            its.append(t)
            norms.append(float(problem.gradient(theta, SecondOrder()).norm()))
        if t < iterations:
            theta = theta - lr * estimate(problem, method, theta, delta)
    loss = float(problem.objective(theta.detach(), SecondOrder()))
    return {"iterations": its, "grad_norm": norms, "final_grad_norm": norms[-1],
            "final_meta_loss": loss, "theta": theta.tolist()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=20)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--lam-min", type=float, default=0.1)
    p.add_argument("--lam-max", type=float, default=4.0)
    p.add_argument("--nonquadratic", type=float, default=1.0, help="b, the log-cosh weight")
    p.add_argument("--alpha", type=float, default=0.2, help="inner lr")
    p.add_argument("--inner-steps", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.2, help="outer lr (gradient descent)")
    p.add_argument("--iterations", type=int, default=600)
    p.add_argument("--delta", type=float, default=1e-2, help="finite-difference step")
    p.add_argument("--sweep", type=float, nargs="*", default=[1e-1, 3e-2, 1e-2, 3e-3, 1e-3],
                   help="deltas of the bias sweep (empty: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="fewer iterations, a shorter sweep")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.iterations, args.sweep = min(args.iterations, 150), [1e-1, 1e-2]
    _validate(args)
    return args


def _validate(args: argparse.Namespace) -> None:
    for name in ("tasks", "dim", "inner_steps", "iterations"):
        if getattr(args, name) < 1:
            raise ValueError(f"{name} must be an int >= 1, got {getattr(args, name)}")
    for name in ("lam_min", "lam_max", "alpha", "lr", "delta"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")
    if args.lam_min > args.lam_max:
        raise ValueError(f"lam_min must be <= lam_max, got {args.lam_min} > {args.lam_max}")
    if any(not (math.isfinite(d) and d > 0) for d in args.sweep):
        raise ValueError(f"sweep deltas must be finite numbers > 0, got {args.sweep}")
    if not (math.isfinite(args.nonquadratic) and args.nonquadratic >= 0):
        raise ValueError(f"nonquadratic must be a finite number >= 0, got {args.nonquadratic}")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, r in result["methods"].items():
        ax.semilogy(r["iterations"], r["grad_norm"], label=name)
    ax.set(xlabel="outer iteration", ylabel="true meta-gradient norm |grad F|",
           title=f"{result['params']['inner_steps']}-step MAML objective, "
                 f"delta = {result['params']['delta']:g}")
    ax.legend()
    for scheme, rows in result["sweep"].items():
        if rows:
            bx.loglog([r["delta"] for r in rows], [r["final_grad_norm"] for r in rows], "o-",
                      label=scheme)
    for name in ("fomaml", "reptile"):
        level = result["methods"][name]["final_grad_norm"]
        bx.axhline(level, ls="--", color="grey")
        bx.text(min(result["params"]["sweep"] or [result["params"]["delta"]]), level,
                f" {name}", va="bottom")
    bx.set(xlabel="delta", ylabel=f"|grad F| after {result['params']['iterations']} its",
           title="finite-difference bias vs delta")
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    problem = Problem(args)
    start = time.perf_counter()
    record = max(1, args.iterations // 100)
    methods = {m: run(problem, m, args.iterations, args.lr, args.delta, record)
               for m in METHODS}
    sweep: dict[str, list[dict[str, float]]] = {"fdmaml": [], "fdmaml-sym": []}
    for scheme in sweep:
        for d in args.sweep:
            r = run(problem, scheme, args.iterations, args.lr, d, args.iterations)
            sweep[scheme].append({"delta": d, "final_grad_norm": r["final_grad_norm"]})
    result = {"params": {k: v for k, v in vars(args).items() if k not in ("json", "plot")},
              "methods": methods, "sweep": sweep,
              "seconds": time.perf_counter() - start,
              "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread"}
    for name, r in methods.items():
        print(f"{name:>11}: |grad F| {r['grad_norm'][0]:.3g} -> {r['final_grad_norm']:.3g}, "
              f"F = {r['final_meta_loss']:.6f}")
    for scheme, rows in sweep.items():
        print(f"{scheme:>11} sweep: " + ", ".join(f"delta {r['delta']:g}: "
                                                   f"{r['final_grad_norm']:.2g}" for r in rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.plot is not None:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
