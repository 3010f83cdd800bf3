"""``metarl train``: meta-train a meta-algorithm with a TRPO outer step on a task distribution.

One iteration samples a meta-batch of training tasks from the distribution's own generator,
then runs :meth:`TrpoMetaLearner.step` (pre-update episodes, inner step per task,
post-update episodes, outer TRPO step; Finn et al., 2017, "Model-Agnostic Meta-Learning for
Fast Adaptation of Deep Networks"; Raghu et al., 2020, "Rapid Learning or Feature Reuse?" for
ANIL). Runs live in ``runs/<env>__<algo>__<seed>__<time>/`` with ``config.json``, TensorBoard
events, atomic checkpoints holding every RNG state (a resumed run continues the same
trajectory), periodic held-out evaluations, and a final ``eval.json`` + ``eval.png``.
With no options it trains the default agent: Navigation2D MAML, a few minutes on 2 CPU cores.

The pieces: :mod:`metarl.rl.config` (options), :mod:`metarl.rl.factories` (objects),
:mod:`metarl.rl.run` (folder, checkpoints, Ctrl-C), :mod:`metarl.rl.loop` (the loop).
"""

from __future__ import annotations

import sys
from pathlib import Path

from metarl.rl.config import TrainConfig, resume_config
from metarl.rl.loop import final_eval, say, train_loop
from metarl.rl.run import start_run

__all__ = ["TrainConfig", "main"]


def main(cfg: TrainConfig) -> Path:
    """Train (or resume) a run, evaluate it on held-out tasks, and return its folder."""
    if cfg.resume is not None:
        cfg = resume_config(cfg)
    run = start_run(cfg)
    try:
        if run.resumed_from is not None:
            say(f"resuming {run.run_dir} from iteration {run.iteration} ({run.resumed_from.name})"
                f"; training to iteration {cfg.hp.iterations}")
        if not train_loop(run):
            print(f"stopped at iteration {run.iteration}; checkpoint saved in {run.run_dir}; "
                  f"continue with: metarl train --resume {run.run_dir}", file=sys.stderr)
            raise SystemExit(130)
        table = final_eval(run)
    finally:
        run.close()
    print(f"{table}\nrun folder: {run.run_dir}")
    return run.run_dir
