"""Held-out evaluation of a meta-RL policy: returns after 0..K inner steps, mean and 95% CI.

The protocol of Finn et al. (2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", sec. 5.3): for each held-out task, the return of the meta-learned policy before
adaptation (step 0) and after each of K inner policy-gradient steps, each step sampling fresh
episodes with the adapted policy. Several seeds; mean and 95% confidence interval per task
(over seeds) and overall (over every task and seed). Results go to ``eval.json``, a PNG
adaptation curve and TensorBoard scalars ``eval/return_step{k}``. Tasks come from the
distribution's test split (a fixed set no training draw touches) or from a JSON task file.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tyro

from metarl.core import resolve_device
from metarl.logging import Logger, write_json
from metarl.rl.train import TrainConfig, build_learner, load_config, make_env, make_sampler
from metarl.utils import check_run_dir, mean_ci95, plot_adaptation

# Evaluation seeds are fixed (not the training seed) so runs are compared on the same episodes.
EVAL_SEED_BASE = 1_000_000


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: ``returns[s, k, t]`` is seed ``s``, inner step ``k``, task ``t``."""

    env: str
    algo: str
    tasks: list[Any]
    seeds: tuple[int, ...]
    inner_lr: float
    episodes_per_task: int
    returns: np.ndarray

    @property
    def inner_steps(self) -> int:
        return int(self.returns.shape[1]) - 1

    def overall(self) -> tuple[list[float], list[float]]:
        """Per inner step: mean and 95% CI half-width over every (seed, task) return."""
        stats = [mean_ci95(self.returns[:, k, :]) for k in range(self.inner_steps + 1)]
        return [m for m, _ in stats], [c for _, c in stats]

    def per_task(self) -> list[tuple[list[float], list[float]]]:
        """Per task, per inner step: mean and 95% CI half-width over seeds."""
        out = []
        for t in range(self.returns.shape[2]):
            stats = [mean_ci95(self.returns[:, k, t]) for k in range(self.inner_steps + 1)]
            out.append(([m for m, _ in stats], [c for _, c in stats]))
        return out

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars: ``eval/return_step{k}`` and ``eval/return_ci95_step{k}``."""
        mean, ci = self.overall()
        logs = {f"eval/return_step{k}": m for k, m in enumerate(mean)}
        logs.update({f"eval/return_ci95_step{k}": c for k, c in enumerate(ci)})
        return logs

    def to_json(self) -> dict[str, Any]:
        mean, ci = self.overall()
        return {
            "env": self.env, "algo": self.algo, "inner_steps": self.inner_steps,
            "inner_lr": self.inner_lr, "episodes_per_task": self.episodes_per_task,
            "seeds": list(self.seeds), "num_tasks": len(self.tasks),
            "overall": {"mean": mean, "ci95": ci},
            "per_seed_mean": self.returns.mean(axis=2).tolist(),
            "per_task": [{"task": t.to_dict(), "mean": m, "ci95": c}
                         for t, (m, c) in zip(self.tasks, self.per_task(), strict=True)],
            "returns": self.returns.tolist(),
        }


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every global RNG afterwards: evaluating never changes the training trajectory."""
    from metarl.utils import rng_state, set_rng_state

    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def held_out_tasks(cfg: TrainConfig, n: int) -> list[Any]:
    """The first ``n`` tasks of the distribution's fixed test split."""
    env = make_env(cfg, 1, None)
    try:
        return list(env.sample_tasks(n, "test"))
    finally:
        env.close()


