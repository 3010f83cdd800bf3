"""The meta-RL results table at paper scale: a resumable grid of ``metarl train`` runs.

Grid: algorithm (MAML, ANIL, first-order MAML, and the PPO baselines of
:mod:`metarl.rl.baselines_sb3`) x task distribution (HalfCheetahVel, HalfCheetahDir, AntVel,
AntDir, Navigation2D) x training seed (0, 1, 2), at one preset (``paper``: Finn et al.'s
setting, 500 iterations). Each cell is one run folder under ``<run-root>/<preset>/``; the
table pools a row's finished seeds: held-out returns after 0..3 inner steps, mean +- 95% CI
over training seeds x evaluation seeds x held-out test tasks (each run's ``eval.json``), the
training wall-clock and env steps per run, and beside them the published figures (Finn et al.,
2017, Table/Fig. 5; Raghu et al., 2020, Table 3).

Resumable: a cell whose run finished is read (never rerun); a cell whose run folder has a
checkpoint short of the preset's iterations is continued with ``metarl train --resume``;
a cell with no run is started, unless ``--no-run`` or ``--max-runs`` says otherwise, and then
the table says "not run". Rows already finished in ``<out>.json`` are kept when their run
folders are not on this machine (a table filled on several machines). Learning curves
(held-out return vs iteration, from each run's periodic ``eval/return_step{k}`` TensorBoard
scalars) go to ``<out>_<env>.png``, one figure per distribution.

    nice python scripts/rl_results.py --envs Navigation2D --algos anil --seeds 0 --threads 1
    python scripts/rl_results.py --no-run                   # the table of what exists
    python scripts/rl_results.py --device cuda              # a GPU session fills the grid
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import tyro

from metarl.logging import read_scalars, write_json
from metarl.rl.presets import PRESET_NAMES
from metarl.runs import latest_checkpoint, load_checkpoint
from metarl.utils import machine_description, mean_ci95

ENVS = ("HalfCheetahVel", "HalfCheetahDir", "AntVel", "AntDir", "Navigation2D")
META_ALGOS = ("maml", "anil", "fomaml")
BASELINES = ("ppo-finetune", "ppo-oracle")  # metarl.rl.baselines_sb3
ALGOS = META_ALGOS + BASELINES
SEEDS = (0, 1, 2)
# Average return after one inner step. Finn et al. (2017), Fig. 5 (horizon 200; 2-D
# navigation horizon 100), MAML-TRPO; Raghu et al. (2020), Table 3, MAML / ANIL.
FINN = {"HalfCheetahVel": -78.6, "HalfCheetahDir": 293.2, "AntVel": 96.7, "AntDir": 499.1,
        "Navigation2D": -11.7}
RAGHU = {("HalfCheetahDir", "maml"): 170.4, ("HalfCheetahDir", "anil"): 363.2,
         ("HalfCheetahVel", "maml"): -139.0, ("HalfCheetahVel", "anil"): -120.9,
         ("Navigation2D", "maml"): -20.3, ("Navigation2D", "anil"): -20.1}
# The horizons of those figures: a row of another horizon is not compared with them.
PUBLISHED_HORIZON = {env: 100 if env == "Navigation2D" else 200 for env in ENVS}
# Options that shrink every run (tests, quick checks); None keeps the preset's value.
OVERRIDES = ("iterations", "meta_batch", "episodes_per_task", "horizon", "eval_every",
             "eval_tasks", "eval_seeds", "eval_inner_steps")

OptInt = Annotated[int | None, tyro.conf.arg(metavar="INT")]


@dataclass(frozen=True)
class ResultsConfig:
    """Fill (or just print) the paper-scale meta-RL results table."""

    envs: tuple[str, ...] = ENVS
    """Task distributions (rows) to include."""
    algos: tuple[str, ...] = ALGOS
    """Algorithms to include: maml, anil, fomaml, ppo-finetune, ppo-oracle."""
    seeds: tuple[int, ...] = SEEDS
    """Training seeds per row."""
    preset: str = "paper"
    """Hyper-parameter preset of every run (paper or fast)."""
    run: bool = True
    """Start or resume the selected cells that are not finished (--no-run: table only)."""
    max_runs: OptInt = None
    """Start or resume at most this many cells in this call (the rest say "not run")."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto, for the runs this call trains."""
    threads: int = 1
    """Torch CPU threads per run (1 is fastest on a shared machine)."""
    run_root: str = "runs/results"
    """Folder holding the run folders (under <run-root>/<preset>/)."""
    out: str = "docs/rl_results"
    """Stem of the outputs: <out>.md, <out>.json and <out>_<env>.png."""
    progress: bool = False
    """Show each run's progress bar (else a line per iteration)."""
    iterations: OptInt = None
    """Override the preset's iterations (quick checks; the table shows what ran)."""
    meta_batch: OptInt = None
    """Override the preset's meta-batch."""
    episodes_per_task: OptInt = None
    """Override the preset's episodes per task."""
    horizon: OptInt = None
    """Override the preset's horizon."""
    eval_every: OptInt = None
    """Override the preset's periodic-evaluation interval (the learning curves)."""
    eval_tasks: OptInt = None
    """Override the preset's held-out tasks."""
    eval_seeds: OptInt = None
    """Override the preset's evaluation seeds."""
    eval_inner_steps: OptInt = None
    """Override the preset's evaluation inner steps (paper: 3)."""
    baseline_steps: OptInt = None
    """PPO baselines' pre-training env steps (default: the meta-learners' training env steps;
    a finished baseline run is read whatever its budget: the env-steps column shows it)."""

    def __post_init__(self) -> None:
        for name, values, allowed in (("envs", self.envs, ENVS), ("algos", self.algos, ALGOS)):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"{name} must name one or more of {allowed}, got {values}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be one or more ints >= 0, got {self.seeds}")
        if self.preset not in PRESET_NAMES:
            raise ValueError(f"preset must be one of {PRESET_NAMES}, got {self.preset!r}")
        if self.max_runs is not None and self.max_runs < 0:
            raise ValueError(f"max_runs must be None or an int >= 0, got {self.max_runs}")
        self.train_config("Navigation2D", "maml", 0)  # TrainConfig validates the overrides

    @property
    def overrides(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in OVERRIDES if getattr(self, k) is not None}

    def train_config(self, env: str, algo: str, seed: int, **kw: Any) -> Any:
        """The ``TrainConfig`` of one cell (a meta-algorithm; baselines reuse its preset)."""
        from metarl.rl.config import TrainConfig

        algo = algo if algo in META_ALGOS else "maml"
        return TrainConfig(env=env, algo=algo, preset=self.preset, seed=seed,
                           device=self.device, threads=self.threads,
                           run_root=str(Path(self.run_root) / self.preset),
                           progress=self.progress, **{**self.overrides, **kw})



