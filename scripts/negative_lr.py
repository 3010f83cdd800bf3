"""Negative inner learning rates in MAML: a Monte-Carlo study at Bernacchia's (2021) Figure 2.

Mixed linear regression with the paper's overparameterised setting (p = 60, m = 3 training
tasks of n_t = 30 support and n_v = 2 query points, n_r = 20 adaptation points at test,
sigma = 1, nu = 0.5, w0 = 0, initialisation 0). Each run draws fresh training tasks,
meta-trains the linear model to convergence (the closed form of
:mod:`metarl.supervised.linear_theory`, tested there against gradient descent), and measures
the test loss on fresh test tasks after one step with the adaptation lr. Two sweeps: the
training lr alpha_t at alpha_r = 0.2, and the adaptation lr alpha_r at alpha_t = 0.2. Runs
are averaged until every point's 95% CI half-width is under ``--ci``.

Each point reports three figures: the Monte-Carlo test loss (sampled test tasks and
adaptation points, the exact expectation over the test point); the same runs' loss expected
over everything but the training inputs (``given_inputs``: same mean, far smaller
variance); and
the paper's large-p closed form. It prints both sweeps and where each optimum lies (the
grid argmin, the vertex of the parabola through it and its neighbours, and the grid points
whose CI overlaps the minimum's).

Usage::

    nice python scripts/negative_lr.py --json docs/negative_lr.json --plot docs/negative_lr.png
    python scripts/negative_lr.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.supervised.linear_theory import (
    MamlLinearSetting,
    large_p_optimal_alpha_train,
    large_p_sq_distance,
    large_p_test_loss,
    monte_carlo_runs,
    optimal_alpha_test,
)
from metarl.supervised.tasks import LinearTaskSpec
from metarl.utils import machine_description, mean_ci95

FULL_GRIDS = ([round(-3.0 + 0.25 * i, 4) + 0.0 for i in range(17)],  # + 0.0: no "-0"
              [round(-0.5 + 0.1 * i, 4) + 0.0 for i in range(16)])
QUICK_GRIDS = ([-3.0, -2.0, -1.0, 0.0, 1.0], [-0.5, 0.0, 0.5, 1.0])
SWEEPS = ("alpha_train", "alpha_test")


def _checked(kind: Callable[[str], Any], test: Callable[[Any], bool],
             rule: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


positive_int = _checked(int, lambda v: v >= 1, "an int >= 1")
finite = _checked(float, math.isfinite, "a finite number")
non_negative = _checked(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
positive = _checked(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--p", type=positive_int, default=60, help="input dimension")
    add("--m", type=positive_int, default=3, help="meta-training tasks per run")
    add("--n-t", type=positive_int, default=30, help="support points per training task")
    add("--n-v", type=positive_int, default=2, help="query points per training task")
    add("--n-r", type=positive_int, default=20, help="adaptation points per test task")
    add("--sigma", type=non_negative, default=1.0, help="label-noise standard deviation")
    add("--nu", type=non_negative, default=0.5, help="task spread: w ~ N(w0, nu^2/p I)")
    add("--w0", type=finite, default=0.0, help="every component of the mean task weights")
    add("--init", type=finite, default=0.0, help="every component of the initialisation")
    add("--alpha-train", type=finite, nargs="+", default=None,
        help="training lrs of the first sweep (default -3..1 by 0.25)")
    add("--alpha-test", type=finite, nargs="+", default=None,
        help="adaptation lrs of the second sweep (default -0.5..1 by 0.1)")
    add("--fixed-alpha-test", type=finite, default=0.2, help="alpha_r of the first sweep")
    add("--fixed-alpha-train", type=finite, default=0.2, help="alpha_t of the second sweep")
    add("--ci", type=positive, default=None,
        help="stop a point when its 95%% CI half-width is under this (default 0.001; quick 0.005)")
    add("--test-tasks", type=positive_int, default=10, help="test tasks per run")
    add("--batch", type=positive_int, default=1_000, help="runs drawn at a time")
    add("--max-runs", type=positive_int, default=5_000_000, help="runs per point at most")
    add("--seed", type=int, default=0)
    add("--jobs", type=positive_int, default=2, help="points measured in parallel processes")
    add("--threads", type=positive_int, default=1, help="torch threads per process")
    add("--quick", action="store_true", help="coarse grids and --ci 0.005 (under a minute)")
    add("--json", type=Path, default=None, help="write params, rows and optima here")
    add("--plot", type=Path, default=None, help="write the two-panel PNG here")
    args = parser.parse_args(argv)
    grids = QUICK_GRIDS if args.quick else FULL_GRIDS
    args.alpha_train = args.alpha_train or grids[0]
    args.alpha_test = args.alpha_test or grids[1]
    args.ci = args.ci or (0.005 if args.quick else 0.001)
    return args


def setting_of(args: argparse.Namespace) -> MamlLinearSetting:
    spec = LinearTaskSpec(p=args.p, nu=args.nu, sigma=args.sigma, w0=args.w0)
    return MamlLinearSetting(spec, m=args.m, n_t=args.n_t, n_v=args.n_v, n_r=args.n_r,
                             init=args.init)


def measure(setting: MamlLinearSetting, alpha_t: float, alpha_r: float,
            args: argparse.Namespace, seed: Sequence[int]) -> dict[str, Any]:
    """Independent runs at one point until the Monte-Carlo 95% CI is under ``args.ci``."""
    state = int(np.random.SeedSequence(seed).generate_state(1)[0])
    generator = torch.Generator().manual_seed(state)
    sampled: list[torch.Tensor] = []
    given: list[torch.Tensor] = []
    runs, mean, ci = 0, math.nan, math.inf
    while runs < args.max_runs and not ci < args.ci:
        s, e = monte_carlo_runs(setting, alpha_t, alpha_r, runs=min(args.batch,
                                                                    args.max_runs - runs),
                                test_tasks=args.test_tasks, generator=generator)
        sampled.append(s)
        given.append(e)
        runs += len(s)
        mean, ci = mean_ci95(torch.cat(sampled).numpy())
    given_mean, given_ci = mean_ci95(torch.cat(given).numpy())
    theory = large_p_test_loss(alpha_t, alpha_r, setting) if setting.gamma < 1 else None
    return {"alpha_train": alpha_t, "alpha_test": alpha_r, "test_loss": mean, "ci95": ci,
            "runs": runs, "given_inputs": given_mean,
            "given_inputs_ci95": given_ci, "large_p": theory,
            "ci_met": ci < args.ci}


def parabola_vertex(xs: np.ndarray, ys: np.ndarray) -> float | None:
    """The vertex of the parabola through three points, ``None`` unless it opens upward."""
    a, b, _ = np.polyfit(xs, ys, 2)
    return float(-b / (2 * a)) if a > 0 else None


def optimum(xs: Sequence[float], ys: Sequence[float], cis: Sequence[float]) -> dict[str, Any]:
    """Grid argmin, the parabola vertex through it and its neighbours (``None`` at an edge),
    and the range of grid points whose CI overlaps the minimum's."""
    order = np.argsort(xs)
    x, y, c = (np.asarray(v, dtype=float)[order] for v in (xs, ys, cis))
    i = int(np.argmin(y))
    vertex = parabola_vertex(x[i - 1:i + 2], y[i - 1:i + 2]) if 0 < i < len(x) - 1 else None
    tied = x[y - c <= y[i] + c[i]]
    return {"argmin": float(x[i]), "loss": float(y[i]), "parabola": vertex,
            "tied": [float(tied.min()), float(tied.max())]}


