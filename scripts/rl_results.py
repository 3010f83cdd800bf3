"""Run the README's meta-RL results and print them as a Markdown table.

Rows: Navigation2D MAML and ANIL (target: post-adaptation return >= -20.3, the MAML figure of
Raghu et al., 2020, "Rapid Learning or Feature Reuse?", Table 3), and HalfCheetahVel /
HalfCheetahDir MAML and ANIL with the fast preset on CPU. Each row is one ``metarl train`` run
ending with the held-out evaluation of its ``eval.json``: returns before adaptation (step 0)
and after one inner step, mean +- 95% CI over held-out tasks and seeds, with the env steps
and wall-clock the run took and the machine it ran on. Writes ``docs/rl_results.md`` and
``docs/rl_results.json``.

    nice python scripts/rl_results.py                    # every row
    nice python scripts/rl_results.py --only nav-maml nav-anil
    nice python scripts/rl_results.py --only cheetah-dir-maml-paper100 --merge   # one row
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from metarl.logging import write_json
from metarl.rl.train import TrainConfig
from metarl.rl.train import main as train
from metarl.runs import latest_checkpoint, load_checkpoint

NAV_TARGET = -20.3  # MAML on 2D navigation, Raghu et al. (2020), Table 3
# Average post-adaptation return reported by Raghu et al. (2020), MAML / ANIL, paper setting
# (horizon 200 for HalfCheetah, 100 for 2D navigation), shown beside each row.
PUBLISHED = {("Navigation2D", "maml"): -20.3, ("Navigation2D", "anil"): -20.1,
             ("HalfCheetahVel", "maml"): -139.0, ("HalfCheetahVel", "anil"): -120.9,
             ("HalfCheetahDir", "maml"): 170.4, ("HalfCheetahDir", "anil"): 363.2}
# Navigation2D needs more iterations than the default agent's to reach the paper's figure.
NAV_ITERATIONS = 200

ROWS: dict[str, dict[str, Any]] = {
    "nav-maml": dict(env="Navigation2D", algo="maml", preset="fast", iterations=NAV_ITERATIONS),
    "nav-anil": dict(env="Navigation2D", algo="anil", preset="fast", iterations=NAV_ITERATIONS),
    "cheetah-vel-maml": dict(env="HalfCheetahVel", algo="maml", preset="fast"),
    "cheetah-vel-anil": dict(env="HalfCheetahVel", algo="anil", preset="fast"),
    "cheetah-dir-maml": dict(env="HalfCheetahDir", algo="maml", preset="fast"),
    "cheetah-dir-anil": dict(env="HalfCheetahDir", algo="anil", preset="fast"),
    # The paper preset (40 tasks x 20 episodes x 200 steps) for the first 100 of its 500
    # iterations: what a CPU-only machine gets in about half an hour.
    "cheetah-dir-maml-paper100": dict(env="HalfCheetahDir", algo="maml", preset="paper",
                                      iterations=100),
}


@dataclass(frozen=True)
class ResultsConfig:
    """Run the README's meta-RL results and write docs/rl_results.md and .json."""

    only: tuple[str, ...] = tuple(ROWS)
    """Rows to run (nav-maml, nav-anil, cheetah-vel-maml, cheetah-vel-anil, cheetah-dir-*)."""
    seed: int = 0
    """Training seed of every run."""
    iterations: int | None = None
    """Override every row's iterations (a quick check); None: each row's own."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    run_root: str = "runs/results"
    """Folder holding the runs."""
    out: str = "docs/rl_results"
    """Stem of the outputs: <out>.md and <out>.json."""
    progress: bool = True
    """Show each run's progress bar."""
    merge: bool = False
    """Keep the rows already in <out>.json that this call does not rerun."""

    def __post_init__(self) -> None:
        unknown = [r for r in self.only if r not in ROWS]
        if unknown or not self.only:
            raise ValueError(f"only must name rows among {tuple(ROWS)}, got {self.only}")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError(f"iterations must be None or an int >= 1, got {self.iterations}")