# --------------------------------------------------------------------------------------------
# Cells: find a run folder, decide its state, run or resume it, summarise it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    env: str
    algo: str
    seed: int

    preset: str

    @property
    def key(self) -> str:
        return f"{self.preset}/{self.env}/{self.algo}/{self.seed}"


def same_hp(saved: dict[str, Any], want: dict[str, Any]) -> bool:
    """Whether two resolved hyper-parameter dicts agree (iterations aside: a run resumes to
    more of them)."""
    return ({k: v for k, v in saved.items() if k != "iterations"} ==
            {k: v for k, v in want.items() if k != "iterations"})


def _same_hp(run_dir: Path, want: dict[str, Any]) -> bool:
    saved = json.loads((run_dir / "config.json").read_text())
    return same_hp(saved.get("resolved", {}), want)


def wanted_hp(cfg: ResultsConfig, cell: Cell) -> dict[str, Any]:
    """The resolved hyper-parameters of ``cell`` as ``config.json`` stores them."""
    hp = cfg.train_config(cell.env, cell.algo, cell.seed).hp
    out: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(hp)))
    return out


def find_run(cfg: ResultsConfig, cell: Cell) -> Path | None:
    """The newest run folder of ``cell`` trained with this call's hyper-parameters."""
    root = Path(cfg.run_root) / cfg.preset
    want = wanted_hp(cfg, cell)
    found = [d for d in sorted(root.glob(f"{cell.env}__{cell.algo}__{cell.seed}__*"))
             if (d / "config.json").is_file() and _same_hp(d, want)]
    return found[-1] if found else None


def cell_state(run_dir: Path | None, iterations: int) -> tuple[str, int]:
    """``("done" | "partial" | "none", iteration reached)`` of a cell's run folder (a
    baseline's is done once it has its ``eval.json``: it has no checkpoints to resume)."""
    if run_dir is None:
        return "none", 0
    ev = run_dir / "eval.json"
    baseline = json.loads((run_dir / "config.json").read_text()).get("kind") == "sb3-baseline"
    if ev.is_file() and (baseline or json.loads(ev.read_text())["iteration"] >= iterations):
        return "done", iterations
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        return "none", 0
    return "partial", int(ckpt.stem.split("_")[-1])


