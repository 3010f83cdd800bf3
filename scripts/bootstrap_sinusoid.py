"""Learning MAML's inner lrs on 10-shot sinusoid: the meta-gradient against BMG.

Meta-SGD-style per-tensor inner lrs (Li et al., 2017) on Finn et al.'s (2017) sinusoid
benchmark (1-40-40-1 ReLU, 10-shot, meta-batch 25, Adam 1e-3, one inner step, init 0.01),
trained through ``metarl supervised --algo metasgd``. The initialisation always learns by
MAML's meta-gradient; the rates learn either by the same meta-gradient (``gradient``) or
by bootstrapped meta-gradients (``--inner-lr-meta bmg``, Flennerhag et al., ICLR 2022):
toward a target ``L - 1`` further inner steps plus one query-gradient step ahead, under the
squared parameter distance or the KL between unit-variance Gaussian predictions. Every run
is evaluated with its learned rates on 600 held-out tasks: query MSE after 1 (the trained
horizon) and 2 steps (mean +- 95% CI), and the median after 10 (rates learned for one step
make some tasks diverge over 10, so the mean is not finite). Runs are far shorter than the
published 70,000 meta-iterations.

Usage::

    nice python scripts/bootstrap_sinusoid.py --out docs/bootstrap_sinusoid.md \
        --json docs/bootstrap_sinusoid.json
    python scripts/bootstrap_sinusoid.py --quick      # 100 iterations, two rows
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from metarl.utils import machine_description

PUBLISHED_ITERATIONS = 70_000
# (inner_lr_meta, bmg_l, bmg_match, bmg_step); the L = 1 squared row is the meta-gradient
# times bmg_step, which Adam's scale invariance makes (nearly) the gradient row.
Spec = tuple[str, int, str, float]
FULL_ROWS: list[Spec] = [("gradient", 1, "squared", 0.01), ("bmg", 1, "squared", 0.01),
                         ("bmg", 3, "squared", 0.01), ("bmg", 5, "squared", 0.01),
                         ("bmg", 3, "kl", 0.01), ("bmg", 3, "squared", 0.1),
                         ("bmg", 3, "kl", 0.1)]
QUICK_ROWS: list[Spec] = [("gradient", 1, "squared", 0.01), ("bmg", 3, "squared", 0.01)]
STEPS = (0, 1, 2, 10)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text}")
    return value


def run_one(spec: Spec, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Meta-train and evaluate one row's setting with one seed."""
    torch.set_num_threads(args.threads)
    from metarl.runs import latest_checkpoint, load_checkpoint
    from metarl.supervised.train import SupervisedConfig, main

    how, lookahead, match, step = spec
    cfg = SupervisedConfig(task="sinusoid", algo="metasgd", shots=10, query=10,
                           iterations=args.iterations, inner_lr=0.01, inner_lr_meta=how,
                           bmg_l=lookahead, bmg_step=step, bmg_match=match,
                           eval_inner_steps=max(STEPS), eval_tasks=args.eval_tasks, seed=seed,
                           run_root=args.run_root, progress=False,
                           checkpoint_every=max(args.iterations // 4, 1))
    start = time.perf_counter()
    run_dir = main(cfg)
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "eval.json").read_text())
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None
    lrs = load_checkpoint(checkpoint)["learner"]["rule"]["lrs"]
    row: dict[str, Any] = {"inner_lr_meta": how, "bmg_l": lookahead if how == "bmg" else None,
                           "bmg_match": match if how == "bmg" else None,
                           "bmg_step": step if how == "bmg" else None, "seed": seed,
                           "iterations": args.iterations, "eval_tasks": result["tasks"],
                           "learned_lrs": [float(v) for v in lrs.flatten()],
                           "wall_s": wall, "it_per_s": args.iterations / wall,
                           "run_dir": str(run_dir)}
    for k in STEPS:
        row[f"mse_step{k}"] = result["mse_mean"][k]
        row[f"ci95_step{k}"] = result["mse_ci95"][k]
        row[f"median_step{k}"] = result["mse_median"][k]
        row[f"diverged_step{k}"] = result["diverged"][k]
    print(f"{label(row)} seed {seed}: 1-step MSE {row['mse_step1']:.3f} "
          f"({wall / 60:.1f} min)", flush=True)
    return row


def label(row: dict[str, Any]) -> str:
    if row["inner_lr_meta"] == "gradient":
        return "meta-gradient"
    return f"BMG, L = {row['bmg_l']}, {row['bmg_match']}, step {row['bmg_step']:g}"



def table(rows: list[dict[str, Any]], where: str) -> str:
    lines = ["| inner lrs learned by | seed | iterations (published: 70,000) | after 1 step "
             "(+- 95% CI) | after 2 steps (+- 95% CI) | median after 10 steps | diverged "
             "tasks after 10 | learned lrs (min / mean / max) | it/s (with eval) |",
             "|---" * 9 + "|"]
    for r in rows:
        lrs = r["learned_lrs"]
        lines.append(f"| {label(r)} | {r['seed']} | {r['iterations']} | "
                     f"{r['mse_step1']:.3f} +- {r['ci95_step1']:.3f} | "
                     f"{r['mse_step2']:.3f} +- {r['ci95_step2']:.3f} | "
                     f"{r['median_step10']:.3f} | {r['diverged_step10']} / {r['eval_tasks']} | "
                     f"{min(lrs):.4f} / {sum(lrs) / len(lrs):.4f} / {max(lrs):.4f} | "
                     f"{r['it_per_s']:.0f} |")
    return "\n".join(lines) + f"\n\n{len(rows)} runs, {rows[0]['eval_tasks']} held-out tasks " \
                              f"each, evaluated with the learned rates; {where}."


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--iterations", type=positive_int, default=None,
        help="meta-iterations per run (default 20,000; quick 100)")
    add("--seeds", type=positive_int, default=None, help="seeds per row (default 2; quick 1)")
    add("--eval-tasks", type=positive_int, default=600, help="held-out tasks per run")
    add("--threads", type=positive_int, default=1, help="torch threads")
    add("--run-root", default="runs/bootstrap_sinusoid")
    add("--quick", action="store_true", help="100 iterations, two rows, one seed")
    add("--out", type=Path, default=None, help="write the Markdown table here")
    add("--json", type=Path, default=None, help="write params and rows as JSON here")
    args = parser.parse_args(argv)
    args.iterations = args.iterations or (100 if args.quick else 20_000)
    args.seeds = args.seeds or (1 if args.quick else 2)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    specs = QUICK_ROWS if args.quick else FULL_ROWS
    rows = [run_one(spec, seed, args) for spec in specs for seed in range(args.seeds)]
    wall = time.perf_counter() - start
    text = table(rows, f"{machine_description()}, one run at a time, {args.threads} thread(s), "
                       f"{wall / 60:.1f} min in all")
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
