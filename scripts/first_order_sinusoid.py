"""Sinusoid 10-shot rows for the finite-difference meta-gradient beside MAML and FOMAML.

Each row is one ``metarl supervised`` run (Finn et al.'s setting: 1-40-40-1 ReLU, inner lr
0.01, meta-batch 25, Adam 1e-3), as ``scripts/sinusoid_results.py`` runs them, evaluated
on 600 held-out tasks after 10 inner steps, plus two memory figures:

* ``graph_kib``: what the autograd graph of one meta-loss saves for backward (25 tasks),
  at 1 and at 5 inner steps: second order grows with the steps, first order does not;
* ``max_rss_mib``: the run's peak resident memory (its own process; mostly torch itself).

Runs shorter than the table's 70,000 iterations are labelled with their length.

    OMP_NUM_THREADS=1 nice python scripts/first_order_sinusoid.py --iterations 4000 \
        --json docs/first_order_sinusoid.json --out docs/first_order_sinusoid.md
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sinusoid_results  # noqa: E402

ALGOS = ("maml", "fomaml", "fdmaml", "fdmaml-sym")


def graph_kib(algo: str, inner_steps: int, fd_delta: float) -> float:
    """KiB saved for backward by one 25-task meta-loss of ``algo`` at initialisation."""
    from metarl.core.memory import graph_bytes
    from metarl.supervised.config import SupervisedConfig
    from metarl.supervised.tasks import sample_sinusoid
    from metarl.supervised.train import build_learner

    cfg = SupervisedConfig(algo=algo, inner_steps=inner_steps, fd_delta=fd_delta)
    learner = build_learner(cfg, torch.device("cpu"))
    support, query = sample_sinusoid(25, 10, 10, torch.Generator().manual_seed(0))
    from metarl.core import meta_loss

    loss, _ = meta_loss(learner.params, learner.loss_fn, support, query, steps=inner_steps,
                        rule=learner.rule, keys=learner.keys,
                        estimator=learner.algorithm.estimator)
    return graph_bytes(loss) / 1024


def run_row(algo: str, iterations: int, run_root: str, seed: int,
            fd_delta: float) -> dict[str, Any]:
    """One run in its own process (``sinusoid_results.run_one``'s row, with ``fd_delta``),
    its memory figures and its peak RSS."""
    torch.set_num_threads(1)
    from metarl.supervised.train import SupervisedConfig
    from metarl.supervised.train import main as train

    cfg = SupervisedConfig(task="sinusoid", algo=algo, shots=10, query=10,
                           iterations=iterations, seed=seed, run_root=run_root,
                           eval_tasks=600, eval_inner_steps=10, progress=False,
                           checkpoint_every=max(iterations // 10, 1), fd_delta=fd_delta)
    start = time.perf_counter()
    run_dir = train(cfg)
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "eval.json").read_text())
    fd = algo.startswith("fdmaml")
    return {"shots": 10, "algo": algo, "iterations": iterations, "seed": seed,
            "fd_delta": fd_delta if fd else None,
            "mse": result["final_mse"], "ci95": result["final_ci95"],
            "median": result["mse_median"][-1], "diverged": result["diverged"][-1],
            "mse_step0": result["mse_mean"][0], "mse_step1": result["mse_mean"][1],
            "wall_s": wall, "iters_per_s": iterations / wall, "run_dir": str(run_dir),
            "graph_kib": {str(k): graph_kib(algo, k, fd_delta) for k in (1, 5)},
            "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "machine": sinusoid_results.machine()}


def fd_error(deltas: list[float], seed: int, run_dir: str | None = None) -> list[dict[str, Any]]:
    """Distance of each estimator's meta-gradient to the exact one at the sinusoid net's
    initialisation, or at ``run_dir``'s latest checkpoint (25 tasks, 1 inner step, float64,
    relative to |exact|): a ReLU net's gradient jumps where a unit switches, and finite
    differences see the jumps."""
    from metarl.core import FiniteDifference, FirstOrder, SecondOrder, meta_loss
    from metarl.supervised.config import SupervisedConfig
    from metarl.supervised.tasks import sample_sinusoid
    from metarl.supervised.train import build_learner

    learner = build_learner(SupervisedConfig(seed=seed), torch.device("cpu"))
    if run_dir is not None:
        from metarl.runs import load_latest

        learner.load_state_dict(load_latest(run_dir)[1]["learner"])
    params = {k: v.detach().double().requires_grad_(True) for k, v in learner.params.items()}
    model = learner.model.double()
    support, query = sample_sinusoid(25, 10, 10, torch.Generator().manual_seed(seed))
    support = {k: v.double() for k, v in support.items()}
    query = {k: v.double() for k, v in query.items()}

    def grad(estimator: Any) -> torch.Tensor:
        def loss(p: Any, d: Any) -> torch.Tensor:
            return ((torch.func.functional_call(model, p, (d["x"],)) - d["y"]) ** 2).mean()

        value, _ = meta_loss(params, loss, support, query, steps=1, rule=0.01,
                             keys=tuple(params), estimator=estimator)
        return torch.cat([g.flatten() for g in torch.autograd.grad(value, list(params.values()))])

    exact = grad(SecondOrder())
    scale = float(exact.norm())
    where = "initialisation" if run_dir is None else run_dir
    rows = [{"estimator": "fomaml", "delta": None, "at": where,
             "rel_error": float((grad(FirstOrder()) - exact).norm()) / scale}]
    for scheme in ("forward", "symmetric"):
        for d in deltas:
            err = float((grad(FiniteDifference(d, scheme)) - exact).norm()) / scale
            rows.append({"estimator": f"fd-{scheme}", "delta": d, "at": where,
                         "rel_error": err})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| algo | iterations | MSE after 10 steps (+- 95% CI) | median | after 1 step | "
             "wall-clock | it/s | graph KiB, 1 / 5 inner steps | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["algo"] + (f" (delta {r['fd_delta']:g})" if r.get("fd_delta") else "")
        lines.append(f"| {name} | {r['iterations']} | {r['mse']:.3f} +- {r['ci95']:.3f} | "
                     f"{r['median']:.3f} | {r['mse_step1']:.3f} | {r['wall_s'] / 60:.1f} min | "
                     f"{r['iters_per_s']:.0f} | {r['graph_kib']['1']:.0f} / "
                     f"{r['graph_kib']['5']:.0f} | {r['max_rss_mib']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--algos", nargs="+", default=list(ALGOS))
    p.add_argument("--fd-delta", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-root", default="runs/first_order_sinusoid")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--fd-error", action="store_true",
                   help="only the meta-gradient error table at initialisation (seconds)")
    p.add_argument("--fd-error-at", nargs="*", default=[], metavar="RUN_DIR",
                   help="with --fd-error: also at these runs' latest checkpoints")
    args = p.parse_args(argv)
    if args.iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {args.iterations}")
    if args.fd_error:
        deltas = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
        errors = fd_error(deltas, args.seed)
        for run_dir in args.fd_error_at:
            errors += fd_error(deltas, args.seed, run_dir)
        for r in errors:
            print(f"{r['at'][-40:]:>40} {r['estimator']:>13} delta {r['delta']}: "
                  f"|g - exact| / |exact| = "
                  f"{r['rel_error']:.3g}")
        if args.json is not None:
            args.json.write_text(json.dumps(errors, indent=2) + "\n")
        return 0
    rows = []
    for algo in args.algos:  # one process per run: its own peak RSS
        with ProcessPoolExecutor(max_workers=1) as pool:
            row = pool.submit(run_row, algo, args.iterations, args.run_root, args.seed,
                              args.fd_delta).result()
        rows.append(row)
        print(f"done: {algo}: {row['mse']:.3f} +- {row['ci95']:.3f} ({row['wall_s']:.0f} s)",
              flush=True)
        if args.json is not None:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
        if args.out is not None:
            args.out.write_text(table(rows) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