def train_cell(cfg: ResultsConfig, cell: Cell, run_dir: Path | None) -> Path:
    """Start ``cell``'s run, or resume ``run_dir`` to the preset's iterations."""
    if cell.algo in BASELINES:
        from metarl.rl.baselines_sb3 import baseline_config
        from metarl.rl.baselines_sb3 import main as run_baseline

        return run_baseline(baseline_config(cfg.train_config(cell.env, cell.algo, cell.seed),
                                            cell.algo.removeprefix("ppo-"),
                                            pretrain_steps=cfg.baseline_steps))
    from metarl.rl.train import main as train

    target = cfg.train_config(cell.env, cell.algo, cell.seed).hp.iterations
    if run_dir is not None:
        return train(cfg.train_config(cell.env, cell.algo, cell.seed, resume=str(run_dir),
                                      iterations=target))
    return train(cfg.train_config(cell.env, cell.algo, cell.seed))


def learning_curve(run_dir: Path, steps: int) -> dict[str, list[float]]:
    """Held-out return vs iteration: ``{"iteration": [...], "step0": [...], ...}`` from the
    run's periodic and final ``eval/return_step{k}`` TensorBoard scalars."""
    curves = {k: read_scalars(run_dir, f"eval/return_step{k}") for k in range(steps + 1)}
    iters = sorted(set.intersection(*(set(c) for c in curves.values())))
    out: dict[str, list[float]] = {"iteration": [float(i) for i in iters]}
    out.update({f"step{k}": [curves[k][i] for i in iters] for k in curves})
    return out


def summarise(cell: Cell, run_dir: Path, where: str) -> dict[str, Any]:
    """A finished cell: its ``eval.json`` returns, curve, env steps and wall-clock."""
    ev = json.loads((run_dir / "eval.json").read_text())
    ckpt = latest_checkpoint(run_dir)
    state = load_checkpoint(ckpt) if ckpt is not None else {}
    saved = json.loads((run_dir / "config.json").read_text())
    mean, ci = ev["overall"]["mean"], ev["overall"]["ci95"]
    return {"key": cell.key, "env": cell.env, "algo": cell.algo, "seed": cell.seed,
            "status": "done", "run_dir": str(run_dir), "iteration": ev["iteration"],
            "hp": saved.get("resolved", {}), "returns": ev["returns"], "mean": mean,
            "ci95": ci, "success": ev.get("overall_success"),
            "env_steps": int(state.get("env_steps", ev.get("env_steps", 0))),
            "wall_s": float(state.get("wall_s", ev.get("wall_s", 0.0))),
            "curve": (learning_curve(run_dir, len(mean) - 1) if cell.algo in META_ALGOS
                      else {"iteration": []}), "machine": where,
            "num_tasks": ev["num_tasks"], "eval_seeds": len(ev["seeds"])}


def collect_cell(cfg: ResultsConfig, cell: Cell, previous: dict[str, Any], budget: list[int],
                 where: str) -> dict[str, Any]:
    """The cell's row: read when done, else trained (budget allowing), else "not run"."""
    target = cfg.train_config(cell.env, cell.algo, cell.seed).hp.iterations
    run_dir = find_run(cfg, cell)
    status, reached = cell_state(run_dir, target)
    if status != "done" and previous.get("status") == "done" and \
            previous["iteration"] >= target and same_hp(previous["hp"], wanted_hp(cfg, cell)):
        return previous  # finished on another machine; its run folder is not here
    if status != "done" and cfg.run and budget[0] != 0:
        budget[0] -= 1
        print(f"== {cell.key}: {'resume ' + str(run_dir) if status == 'partial' else 'start'}"
              f" (target {target} iterations)", flush=True)
        run_dir = train_cell(cfg, cell, run_dir if status == "partial" else None)
        status, reached = cell_state(run_dir, target)
    if status == "done" and run_dir is not None:
        return summarise(cell, run_dir, where)
    steps = cfg.train_config(cell.env, cell.algo, cell.seed).hp.eval_inner_steps
    curve = (learning_curve(run_dir, steps) if run_dir is not None and reached > 0
             and cell.algo in META_ALGOS else {"iteration": []})
    return {"key": cell.key, "env": cell.env, "algo": cell.algo, "seed": cell.seed,
            "status": "not run", "iteration": reached, "target": target, "curve": curve,
            "run_dir": None if run_dir is None else str(run_dir), "machine": where}


