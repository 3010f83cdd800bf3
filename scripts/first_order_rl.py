"""Navigation2D: second-order MAML, first-order MAML and the finite-difference meta-gradient.

One ``metarl train`` run per estimator (fast preset, the same seed, so the same policy
initialisation, task sequence and sampler seeds), each ending with the held-out evaluation
of its ``eval.json``: returns before adaptation and after one inner step, mean +- 95% CI
over held-out tasks and seeds. The rows, the table and the machine come from
``scripts/rl_results.py``; this script only names the runs. Writes
``docs/first_order_rl.md`` and ``docs/first_order_rl.json``.

    OMP_NUM_THREADS=1 nice python scripts/first_order_rl.py --iterations 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rl_results  # noqa: E402

ALGOS = ("maml", "fomaml", "fdmaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=10,
                        help="meta-iterations per run (the fast preset has 60)")
    parser.add_argument("--algos", nargs="+", default=list(ALGOS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run-root", default="runs/first_order_rl")
    parser.add_argument("--out", default="docs/first_order_rl")
    parser.add_argument("--merge", action="store_true",
                        help="keep rows already in <out>.json that this call does not rerun")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        raise ValueError(f"iterations must be an int >= 1, got {args.iterations}")
    import torch

    torch.set_num_threads(args.threads)
    for algo in args.algos:
        # The per-task loop: what the path probe picks on this machine, fixed so that no
        # run spends its first iteration timing both paths.
        rl_results.ROWS[f"nav-{algo}"] = dict(env="Navigation2D", algo=algo, preset="fast",
                                              iterations=args.iterations,
                                              meta_update_path="loop")
    cfg = rl_results.ResultsConfig(only=tuple(f"nav-{a}" for a in args.algos), seed=args.seed,
                                   run_root=args.run_root, out=args.out, progress=False,
                                   merge=args.merge)
    rl_results.main(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
