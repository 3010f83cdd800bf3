"""Navigation2D: meta-gradient variants side by side, one ``metarl train`` run each.

The variants (``--variants``): second-order MAML, first-order MAML and the finite-difference
meta-gradient (issue 7.2), and Meta-SGD with its inner lrs moved by TRPO or by bootstrapped
meta-gradients (issue 7.3). Every run uses the fast preset and the same seed, so the same
policy initialisation, task sequence and sampler seeds, and ends with the held-out
evaluation of its ``eval.json`` (returns after 0..3 inner steps, mean +- 95% CI over held-out
tasks x seeds). Finished runs are kept: a rerun with the same ``--out`` reuses rows whose
run folder has an ``eval.json`` (``--fresh`` retrains them).

    OMP_NUM_THREADS=1 nice python scripts/first_order_rl.py --iterations 10
    OMP_NUM_THREADS=1 nice python scripts/first_order_rl.py --iterations 10 \\
        --variants metasgd metasgd-bmg --out docs/bmg_rl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from metarl.utils import machine_description

VARIANTS: dict[str, dict[str, Any]] = {
    "maml": dict(algo="maml"),
    "fomaml": dict(algo="fomaml"),
    "fdmaml": dict(algo="fdmaml", fd_delta=1e-3),
    "metasgd": dict(algo="metasgd"),
    "metasgd-bmg": dict(algo="metasgd", inner_lr_meta="bmg", bmg_l=2, bmg_step=0.1,
                        bmg_match="kl", bmg_lr=1e-2),
}
DEFAULT = ("maml", "fomaml", "fdmaml")



def run_variant(name: str, iterations: int, seed: int, run_root: Path, threads: int,
                fresh: bool) -> dict[str, Any]:
    """Train (or reuse) one variant's run and read its held-out evaluation."""
    from metarl.rl.config import TrainConfig
    from metarl.rl.train import main as train

    root = run_root / name
    done = sorted(root.glob("*/eval.json")) if root.exists() and not fresh else []
    start = time.perf_counter()
    if done:
        run_dir, wall = done[-1].parent, None
    else:
        # The per-task loop: what the path probe picks on this machine, fixed so that no run
        # spends its first iteration timing both paths.
        cfg = TrainConfig(env="Navigation2D", preset="fast", iterations=iterations, seed=seed,
                          threads=threads, run_root=str(root), progress=False,
                          meta_update_path="loop", **VARIANTS[name])
        run_dir, wall = train(cfg), time.perf_counter() - start
    ev = json.loads((run_dir / "eval.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    lrs = None
    from metarl.runs import latest_checkpoint, load_checkpoint

    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        rule = load_checkpoint(ckpt)["learner"].get("rule", {})
        if "lrs" in rule:  # learned inner lrs: where training left them
            t = rule["lrs"]
            lrs = [float(t.min()), float(t.mean()), float(t.max())]
    return {"variant": name, **VARIANTS[name], "iterations": ev["iteration"],
            "mean": ev["overall"]["mean"], "ci95": ev["overall"]["ci95"],
            "eval_tasks": ev["num_tasks"], "eval_seeds": len(ev["seeds"]),
            "wall_s": wall, "run_dir": str(run_dir), "seed": config.get("seed", seed),
            "inner_lrs_min_mean_max": lrs}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | iterations | return before adaptation | after 1 step | after 3 steps "
             "| learned inner lrs (min / mean / max) | wall-clock |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, c = r["mean"], r["ci95"]
        wall = "reused" if r["wall_s"] is None else f"{r['wall_s'] / 60:.1f} min"
        lrs = r.get("inner_lrs_min_mean_max")
        rates = "-" if lrs is None else " / ".join(f"{x:.3f}" for x in lrs)
        lines.append(f"| {r['variant']} | {r['iterations']} | {m[0]:.1f} +- {c[0]:.1f} | "
                     f"{m[1]:.1f} +- {c[1]:.1f} | {m[-1]:.1f} | {rates} | {wall} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=10,
                        help="meta-iterations per run (the fast preset has 60)")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT),
                        help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", default="runs/first_order_rl")
    parser.add_argument("--out", default="docs/first_order_rl",
                        help="writes <out>.json and <out>.md")
    parser.add_argument("--fresh", action="store_true", help="retrain finished variants")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {args.iterations}")
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"variants must be among {tuple(VARIANTS)}, got {bad}")
    rows = []
    for name in args.variants:
        rows.append(run_variant(name, args.iterations, args.seed, Path(args.run_root),
                                args.threads, args.fresh))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine_description(), "preset": "fast", "env": "Navigation2D",
            "seed": args.seed, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")
    text = (f"{table(rows)}\n\nNavigation2D, fast preset, seed {args.seed} for every variant; "
            f"held-out returns: mean +- 95% CI over test tasks x seeds (`eval.json`). "
            f"Machine: {info['machine']}.\n")
    out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