def evaluate(learner: Any, cfg: TrainConfig, tasks: Sequence[Any], *, inner_steps: int,
             inner_lr: float, seeds: Sequence[int], episodes_per_task: int,
             device: str = "cpu") -> EvalResult:
    """Adapt to every task with ``inner_steps`` steps of lr ``inner_lr``, once per seed.

    Args:
        learner: A ``MetaLearner`` (its ``adapt_and_evaluate`` returns ``[K + 1, n_tasks]``).
        cfg: The run's config (distribution, horizon, preset, algo).
        tasks: Held-out tasks.
        inner_steps: K; returns are reported after 0..K steps.
        inner_lr: The evaluation inner lr (any sign).
        seeds: One evaluation per seed (sampling noise and env resets).
        episodes_per_task: Episodes per task per step.
        device: Where the policy runs.
    """
    env = make_env(cfg, len(tasks) * episodes_per_task, int(seeds[0]))
    sampler = make_sampler(env, episodes_per_task, device)
    try:
        with preserved_rng():
            runs = [np.asarray(learner.adapt_and_evaluate(sampler, list(tasks), inner_steps,
                                                          inner_lr, int(s)), dtype=np.float64)
                    for s in seeds]
    finally:
        env.close()
    return EvalResult(cfg.env, cfg.algo, list(tasks), tuple(int(s) for s in seeds), inner_lr,
                      episodes_per_task, np.stack(runs))


def evaluate_run(cfg: TrainConfig, learner: Any) -> EvalResult:
    """The run's standard held-out evaluation (its ``eval_*`` settings, the test split)."""
    hp = cfg.hp
    seeds = [EVAL_SEED_BASE + s for s in range(hp.eval_seeds)]
    return evaluate(learner, cfg, held_out_tasks(cfg, hp.eval_tasks),
                    inner_steps=hp.eval_inner_steps, inner_lr=hp.eval_inner_lr, seeds=seeds,
                    episodes_per_task=hp.episodes_per_task, device=cfg.device)


def write_eval(result: EvalResult, run_dir: str | Path, *, logger: Logger | None = None,
               step: int = 0, stem: str = "eval") -> Path:
    """Write ``<stem>.json``, the ``<stem>.png`` adaptation curve and ``eval/*`` scalars."""
    run_dir = Path(run_dir)
    path = run_dir / f"{stem}.json"
    write_json(path, {"iteration": step, **result.to_json()})
    mean, ci = result.overall()
    plot_adaptation({f"{result.algo} (lr {result.inner_lr:g})": (mean, ci)},
                    run_dir / f"{stem}.png", ylabel="average return",
                    title=f"{result.env}: {len(result.tasks)} held-out tasks x "
                          f"{len(result.seeds)} seeds")
    if logger is not None:
        logger.record_dict(result.scalars())
        logger.dump(step)
    return path


def format_table(result: EvalResult) -> str:
    """A Markdown table of the overall mean +- 95% CI per inner step."""
    mean, ci = result.overall()
    rows = [f"| {k} | {m:.2f} +- {c:.2f} |" for k, (m, c) in enumerate(zip(mean, ci,
                                                                           strict=True))]
    return "\n".join(["| inner steps | return (mean +- 95% CI) |", "|---|---|", *rows])