# --------------------------------------------------------------------------------------------
# The table and the figures
# --------------------------------------------------------------------------------------------


def pooled(cells: Sequence[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Mean and 95% CI per inner step over every (training seed, eval seed, task) return."""
    arrays = [np.asarray(c["returns"], dtype=np.float64) for c in cells]
    steps = min(a.shape[1] for a in arrays)
    stats = [mean_ci95(np.concatenate([a[:, k, :].ravel() for a in arrays]))
             for k in range(steps)]
    return [m for m, _ in stats], [c for _, c in stats]


def _published(env: str, algo: str) -> tuple[float | None, float | None]:
    finn = FINN.get(env) if algo == "maml" else None
    return finn, RAGHU.get((env, algo))


def _reaches(mean: float, ci: float, figure: float | None, comparable: bool) -> str:
    if figure is None:
        return "-"
    if not comparable:
        return f"{figure:g} (other horizon)"
    return f"{figure:g} ({'yes' if mean + ci >= figure else 'no'})"


def table_row(env: str, algo: str, cells: Sequence[dict[str, Any]], steps: int,
              total: int) -> str:
    """One Markdown line: pooled returns after 0..K steps or "not run", and the figures
    (``total``: the seeds selected, some of whose cells may not be reached yet)."""
    done = [c for c in cells if c["status"] == "done"]
    finn, raghu = _published(env, algo)
    seeds = f"{len(done)}/{total}"
    if not done:
        partial = [f"seed {c['seed']}: {c['iteration']}/{c['target']}" for c in cells
                   if c.get("iteration")]
        note = "not run" + (f" (checkpointed {', '.join(partial)})" if partial else "")
        blanks = " | ".join([note] + ["-"] * steps)
        return f"| {env} | {algo} | {seeds} | - | {blanks} | {_fig(finn)} | {_fig(raghu)} | - | - |"
    mean, ci = pooled(done)
    cols = [f"{m:.1f} +- {c:.1f}" for m, c in zip(mean, ci, strict=True)]
    cols += ["-"] * (steps + 1 - len(cols))
    k1 = 1 if len(mean) > 1 else 0
    wall = np.mean([c["wall_s"] for c in done]) / 60
    env_steps = np.mean([c["env_steps"] for c in done])
    iters = done[0]["iteration"] if algo in META_ALGOS else "- (PPO)"
    same = done[0]["hp"].get("horizon") == PUBLISHED_HORIZON[env]
    return (f"| {env} | {algo} | {seeds} | {iters} | {' | '.join(cols)} | "
            f"{_reaches(mean[k1], ci[k1], finn, same)} | "
            f"{_reaches(mean[k1], ci[k1], raghu, same)} | "
            f"{env_steps:,.0f} | {wall:.1f} min |")


def _fig(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def markdown(cfg: ResultsConfig, rows: Sequence[dict[str, Any]], where: str) -> str:
    """The results table of the selected grid, one line per (env, algo)."""
    steps = max([len(r["mean"]) - 1 for r in rows if r["status"] == "done"] or
                [cfg.train_config("Navigation2D", "maml", 0).hp.eval_inner_steps])
    ret = " | ".join(f"return step {k}" for k in range(steps + 1))
    head = [f"| env | algo | seeds done | iterations | {ret} | Finn et al. 2017 (reached?) | "
            "Raghu et al. 2020 (reached?) | env steps per run | wall-clock per run |",
            "|" + "---|" * (steps + 9)]
    body = [table_row(env, algo, [r for r in rows if r["env"] == env and r["algo"] == algo],
                      steps, len(cfg.seeds)) for env in cfg.envs for algo in cfg.algos]
    machines = sorted({r["machine"] for r in rows if r["status"] == "done"})
    shrunk = f" with overrides {cfg.overrides}" if cfg.overrides else ""
    return "\n".join([*head, *body]) + (
        f"\n\nPreset: {cfg.preset}{shrunk}."
        " Returns: mean +- 95% CI over training seeds x evaluation seeds x held-out test tasks"
        " (each run's eval.json), after 0..K inner steps. \"reached?\": yes when the published"
        " figure (return after one step) is at most our mean + CI, compared only at the"
        " papers' horizon (200; Navigation2D 100). Env steps and wall-clock:"
        " training only (the checkpoint's counters), mean over finished seeds.\n"
        f"Runs finished on: {'; '.join(machines) or '-'}. Table written on: {where}.\n")


def plot_curves(cfg: ResultsConfig, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """``<out>_<env>.png``: held-out return after 0 and 1 steps vs iteration, per algo."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for env in cfg.envs:
        done = [r for r in rows if r["env"] == env and r["status"] == "done"]
        partial = [r for r in rows if r["env"] == env and r["status"] != "done" and
                   r.get("curve", {}).get("iteration")]
        if not done and not partial:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in partial:  # unfinished runs: their periodic evaluations so far
            for k, style in ((0, ":"), (1, "--")):
                if f"step{k}" in r["curve"]:
                    ax.plot(r["curve"]["iteration"], r["curve"][f"step{k}"], style, marker="x",
                            label=f"{r['algo']} seed {r['seed']}, {k} step{'s' * (k != 1)} "
                                  f"(unfinished: {r['iteration']}/{r['target']} it.)")
        for algo in cfg.algos:
            runs = [r for r in done if r["algo"] == algo]
            if algo in BASELINES and runs:  # no iterations: its final return, as a level
                mean = pooled(runs)[0]
                ax.axhline(mean[min(1, len(mean) - 1)], ls="-.", lw=1,
                           label=f"{algo}, after 1 update ({len(runs)} seeds)",
                           color=f"C{ALGOS.index(algo)}")
            elif runs:
                _plot_algo(ax, algo, runs)
        if cfg.train_config(env, "maml", 0).hp.horizon == PUBLISHED_HORIZON[env]:
            ax.axhline(FINN[env], color="k", ls=":", lw=1, label="Finn et al. 2017, 1 step")
        ax.set(xlabel="meta-iteration", ylabel="held-out average return",
               title=f"{env} ({cfg.preset} preset): held-out return vs iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(f"{cfg.out}_{env}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def _plot_algo(ax: Any, algo: str, runs: Sequence[dict[str, Any]]) -> None:
    if not runs:
        return
    iters = sorted(set.intersection(*(set(r["curve"]["iteration"]) for r in runs)))
    if not iters:
        return
    for k, style in ((0, "--"), (1, "-")):
        if f"step{k}" not in runs[0]["curve"]:
            continue
        ys = np.array([[dict(zip(r["curve"]["iteration"], r["curve"][f"step{k}"],
                                 strict=True))[i] for i in iters] for r in runs])
        label = f"{algo}, {k} step{'s' if k != 1 else ''} (mean of {len(runs)} seeds)"
        line = ax.plot(iters, ys.mean(axis=0), style, marker=".", label=label)[0]
        if len(runs) > 1:
            ax.fill_between(iters, ys.min(axis=0), ys.max(axis=0), alpha=0.15,
                            color=line.get_color())


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def load_previous(out: str) -> dict[str, dict[str, Any]]:
    """Rows of an earlier ``<out>.json`` written by this script, by cell key."""
    path = Path(out).with_suffix(".json")
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {r["key"]: r for r in data.get("cells", []) if "key" in r}


def main(cfg: ResultsConfig) -> list[dict[str, Any]]:
    where = machine_description()
    previous = load_previous(cfg.out)
    budget = [-1 if cfg.max_runs is None else cfg.max_runs]
    cells = [Cell(env, algo, seed, cfg.preset) for env in cfg.envs for algo in cfg.algos
             for seed in cfg.seeds]
    rows: list[dict[str, Any]] = []
    for cell in cells:  # written after every cell: an interrupted sweep keeps what finished
        rows.append(collect_cell(cfg, cell, previous.get(cell.key, {}), budget, where))
        write_results(cfg, rows, previous, where)
    plot_curves(cfg, rows)
    print(markdown(cfg, rows, where))
    return rows


def write_results(cfg: ResultsConfig, rows: Sequence[dict[str, Any]],
                  previous: dict[str, dict[str, Any]], where: str) -> None:
    """``<out>.md`` (the table) and ``<out>.json`` (every cell, also earlier ones outside
    this call's selection, the machine and the config)."""
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = {r["key"] for r in rows}
    kept = [r for k, r in previous.items() if k not in keys]
    out.with_suffix(".md").write_text(f"# Meta-RL results ({cfg.preset} preset)\n\n"
                                      + markdown(cfg, rows, where))
    write_json(out.with_suffix(".json"), {
        "machine": where, "written": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "config": dataclasses.asdict(cfg), "finn_2017": FINN,
        "raghu_2020": {f"{e}/{a}": v for (e, a), v in RAGHU.items()},
        "cells": [*kept, *rows]})


if __name__ == "__main__":
    main(tyro.cli(ResultsConfig))
    sys.exit(0)
