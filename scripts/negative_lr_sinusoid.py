"""The sign of MAML's training inner lr on 10-shot sinusoid regression (Bernacchia, 2021).

Bernacchia (2021) finds the optimal training inner lr of MAML negative on mixed linear
regression and, in the NTK approximation, on nonlinear regression. This script asks the
same of Finn et al.'s (2017) sinusoid benchmark: it meta-trains MAML through ``metarl
supervised`` (1-40-40-1 ReLU, 10-shot, meta-batch 25, Adam 1e-3, one inner step) with
training inner lrs of both signs and zero, evaluates every run with the same positive
adaptation lr (``--eval-inner-lr``, default 0.01) on 600 held-out tasks, and tabulates the
query MSE after 0, 1 and 10 adaptation steps (mean +- 95% CI over tasks). Runs are shorter
than the published 70,000 meta-iterations (the table says how many). The suite's loss is
the plain MSE, so its inner lr ``eta`` is the paper's ``alpha = 2 eta`` (the paper's loss is
half the MSE); the sign is what matters here.

Usage::

    nice python scripts/negative_lr_sinusoid.py --jobs 2 --out docs/negative_lr_sinusoid.md \
        --json docs/negative_lr_sinusoid.json
    python scripts/negative_lr_sinusoid.py --quick      # 200 iterations, three rows
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from negative_lr import finite, positive_int

from metarl.utils import machine_description

PUBLISHED_ITERATIONS = 70_000
FULL_LRS = [-0.02, -0.01, -0.005, 0.0, 0.005, 0.01, 0.02]
QUICK_LRS = [-0.01, 0.0, 0.01]
STEPS = (0, 1, 10)


def run_one(inner_lr: float, args: argparse.Namespace) -> dict[str, Any]:
    """Meta-train and evaluate one training inner lr; returns its row."""
    torch.set_num_threads(args.threads)
    from metarl.supervised.train import SupervisedConfig, main

    cfg = SupervisedConfig(task="sinusoid", algo="maml", shots=10, query=10,
                           iterations=args.iterations, inner_lr=inner_lr,
                           eval_inner_lr=args.eval_inner_lr, eval_inner_steps=max(STEPS),
                           eval_tasks=args.eval_tasks, seed=args.seed, run_root=args.run_root,
                           progress=False, checkpoint_every=max(args.iterations // 4, 1))
    start = time.perf_counter()
    run_dir = main(cfg)
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "eval.json").read_text())
    row: dict[str, Any] = {"inner_lr": inner_lr, "eval_inner_lr": args.eval_inner_lr,
                           "iterations": args.iterations, "seed": args.seed,
                           "eval_tasks": result["tasks"], "wall_s": wall,
                           "run_dir": str(run_dir)}
    for k in STEPS:
        row[f"mse_step{k}"] = result["mse_mean"][k]
        row[f"ci95_step{k}"] = result["mse_ci95"][k]
        row[f"median_step{k}"] = result["mse_median"][k]
        row[f"diverged_step{k}"] = result["diverged"][k]
    return row


def table(rows: list[dict[str, Any]], where: str) -> str:
    """Markdown table of the rows, by training inner lr."""
    lines = ["| training inner lr | eval inner lr | iterations (published: 70,000) | "
             "query MSE, 0 steps | after 1 step (+- 95% CI) | after 10 steps (+- 95% CI) | "
             "median after 10 | diverged tasks | wall-clock |", "|---" * 9 + "|"]
    for r in sorted(rows, key=lambda r: r["inner_lr"]):
        lines.append(f"| {r['inner_lr']:g} | {r['eval_inner_lr']:g} | {r['iterations']} | "
                     f"{r['mse_step0']:.3f} | {r['mse_step1']:.3f} +- {r['ci95_step1']:.3f} | "
                     f"{r['mse_step10']:.3f} +- {r['ci95_step10']:.3f} | "
                     f"{r['median_step10']:.3f} | {r['diverged_step10']} / {r['eval_tasks']} | "
                     f"{r['wall_s'] / 60:.1f} min |")
    return "\n".join(lines) + f"\n\n{len(rows)} runs of seed {rows[0]['seed']}, " \
                              f"{rows[0]['eval_tasks']} held-out tasks each; {where}."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--inner-lrs", type=finite, nargs="+", default=None,
        help="training inner lrs, one run each (default -0.02 -0.01 -0.005 0 0.005 0.01 0.02)")
    add("--eval-inner-lr", type=finite, default=0.01, help="adaptation lr at evaluation")
    add("--iterations", type=positive_int, default=None,
        help="meta-iterations per run (default 20,000; quick 200)")
    add("--eval-tasks", type=positive_int, default=600, help="held-out tasks per run")
    add("--seed", type=int, default=0)
    add("--jobs", type=positive_int, default=2, help="runs in parallel")
    add("--threads", type=positive_int, default=1, help="torch threads per run")
    add("--run-root", default="runs/negative_lr_sinusoid")
    add("--quick", action="store_true", help="200 iterations, training lrs -0.01 0 0.01")
    add("--out", type=Path, default=None, help="write the Markdown table here")
    add("--json", type=Path, default=None, help="write params and rows as JSON here")
    args = parser.parse_args(argv)
    args.inner_lrs = args.inner_lrs or (QUICK_LRS if args.quick else FULL_LRS)
    args.iterations = args.iterations or (200 if args.quick else 20_000)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    if args.jobs == 1:
        rows = [run_one(lr, args) for lr in args.inner_lrs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(run_one, args.inner_lrs, [args] * len(args.inner_lrs)))
    wall = time.perf_counter() - start
    where = (f"{machine_description()}, {args.jobs} run(s) at a time, {args.threads} "
             f"thread(s) each, {wall / 60:.1f} min in all")
    text = table(rows, where)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    if args.json is not None:
        params = {k: v for k, v in vars(args).items() if k not in ("out", "json")}
        params.update(published_iterations=PUBLISHED_ITERATIONS, machine=machine_description(),
                      wall_s=wall)
        args.json.write_text(json.dumps({"params": params, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
