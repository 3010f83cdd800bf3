"""Benchmark the meta-RL learner: one standard HalfCheetahVel iteration, phase by phase.

Prints a Markdown table (and with ``--json PATH`` writes the figures as JSON):

* the standard MAML-TRPO iteration of Finn et al. (2017): 40 tasks x 20 episodes x 200 steps,
  pre- and post-update (320k env steps): seconds per phase (sampling, adaptation, meta-update)
  and env-steps/s;
* the batched (``torch.func.vmap``) meta-update against the per-task loop on identical data
  (one collected meta-batch, parameters restored between calls) at 100, 1,000, 2,000 and
  4,000 samples per task, their ratio, whether both gave the same update, and which path
  ``meta_update_path="auto"`` picks;
* ANIL against MAML time per iteration (Raghu et al., 2020, report ANIL 1.7x faster);
* peak memory (process RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU).

Each figure has a CPU and a GPU column; without CUDA the GPU column reads "n/a (no GPU)".

    nice python scripts/bench_rl.py --json bench_rl.json
    python scripts/bench_rl.py --quick          # small sizes, a smoke run
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tyro

from metarl.rl.config import TrainConfig
from metarl.rl.factories import build_learner, make_env, make_sampler
from metarl.utils import seed_everything

NO_GPU = "n/a (no GPU)"
# samples per task -> (episodes per task, horizon)
SIZES = {100: (1, 100), 1_000: (10, 100), 2_000: (10, 200), 4_000: (20, 200)}


@dataclass(frozen=True)
class BenchConfig:
    """Time the standard HalfCheetahVel MAML-TRPO iteration and its parts."""

    json: str | None = None
    """Also write the figures to this JSON file."""
    env: str = "HalfCheetahVel"
    """Task distribution."""
    tasks: int = 40
    """Tasks per iteration (the standard meta-batch)."""
    quick: bool = False
    """Small sizes (4 tasks; 10, 100 and 400 samples per task): a smoke run, not a benchmark."""
    seed: int = 0
    """Seed of the policy and the sampled episodes (identical data for compared paths)."""

    def __post_init__(self) -> None:
        if self.tasks < 1:
            raise ValueError(f"tasks must be an int >= 1, got {self.tasks}")

    @property
    def sizes(self) -> dict[int, tuple[int, int]]:
        """Samples per task -> (episodes per task, horizon)."""
        if self.quick:
            return {10: (1, 10), 100: (1, 100), 400: (2, 200)}
        return SIZES

    @property
    def meta_batch(self) -> int:
        return 4 if self.quick else self.tasks


def devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@dataclass
class Setup:
    """A seeded learner, its sampler and one meta-batch of training tasks."""

    learner: Any
    sampler: Any
    tasks: list[Any]
    envs: list[Any]

    def close(self) -> None:
        for env in self.envs:
            env.close()


def setup(cfg: TrainConfig, seed: int) -> Setup:
    seed_everything(seed)
    env = make_env(cfg, cfg.num_envs, seed)
    task_env = make_env(cfg, 1, seed)
    task_env.reset(seed=seed)
    tasks = task_env.sample_tasks(cfg.hp.meta_batch, "train")
    learner = build_learner(cfg, env)
    return Setup(learner, make_sampler(env, cfg.hp.episodes_per_task, cfg.device), tasks,
                 [env, task_env])


def one_iteration(cfg: TrainConfig, seed: int) -> dict[str, float]:
    """Time ``TrpoMetaLearner.step`` after one untimed warm-up step (first-call overheads)."""
    s = setup(cfg, seed)
    s.learner.step(s.sampler, s.tasks)
    if cfg.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    logs = dict(s.learner.step(s.sampler, s.tasks))
    logs["time/iteration_s"] = time.perf_counter() - start
    s.close()
    return logs


def compare_paths(cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """Batched vs loop meta-update on one collected meta-batch (identical data), each timed
    after a warm-up call, the parameters restored before every call."""
    s = setup(cfg, seed)
    learner = s.learner
    batch = learner.collect(s.sampler, s.tasks)
    start_state = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    seconds, after = {}, {}
    for path in ("batched", "loop"):
        for _ in range(2):  # warm-up, then the timed call
            learner.policy.load_state_dict(start_state)
            start = time.perf_counter()
            learner.meta_update(batch, path=path)
            seconds[path] = time.perf_counter() - start
        after[path] = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    same = all(torch.allclose(after["batched"][k], after["loop"][k], rtol=1e-4, atol=1e-6)
               for k in start_state)
    vectorize, probe = learner.choose_path(batch)  # what meta_update_path="auto" measures
    s.close()
    return {"batched_s": seconds["batched"], "loop_s": seconds["loop"],
            "loop_over_batched": seconds["loop"] / seconds["batched"],
            "auto_picked": "batched" if vectorize else "loop",
            "auto_probe_batched_s": probe["meta_update/probe_batched_s"],
            "auto_probe_loop_s": probe["meta_update/probe_loop_s"], "same_update": same}


def config(bench: BenchConfig, device: str, *, episodes: int, horizon: int,
           algo: str = "maml", path: str = "auto") -> TrainConfig:
    return TrainConfig(env=bench.env, algo=algo, preset="paper", meta_batch=bench.meta_batch,
                       episodes_per_task=episodes, horizon=horizon, device=device,
                       meta_update_path=path, progress=False)


def peak_memory_mib(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_device(bench: BenchConfig, device: str) -> dict[str, Any]:
    """Every figure on one device."""
    n_max = max(bench.sizes)
    episodes, horizon = bench.sizes[n_max]
    standard = one_iteration(config(bench, device, episodes=episodes, horizon=horizon),
                             bench.seed)
    out: dict[str, Any] = {"standard": _phases(standard), "paths": {}}
    for n, (eps, h) in bench.sizes.items():
        out["paths"][n] = compare_paths(config(bench, device, episodes=eps, horizon=h),
                                        bench.seed)
    anil = one_iteration(config(bench, device, episodes=episodes, horizon=horizon,
                                algo="anil"), bench.seed)
    out["anil_vs_maml"] = {"maml_iteration_s": standard["time/iteration_s"],
                           "anil_iteration_s": anil["time/iteration_s"],
                           "maml_meta_update_s": standard["time/meta_update_s"],
                           "anil_meta_update_s": anil["time/meta_update_s"],
                           "speedup": standard["time/iteration_s"] / anil["time/iteration_s"],
                           "meta_update_speedup": standard["time/meta_update_s"]
                           / anil["time/meta_update_s"]}
    out["peak_memory_mib"] = peak_memory_mib(device)
    return out


def _phases(logs: dict[str, float]) -> dict[str, float]:
    keys = ("time/sampling_s", "time/adaptation_s", "time/meta_update_s", "time/iteration_s",
            "time/env_steps_per_s", "env_steps")
    return {k.removeprefix("time/"): float(logs[k]) for k in keys if k in logs}


def _cell(results: dict[str, Any], device: str, get: Callable[[dict[str, Any]], Any],
          fmt: str) -> str:
    if device not in results:
        return NO_GPU
    value = get(results[device])
    return format(value, fmt) if isinstance(value, (int, float)) else str(value)


def _dig(*keys: Any) -> Callable[[dict[str, Any]], Any]:
    """A getter of ``r[k0][k1]...`` (NaN when a key is missing)."""

    def get(r: dict[str, Any]) -> Any:
        for k in keys:
            if k not in r:
                return float("nan")
            r = r[k]
        return r

    return get


def _both(n: int, a: str, b: str, fmt: str, sep: str) -> Callable[[dict[str, Any]], str]:
    """``paths[n][a]`` and ``paths[n][b]`` in one cell (``b`` in parentheses for " (")."""

    def get(r: dict[str, Any]) -> str:
        p = r["paths"][n]
        close = ")" if sep == " (" else ""
        return f"{format(p[a], fmt)}{sep}{format(p[b], fmt)}{close}"

    return get


def _anil_vs_maml(r: dict[str, Any]) -> str:
    a = r["anil_vs_maml"]
    return f"{a['anil_iteration_s']:.2f} vs {a['maml_iteration_s']:.2f}"


def table(results: dict[str, Any], bench: BenchConfig) -> str:
    """The Markdown table: one row per figure, CPU and GPU columns."""
    rows: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = []
    n_max = max(bench.sizes)
    eps, h = bench.sizes[n_max]
    what = f"{bench.meta_batch} tasks x {eps} episodes x {h} steps"
    for key in ("sampling_s", "adaptation_s", "meta_update_s", "iteration_s"):
        rows.append((f"{what}: {key.replace('_s', '')} (s)", _dig("standard", key), ".2f"))
    rows.append((f"{what}: env steps/s (sampling)", _dig("standard", "env_steps_per_s"),
                 ",.0f"))
    for n in bench.sizes:
        rows.append((f"meta-update {n:,} samples/task: loop / batched (s)",
                     _both(n, "loop_s", "batched_s", ".2f", " / "), ""))
        rows.append((f"meta-update {n:,} samples/task: loop time / batched time",
                     _dig("paths", n, "loop_over_batched"), ".2f"))
        rows.append((f"meta-update {n:,} samples/task: auto picked (same update)",
                     _both(n, "auto_picked", "same_update", "", " ("), ""))
    rows.append(("ANIL vs MAML iteration (s)", _anil_vs_maml, ""))
    rows.append(("MAML time / ANIL time per iteration (paper: 1.7x)",
                 _dig("anil_vs_maml", "speedup"), ".2f"))
    rows.append(("MAML time / ANIL time per meta-update",
                 _dig("anil_vs_maml", "meta_update_speedup"), ".2f"))
    rows.append(("peak memory (MiB)", _dig("peak_memory_mib"), ",.0f"))
    lines = ["| figure | CPU | GPU |", "|---|---|---|"]
    lines += [f"| {name} | {_cell(results, 'cpu', get, fmt)} | "
              f"{_cell(results, 'cuda', get, fmt)} |" for name, get, fmt in rows]
    return "\n".join(lines)


def main(bench: BenchConfig) -> dict[str, Any]:
    torch.set_num_threads(torch.get_num_threads())
    results = {device: bench_device(bench, device) for device in devices()}
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(table(results, bench))
    if bench.json is not None:
        Path(bench.json).write_text(json.dumps({"config": dataclasses.asdict(bench),
                                                "results": results}, indent=2, default=str))
    return results


if __name__ == "__main__":
    main(tyro.cli(BenchConfig))
