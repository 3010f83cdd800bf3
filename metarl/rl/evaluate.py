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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from metarl.logging import Logger, write_json
from metarl.rl.config import TrainConfig
from metarl.rl.factories import make_env, make_sampler
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.presets import is_metaworld
from metarl.utils import EVAL_SEED_BASE, mean_ci95, plot_adaptation, rng_state, set_rng_state


@dataclass(frozen=True)
class EvalResult:
    """One evaluation: ``returns[s, k, t]`` is seed ``s``, inner step ``k``, task ``t``;
    ``success[s, k, t]`` the success rate there, for envs reporting ``info["success"]``
    (Meta-World), else None."""

    env: str
    algo: str
    tasks: list[Any]
    seeds: tuple[int, ...]
    inner_lr: float | None  # None: the learner's training rule (learned rates included)
    episodes_per_task: int
    returns: np.ndarray
    iteration: int = 0
    success: np.ndarray | None = None

    @property
    def lr_label(self) -> str:
        """The evaluation inner lr, or ``training rule``."""
        return "training rule" if self.inner_lr is None else f"{self.inner_lr:g}"

    @property
    def inner_steps(self) -> int:
        return int(self.returns.shape[1]) - 1

    def overall(self) -> tuple[list[float], list[float]]:
        """Per inner step: mean and 95% CI half-width over every (seed, task) return."""
        stats = [mean_ci95(self.returns[:, k, :]) for k in range(self.inner_steps + 1)]
        return [m for m, _ in stats], [c for _, c in stats]

    def overall_success(self) -> tuple[list[float], list[float]] | None:
        """Per inner step: mean success rate and its 95% CI (None without success)."""
        if self.success is None:
            return None
        stats = [mean_ci95(self.success[:, k, :]) for k in range(self.inner_steps + 1)]
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
        success = self.overall_success()
        if success is not None:
            logs.update({f"eval/success_step{k}": m for k, m in enumerate(success[0])})
            logs.update({f"eval/success_ci95_step{k}": c for k, c in enumerate(success[1])})
        return logs

    def to_json(self) -> dict[str, Any]:
        mean, ci = self.overall()
        success = self.overall_success()
        extra: dict[str, Any] = {} if success is None else {
            "overall_success": {"mean": success[0], "ci95": success[1]},
            "success": self.success.tolist() if self.success is not None else None}
        return {
            "env": self.env, "algo": self.algo, "iteration": self.iteration,
            "inner_steps": self.inner_steps,
            "inner_lr": "training rule" if self.inner_lr is None else self.inner_lr,
            "episodes_per_task": self.episodes_per_task,
            "seeds": list(self.seeds), "num_tasks": len(self.tasks),
            "overall": {"mean": mean, "ci95": ci},
            "per_seed_mean": self.returns.mean(axis=2).tolist(),
            "per_task": [{"task": t.to_dict(), "mean": m, "ci95": c}
                         for t, (m, c) in zip(self.tasks, self.per_task(), strict=True)],
            "returns": self.returns.tolist(),
            **extra,
        }


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore every global RNG afterwards: evaluating never changes the training trajectory."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def held_out_tasks(cfg: TrainConfig, n: int) -> list[Any]:
    """The first ``n`` tasks of the distribution's fixed test split (Meta-World's test goals
    or classes are drawn from a generator: a fixed seed makes them the same every time)."""
    fixed = is_metaworld(cfg.env)
    env = make_env(cfg, 1, EVAL_SEED_BASE if fixed else None)
    try:
        if fixed:
            env.reset(seed=EVAL_SEED_BASE)
        return list(env.sample_tasks(n, "test"))
    finally:
        env.close()


def evaluate(learner: TrpoMetaLearner, cfg: TrainConfig, tasks: Sequence[Any], *,
             inner_steps: int, inner_lr: float | None, seeds: Sequence[int],
             episodes_per_task: int, device: str = "cpu", iteration: int = 0) -> EvalResult:
    """Adapt to every task with ``inner_steps`` steps of lr ``inner_lr``, once per seed.

    Args:
        learner: The learner (its ``adapt_and_evaluate`` returns ``[K + 1, n_tasks]``).
        cfg: The run's config (distribution, horizon, preset, algo).
        tasks: Held-out tasks.
        inner_steps: K; returns are reported after 0..K steps.
        inner_lr: The evaluation inner lr (any sign); None: the learner's ``eval_rule``.
        seeds: One evaluation per seed (sampling noise and env resets).
        episodes_per_task: Episodes per task per step.
        device: Where the policy runs.
        iteration: The training iteration evaluated (for the outputs).
    """
    env = make_env(cfg, len(tasks) * episodes_per_task, int(seeds[0]))
    sampler = make_sampler(env, episodes_per_task, device)
    try:
        with preserved_rng():
            runs = [learner.adaptation(sampler, list(tasks), inner_steps, inner_lr, int(s))
                    for s in seeds]
    finally:
        env.close()
    lr = learner.eval_inner_lr if inner_lr is None else inner_lr
    returns = np.stack([np.asarray(r.returns, dtype=np.float64) for r in runs])
    success = (None if any(r.success is None for r in runs) else
               np.stack([np.asarray(r.success, dtype=np.float64) for r in runs]))
    return EvalResult(cfg.env, cfg.algo, list(tasks), tuple(int(s) for s in seeds), lr,
                      episodes_per_task, returns, iteration, success)


def evaluate_run(cfg: TrainConfig, learner: TrpoMetaLearner, iteration: int = 0) -> EvalResult:
    """The run's standard held-out evaluation (its ``eval_*`` settings, the test split)."""
    hp = cfg.hp
    seeds = [EVAL_SEED_BASE + s for s in range(hp.eval_seeds)]
    return evaluate(learner, cfg, held_out_tasks(cfg, hp.eval_tasks),
                    inner_steps=hp.eval_inner_steps, inner_lr=hp.eval_inner_lr, seeds=seeds,
                    episodes_per_task=hp.episodes_per_task, device=cfg.device,
                    iteration=iteration)


def write_eval(result: EvalResult, folder: str | Path, *, logger: Logger | None = None,
               step: int = 0, stem: str = "eval") -> Path:
    """Write ``<stem>.json``, the ``<stem>.png`` adaptation curve and ``eval/*`` scalars."""
    path = Path(folder) / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, result.to_json())
    mean, ci = result.overall()
    plot_adaptation({f"{result.algo} (inner lr {result.lr_label})": (mean, ci)},
                    path.with_suffix(".png"), ylabel="average return",
                    title=f"{result.env}, iteration {result.iteration}: "
                          f"{len(result.tasks)} held-out tasks x {len(result.seeds)} seeds")
    if logger is not None:
        logger.record_dict(result.scalars())
        logger.dump(step)
    return path


def format_table(result: EvalResult) -> str:
    """A Markdown table of the overall mean +- 95% CI per inner step."""
    mean, ci = result.overall()
    rows = [f"| {k} | {m:.2f} +- {c:.2f} |" for k, (m, c) in enumerate(zip(mean, ci,
                                                                           strict=True))]
    success = result.overall_success()
    if success is None:
        return "\n".join(["| inner steps | return (mean +- 95% CI) |", "|---|---|", *rows])
    rows = [f"{r} {m:.2f} +- {c:.2f} |" for r, m, c in zip(rows, *success, strict=True)]
    return "\n".join(["| inner steps | return (mean +- 95% CI) | success rate (mean +- 95% CI) |",
                      "|---|---|---|", *rows])