# --------------------------------------------------------------------------------------------
# metarl evaluate RUN_DIR [--tasks FILE] [--inner-steps K] [--seeds S]
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a run's adaptation on held-out tasks (writes eval.json, eval.png, TB scalars)."""

    run_dir: tyro.conf.Positional[str]
    """The run folder (its latest checkpoint is evaluated)."""
    tasks: str | None = None
    """JSON task file (metarl.envs.core.tasks_to_json format); None: the test split."""
    num_tasks: int | None = None
    """Held-out tasks from the test split (without --tasks); None: the run's eval_tasks."""
    inner_steps: int | None = None
    """Inner steps K (returns after 0..K); None: the run's eval_inner_steps."""
    inner_lr: float | None = None
    """Evaluation inner lr (any finite sign); None: the run's eval_inner_lr."""
    seeds: int | None = None
    """Number of evaluation seeds; None: the run's eval_seeds."""
    episodes_per_task: int | None = None
    """Episodes per task per step; None: the run's episodes_per_task."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    out: str = "eval"
    """Stem of the outputs in the run folder: <out>.json and <out>.png."""

    def __post_init__(self) -> None:
        _check_eval_run_dir(self.run_dir)
        for name in ("num_tasks", "seeds", "episodes_per_task"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be None or an int >= 1, got {value}")
        if self.inner_steps is not None and self.inner_steps < 0:
            raise ValueError(f"inner_steps must be None or an int >= 0, got {self.inner_steps}")
        if self.inner_lr is not None and not math.isfinite(self.inner_lr):
            raise ValueError(f"inner_lr must be None or a finite number, got {self.inner_lr}")
        if not self.out or "/" in self.out:
            raise ValueError(f"out must be a non-empty file stem without '/', got {self.out!r}")
        resolve_device(self.device)
        self.task_list()  # parses and range-checks the file before any work

    def task_list(self) -> list[Any] | None:
        """The tasks of ``--tasks`` (validated), or None for the test split."""
        if self.tasks is None:
            return None
        from metarl.envs.core import tasks_from_json

        if not Path(self.tasks).is_file():
            raise ValueError(f"tasks must be a JSON task file, got {self.tasks!r} (not found)")
        try:
            tasks = tasks_from_json(self.tasks)
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"tasks: {self.tasks!r} is not a valid task file: {err}") from err
        if not tasks:
            raise ValueError(f"tasks must hold at least one task, got an empty list in "
                             f"{self.tasks!r}")
        _check_task_types(tasks, load_config(self.run_dir), self.tasks)
        return tasks


def _check_task_types(tasks: Sequence[Any], cfg: TrainConfig, path: str) -> None:
    expected = type(held_out_tasks(cfg, 1)[0])
    for task in tasks:
        if type(task) is not expected:
            raise ValueError(f"tasks in {path!r} must be {expected.__name__} tasks (the run's "
                             f"distribution {cfg.env}), got a {type(task).__name__}")


def _check_eval_run_dir(path: str) -> None:
    check_run_dir("run_dir", path)
    load_config(path)  # raises for a run of another kind


def load_learner(run_dir: str | Path, device: str) -> tuple[Any, TrainConfig, int]:
    """The learner of ``run_dir``'s latest checkpoint, the run's config and the iteration."""
    from metarl.utils import latest_checkpoint, load_checkpoint

    cfg = load_config(run_dir)
    cfg = TrainConfig(**{**_fields(cfg), "device": device, "resume": None})
    path = latest_checkpoint(run_dir)
    assert path is not None
    state = load_checkpoint(path)
    probe = make_env(cfg, 1, None)
    try:
        learner = build_learner(cfg, probe)
    finally:
        probe.close()
    learner.load_state_dict(state["learner"])
    return learner, cfg, int(state["iteration"])


def _fields(cfg: TrainConfig) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}


def main(cfg: EvalConfig) -> Path:
    """Evaluate ``cfg.run_dir`` and write ``<out>.json``, ``<out>.png`` and TB scalars there."""
    learner, run_cfg, iteration = load_learner(cfg.run_dir, cfg.device)
    hp = run_cfg.hp
    tasks = cfg.task_list() or held_out_tasks(run_cfg, cfg.num_tasks or hp.eval_tasks)
    seeds = [EVAL_SEED_BASE + s for s in range(cfg.seeds or hp.eval_seeds)]
    inner_lr = hp.eval_inner_lr if cfg.inner_lr is None else cfg.inner_lr
    inner_steps = hp.eval_inner_steps if cfg.inner_steps is None else cfg.inner_steps
    result = evaluate(learner, run_cfg, tasks, inner_steps=inner_steps, inner_lr=inner_lr,
                      seeds=seeds, episodes_per_task=cfg.episodes_per_task or
                      hp.episodes_per_task, device=cfg.device)
    logger = Logger(cfg.run_dir, console=False)
    try:
        path = write_eval(result, cfg.run_dir, logger=logger, step=iteration, stem=cfg.out)
    finally:
        logger.close()
    print(f"{run_cfg.env} {run_cfg.algo}, iteration {iteration}: {len(tasks)} tasks x "
          f"{len(seeds)} seeds, inner lr {inner_lr:g}\n{format_table(result)}\nwrote {path}")
    return path
