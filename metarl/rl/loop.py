"""The training loop of ``metarl train``: iterations, periodic held-out evaluation,
checkpoints by iterations or minutes, Ctrl-C, non-finite updates, and what the console shows.

A meta-update skipped as non-finite (``trpo/nonfinite_skipped``: a NaN/inf loss, gradient or
step, or ``data/nonfinite_steps`` observations/rewards) is warned about and the run goes on;
``--max-nonfinite-updates`` of them in a row stop it with a message (:class:`NonfiniteGuard`),
and no scheduled checkpoint is written during such a streak.

Console convention (shared with ``metarl supervised``): with ``--progress`` a bar on stderr;
with ``--no-progress`` one line per iteration on stdout; the final results table and the
run folder on stdout; errors and Ctrl-C notices on stderr.
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

from metarl.rl.evaluate import evaluate_run, format_table, write_eval
from metarl.rl.run import Run, save, sigint_flag
from metarl.runs import NonfiniteGuard

ADVICE = ("check the environment's observations and rewards (data/nonfinite_steps in "
          "TensorBoard), the inner lr (--inner-lr) and the trust region (--max-kl)")


def say(message: str) -> None:
    """An informational line on stdout that does not break a progress bar."""
    tqdm.write(message, file=sys.stdout)


def train_iteration(run: Run) -> dict[str, float]:
    """Sample training tasks, take one learner step, and return its logs (plus timings)."""
    start = time.perf_counter()
    tasks = run.task_env.sample_tasks(run.cfg.hp.meta_batch, "train")
    logs = dict(run.learner.step(run.sampler, tasks))
    seconds = time.perf_counter() - start
    run.iteration += 1
    run.env_steps += int(logs["env_steps"])
    run.wall_s += seconds
    logs["time/iteration_s"] = seconds
    logs["time/total_env_steps"] = run.env_steps
    logs["time/total_s"] = run.wall_s
    return logs


def periodic_eval(run: Run) -> dict[str, float]:
    """Held-out evaluation logs (``eval/return_step{k}``, ``time/evaluation_s``) when due."""
    every, last = run.cfg.hp.eval_every, run.iteration >= run.cfg.hp.iterations
    if every == 0 or run.iteration % every != 0 or last:
        return {}
    start = time.perf_counter()
    result = evaluate_run(run.cfg, run.learner, run.iteration)
    logs = result.scalars()
    logs["time/evaluation_s"] = time.perf_counter() - start
    return logs


def _postfix(logs: dict[str, float], inner_steps: int) -> dict[str, str]:
    ret = logs.get(f"adapt/return_step{inner_steps}", logs.get("adapt/return_step0", math.nan))
    return {"env_steps/s": f"{logs.get('time/env_steps_per_s', math.nan):.3g}",
            "return": f"{ret:.2f}"}


def _path_message(logs: dict[str, float]) -> str | None:
    if not logs.get("meta_update/probed"):
        return None
    path = "batched (vmap)" if logs["meta_update/path"] == 0.0 else "loop"
    return (f"meta-update path: {path}; probe batched {logs['meta_update/probe_batched_s']:.3f}"
            f" s, loop {logs['meta_update/probe_loop_s']:.3f} s")


def _cause(logs: dict[str, float]) -> str:
    data = int(logs.get("data/nonfinite_steps", 0))
    if data:
        return f"{data} steps with a non-finite observation or reward"
    return "a non-finite loss, gradient or step"


def train_loop(run: Run) -> bool:
    """Iterate to ``cfg.hp.iterations``; returns False when stopped by Ctrl-C.

    Raises:
        RunError: After ``cfg.max_nonfinite_updates`` skipped meta-updates in a row.
    """
    hp = run.cfg.hp
    guard = NonfiniteGuard(run.cfg.max_nonfinite_updates, run.run_dir, ADVICE)
    first = run.iteration + 1
    bar = tqdm(total=hp.iterations, initial=run.iteration, disable=not run.cfg.progress,
               desc=f"{run.cfg.env} {run.cfg.algo}", unit="it", dynamic_ncols=True)
    with sigint_flag() as stop, bar:
        while run.iteration < hp.iterations:
            logs = train_iteration(run)
            logs.update(periodic_eval(run))
            message = _path_message(logs)
            if message:
                say(message)
            run.logger.record_dict(logs)
            run.logger.dump(run.iteration)
            bar.update(1)
            bar.set_postfix(_postfix(logs, hp.inner_steps))
            if guard.record(bool(logs["trpo/nonfinite_skipped"]), run.iteration, _cause(logs)):
                raise guard.error()
            done = run.iteration >= hp.iterations
            due = guard.clear and run.schedule.due(run.iteration, first)
            if done or stop.requested or due:
                save(run)
            if stop.requested and not done:
                return False
    return True


def final_eval(run: Run) -> str:
    """Evaluate on held-out tasks; write ``eval.json``, ``eval.png`` and ``eval/*`` scalars.

    Returns:
        The results table.
    """
    start = time.perf_counter()
    result = evaluate_run(run.cfg, run.learner, run.iteration)
    run.logger.record("time/evaluation_s", time.perf_counter() - start)
    write_eval(result, run.run_dir, logger=run.logger, step=run.iteration)
    return (f"held-out evaluation at iteration {run.iteration} ({len(result.tasks)} test tasks "
            f"x {len(result.seeds)} seeds):\n{format_table(result)}")