def machine() -> str:
    """CPU model, cores and torch version (plus the GPU when one ran the learner)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {cores} cores{gpu}, torch {torch.__version__}"


def run_row(name: str, cfg: ResultsConfig) -> dict[str, Any]:
    """Train one row's run and summarise its final held-out evaluation."""
    kw = dict(ROWS[name])
    if cfg.iterations is not None:
        kw["iterations"] = cfg.iterations
    train_cfg = TrainConfig(**kw, seed=cfg.seed, device=cfg.device, run_root=cfg.run_root,
                            progress=cfg.progress)
    start = time.perf_counter()
    run_dir = train(train_cfg)
    wall = time.perf_counter() - start
    ev = json.loads((run_dir / "eval.json").read_text())
    ckpt = latest_checkpoint(run_dir)
    env_steps = int(load_checkpoint(ckpt)["env_steps"]) if ckpt is not None else 0
    mean, ci = ev["overall"]["mean"], ev["overall"]["ci95"]
    return {"row": name, "env": train_cfg.env, "algo": train_cfg.algo,
            "preset": train_cfg.preset, "iterations": train_cfg.hp.iterations,
            "return_step0": mean[0], "ci95_step0": ci[0],
            "return_step1": mean[1] if len(mean) > 1 else mean[0],
            "ci95_step1": ci[1] if len(ci) > 1 else ci[0],
            "curve": mean, "env_steps": env_steps, "wall_s": wall, "run_dir": str(run_dir),
            "eval_tasks": ev["num_tasks"], "eval_seeds": len(ev["seeds"]),
            "target": NAV_TARGET if train_cfg.env == "Navigation2D" else None,
            "published": PUBLISHED.get((train_cfg.env, train_cfg.algo)),
            "horizon": train_cfg.hp.horizon}


def _target(row: dict[str, Any]) -> str:
    if row["target"] is None:
        return "-"
    ok = row["return_step1"] >= row["target"]
    return f"{'met' if ok else 'MISSED'} (>= {row['target']})"


def _published(row: dict[str, Any]) -> str:
    return "-" if row.get("published") is None else f"{row['published']:g}"


def markdown(rows: list[dict[str, Any]], where: str) -> str:
    """The results table: return before / after one inner step, env steps, wall-clock."""
    head = ["| env | algo | preset (horizon) | iterations | return step 0 | return step 1 "
            "| Raghu et al. 2020 | target | env steps | wall-clock |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    body = [f"| {r['env']} | {r['algo']} | {r['preset']} ({r['horizon']}) | "
            f"{r['iterations']} | {r['return_step0']:.1f} +- {r['ci95_step0']:.1f} | "
            f"{r['return_step1']:.1f} +- {r['ci95_step1']:.1f} | {_published(r)} | "
            f"{_target(r)} | {r['env_steps']:,} | {r['wall_s'] / 60:.1f} min |" for r in rows]
    note = (f"\nMachine: {where}. Returns: mean +- 95% CI over held-out test-split tasks x "
            "seeds (`eval.json` of each run), after 0 and 1 inner steps.\n")
    return "\n".join([*head, *body]) + "\n" + note


def main(cfg: ResultsConfig) -> list[dict[str, Any]]:
    where = machine()
    rows: list[dict[str, Any]] = []
    previous = Path(cfg.out).with_suffix(".json")
    if cfg.merge and previous.exists():
        rows = [r for r in json.loads(previous.read_text())["rows"] if r["row"] not in cfg.only]
    for name in cfg.only:  # written after every row: an interrupted sweep keeps its rows
        rows.append(run_row(name, cfg))
        write_results(rows, where, cfg)
    print(markdown(rows, where))
    return rows


def write_results(rows: list[dict[str, Any]], where: str, cfg: ResultsConfig) -> None:
    """``<out>.md`` (the table) and ``<out>.json`` (every row, the machine, the config)."""
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("# Meta-RL results\n\n" + markdown(rows, where))
    write_json(out.with_suffix(".json"), {"machine": where, "config": dataclasses.asdict(cfg),
                                          "rows": rows})


if __name__ == "__main__":
    main(tyro.cli(ResultsConfig))