def optima(rows: list[dict[str, Any]], setting: MamlLinearSetting,
           args: argparse.Namespace) -> dict[str, Any]:
    """Where each sweep's minimum lies: Monte Carlo, expectation given inputs, large-p."""
    result: dict[str, Any] = {}
    for sweep in SWEEPS:
        part = [r for r in rows if r["sweep"] == sweep]
        xs = [r[sweep] for r in part]
        result[sweep] = {
            "monte_carlo": optimum(xs, [r["test_loss"] for r in part], [r["ci95"] for r in part]),
            "given_inputs": optimum(xs, [r["given_inputs"] for r in part],
                                    [r["given_inputs_ci95"] for r in part])}
    if setting.gamma < 1:
        for sweep, best in (("alpha_train", large_p_optimal_alpha_train(setting)),
                            ("alpha_test", optimal_alpha_test(
                                large_p_sq_distance(args.fixed_alpha_train, setting), setting))):
            part = [r for r in rows if r["sweep"] == sweep]
            grid = optimum([r[sweep] for r in part], [r["large_p"] for r in part],
                           [0.0] * len(part))
            result[sweep]["large_p"] = {**grid, "minimiser": best}
    return result


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of every point of both sweeps."""
    lines = ["| sweep | alpha_t | alpha_r | test loss (Monte Carlo) +- 95% CI | runs | "
             "expected given training inputs +- 95% CI | large-p closed form |", "|---" * 7 + "|"]
    for r in rows:
        lines.append(f"| {r['sweep']} | {r['alpha_train']:g} | {r['alpha_test']:g} | "
                     f"{r['test_loss']:.4f} +- {r['ci95']:.4f} | {r['runs']} | "
                     f"{r['given_inputs']:.5f} +- {r['given_inputs_ci95']:.5f} | "
                     f"{_fmt(r['large_p'], 5)} |")
    return "\n".join(lines)


def optima_table(found: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table of where each optimum lies."""
    lines = ["| optimum of | estimate | grid argmin | parabola vertex | grid points tied with "
             "the minimum (CI overlap) | closed-form minimiser |", "|---" * 6 + "|"]
    labels = {"alpha_train": f"alpha_t (alpha_r = {args.fixed_alpha_test:g})",
              "alpha_test": f"alpha_r (alpha_t = {args.fixed_alpha_train:g})"}
    names = (("monte_carlo", "Monte Carlo"), ("given_inputs", "expectation given training inputs"),
             ("large_p", "large-p closed form"))
    for sweep in SWEEPS:
        for key, name in names:
            if key not in found[sweep]:
                continue
            o = found[sweep][key]
            tied = "-" if key == "large_p" else f"[{o['tied'][0]:g}, {o['tied'][1]:g}]"
            lines.append(f"| {labels[sweep]} | {name} | {o['argmin']:g} | "
                         f"{_fmt(o['parabola'])} | {tied} | {_fmt(o.get('minimiser'))} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], setting: MamlLinearSetting, args: argparse.Namespace,
         path: Path) -> None:
    """Two panels: loss vs alpha_t at the fixed alpha_r, loss vs alpha_r at the fixed alpha_t."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    fixed = {"alpha_train": args.fixed_alpha_test, "alpha_test": args.fixed_alpha_train}
    names = {"alpha_train": ("alpha_t", "alpha_r"), "alpha_test": ("alpha_r", "alpha_t")}
    for ax, sweep in zip(axes, SWEEPS, strict=True):
        part = sorted((r for r in rows if r["sweep"] == sweep), key=lambda r: r[sweep])
        x = np.array([r[sweep] for r in part])
        ax.errorbar(x, [r["test_loss"] for r in part], yerr=[r["ci95"] for r in part], fmt="o",
                    ms=4, capsize=3, label="Monte Carlo (95% CI)")
        ax.plot(x, [r["given_inputs"] for r in part], "k--", lw=1,
                label="expectation given training inputs")
        if setting.gamma < 1:
            dense = np.linspace(x.min(), x.max(), 400)
            curve = [large_p_test_loss(a, fixed[sweep], setting) if sweep == "alpha_train"
                     else large_p_test_loss(fixed[sweep], a, setting) for a in dense]
            ax.plot(dense, curve, "-", color="tab:red", lw=1.2, label="large-p closed form")
        ax.axvline(0.0, color="grey", lw=0.6)
        swept, held = names[sweep]
        ax.set_xlabel(f"{swept} ({'training' if sweep == 'alpha_train' else 'adaptation'} lr)")
        ax.set_ylabel("test loss")
        ax.set_title(f"test loss vs {swept} at {held} = {fixed[sweep]:g}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"MAML on mixed linear regression: p={setting.spec.p}, m={setting.m}, "
                 f"n_t={setting.n_t}, n_v={setting.n_v}, n_r={setting.n_r}, "
                 f"sigma={setting.spec.sigma:g}, nu={setting.spec.nu:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)



def params(args: argparse.Namespace, wall_s: float) -> dict[str, Any]:
    keys = ("p", "m", "n_t", "n_v", "n_r", "sigma", "nu", "w0", "init", "fixed_alpha_test",
            "fixed_alpha_train", "ci", "test_tasks", "batch", "max_runs", "seed", "jobs", "threads",
            "quick")
    return {**{k: getattr(args, k) for k in keys}, "loss": "0.5 * squared error (the paper's)",
            "machine": machine_description(), "wall_s": wall_s}


def points(args: argparse.Namespace) -> list[tuple[str, float, float, tuple[int, int, int]]]:
    """Every point of both sweeps: (sweep, alpha_t, alpha_r, seed of its runs)."""
    todo = []
    for index, (sweep, values) in enumerate(zip(SWEEPS, (args.alpha_train, args.alpha_test),
                                                strict=True)):
        for j, value in enumerate(values):
            alpha_t, alpha_r = ((value, args.fixed_alpha_test) if sweep == "alpha_train"
                                else (args.fixed_alpha_train, value))
            todo.append((sweep, alpha_t, alpha_r, (args.seed, index, j)))
    return todo


def measure_point(point: tuple[str, float, float, tuple[int, int, int]],
                  setting: MamlLinearSetting, args: argparse.Namespace) -> dict[str, Any]:
    """One row (in a worker process when ``--jobs`` > 1); prints it when done."""
    torch.set_num_threads(args.threads)
    sweep, alpha_t, alpha_r, seed = point
    start = time.perf_counter()
    row = {"sweep": sweep, **measure(setting, alpha_t, alpha_r, args, seed)}
    print(f"{sweep}: alpha_t {alpha_t:g}, alpha_r {alpha_r:g}: {row['test_loss']:.4f} "
          f"+- {row['ci95']:.4f} ({row['runs']} runs, {time.perf_counter() - start:.0f} s)",
          flush=True)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setting = setting_of(args)
    start = time.perf_counter()
    todo = points(args)
    if args.jobs == 1:
        rows = [measure_point(point, setting, args) for point in todo]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(measure_point, todo, repeat(setting), repeat(args)))
    found = optima(rows, setting, args)
    result = {"params": params(args, time.perf_counter() - start), "rows": rows,
              "optima": found}
    print(sweep_table(rows), optima_table(found, args), sep="\n\n")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot is not None:
        plot(rows, setting, args, args.plot)
    missed = [r for r in rows if not r["ci_met"]]
    if missed:
        print(f"error: {len(missed)} point(s) stopped at --max-runs {args.max_runs} before "
              f"their CI reached --ci {args.ci}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
