"""Benchmark the Ray sampler back-end against the local sampler, side by side in one run.

Prints two Markdown tables (and with ``--json PATH`` writes every figure as JSON):

* measured here: env-steps/s of one sampling call of the same tasks, policy and seed
  (HalfCheetahVel, 40 tasks x 20 episodes x 200 steps by default) on the local
  :class:`BatchedSampler` (its physics on 2 threads and on 1) and on :class:`RaySampler` with
  1 and 2 actors, whether the episodes are the same, one actor's rate on a one-task slice,
  the fixed cost of a Ray call (a one-step call) and the cost of moving one call's episodes
  through Ray's object store;
* an estimate, not a measurement, for ``--machines`` x ``--cores`` (8 x 16): one actor per
  core at the per-actor rate measured here, the call cost measured here plus the episodes over
  a ``--bandwidth-gbit`` network, and the learner time of ``docs/bench_rl.json`` (adaptation +
  meta-update of the same iteration on this CPU), which Ray does not change.

    nice python scripts/bench_ray.py --json docs/bench_ray.json
    python scripts/bench_ray.py --quick          # small sizes, a smoke run
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import tyro

from metarl.core import get_params
from metarl.envs.batched import make_batched
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.ray_sampler import RaySampler
from metarl.rl.sampler import BatchedSampler, Episodes, Sampler

FIELDS = ("obs", "actions", "rewards", "masks")
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class BenchConfig:
    """Env-steps/s of the local and the Ray sampler, and an estimate for a cluster."""

    json: str | None = None
    """Also write the figures to this JSON file."""
    env: str = "HalfCheetahVel"
    """Task distribution."""
    tasks: int = 40
    """Tasks per call (the standard meta-batch)."""
    episodes: int = 20
    """Episodes per task."""
    horizon: int = 200
    """Steps per episode."""
    repeats: int = 3
    """Timed rounds after one warm-up call each; the fastest call of each sampler is kept."""
    machines: int = 8
    """Machines of the estimated cluster."""
    cores: int = 16
    """Cores per machine of the estimated cluster (one actor each)."""
    bandwidth_gbit: float = 10.0
    """Network bandwidth into the learner's machine assumed by the estimate, Gbit/s."""
    learner_json: str = str(DOCS / "bench_rl.json")
    """bench_rl.py's JSON: the learner time (adaptation + meta-update) of the estimate."""
    quick: bool = False
    """4 tasks x 2 episodes x 20 steps, one repeat: a smoke run, not a benchmark."""

    def __post_init__(self) -> None:
        for name in ("tasks", "episodes", "horizon", "repeats", "machines", "cores"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)}")
        if not self.bandwidth_gbit > 0:
            raise ValueError(f"bandwidth_gbit must be > 0, got {self.bandwidth_gbit}")

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        """(tasks, episodes, horizon, repeats)."""
        if self.quick:
            return 4, 2, 20, 1
        return self.tasks, self.episodes, self.horizon, self.repeats


@dataclass
class Workload:
    """The policy, per-task parameters and tasks every sampler gets."""

    policy: GaussianMLPPolicy
    params: dict[str, torch.Tensor]
    tasks: list[Any]

    def call(self, sampler: Sampler, threads: int = 1) -> tuple[float, Episodes]:
        """Seconds of one seeded sampling call on ``threads`` torch threads, and its episodes.
        (A local sampler's policy gets as many as its physics: idle OpenMP threads spin and
        would take a core from the physics of a one-thread sampler.)"""
        torch.set_num_threads(threads)
        start = time.perf_counter()
        episodes = sampler.sample(self.policy, self.params, self.tasks, seed=0)
        return time.perf_counter() - start, episodes

    def slice(self, tasks: int) -> Workload:
        return Workload(self.policy, {k: v[:tasks] for k, v in self.params.items()},
                        self.tasks[:tasks])


def workload(env_name: str, tasks: int) -> Workload:
    probe = make_batched(env_name, 1, seed=0)
    assert probe.single_observation_space.shape and probe.single_action_space.shape
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(probe.single_observation_space.shape[0],
                               probe.single_action_space.shape[0])
    params = {k: v.detach().expand(tasks, *v.shape) for k, v in get_params(policy).items()}
    task_list = probe.sample_tasks(tasks)
    probe.close()
    return Workload(policy, params, task_list)


Entry = tuple[Sampler, Workload, int]  # the sampler, its workload, torch threads


def interleaved(samplers: dict[str, Entry], repeats: int) -> tuple[dict[str, Any], Episodes]:
    """One warm-up call each, then ``repeats`` rounds calling every sampler in turn (so a
    change in the machine's load hits all of them); the fastest call of each is kept.
    Returns the figures and the local sampler's episodes."""
    best = {name: math.inf for name in samplers}
    episodes = {name: work.call(sampler, threads)[1]
                for name, (sampler, work, threads) in samplers.items()}
    for _ in range(repeats):
        for name, (sampler, work, threads) in samplers.items():
            best[name] = min(best[name], work.call(sampler, threads)[0])
    reference = episodes["local"]
    out: dict[str, Any] = {}
    for name, (sampler, _, _) in samplers.items():
        steps = sampler.num_envs * sampler.horizon
        same = None if name == "local" or name.endswith(("one_task", "call")) else all(
            torch.equal(getattr(episodes[name], f), getattr(reference, f)) for f in FIELDS)
        out[name] = {"seconds": best[name], "env_steps": steps,
                     "env_steps_per_s": steps / best[name], "same_episodes": same}
    return out, reference


def transfer_s(episodes: Episodes, repeats: int = 3) -> tuple[float, int]:
    """Seconds to put one call's episodes into Ray's object store and get them back."""
    import ray

    payload = {f: getattr(episodes, f).numpy() for f in FIELDS}
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        ray.get(ray.put(payload))
        best = min(best, time.perf_counter() - start)
    return best, sum(a.nbytes for a in payload.values())


def measure(cfg: BenchConfig) -> dict[str, Any]:
    import ray

    tasks, episodes, horizon, repeats = cfg.sizes
    work = workload(cfg.env, tasks)
    # Every sampler is alive at once (idle actors only wait), so the rounds can interleave.
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        two_threads = make_batched(cfg.env, tasks * episodes, horizon=horizon, num_threads=2)
        local = BatchedSampler(two_threads, episodes, "cpu")
        samplers: dict[str, Entry] = {"local": (local, work, 2)}
        one_thread = make_batched(cfg.env, tasks * episodes, horizon=horizon, num_threads=1)
        samplers["local_1_thread"] = (BatchedSampler(one_thread, episodes, "cpu"), work, 1)
        for actors in (1, 2):
            ray_sampler = RaySampler(cfg.env, tasks, episodes, horizon, actors=actors)
            samplers[f"ray_{actors}"] = (ray_sampler, work, 1)
        samplers["ray_1_one_task"] = (RaySampler(cfg.env, 1, episodes, horizon, actors=1),
                                      work.slice(1), 1)
        samplers["ray_call"] = (RaySampler(cfg.env, 1, 1, 1, actors=1), work.slice(1), 1)
        try:
            out, reference = interleaved(samplers, repeats)
        finally:
            for sampler, _, _ in samplers.values():
                sampler.close()
        out["ray_call_s"] = out.pop("ray_call")["seconds"]
        out["transfer_s"], out["payload_bytes"] = transfer_s(reference)
    finally:
        ray.shutdown()
    return out


def learner_seconds_per_sample(path: str) -> float | None:
    """Adaptation + meta-update seconds per post-update sample, from bench_rl.py's JSON (its
    standard iteration: ``tasks`` x 20 episodes x 200 steps)."""
    if not Path(path).is_file():
        return None
    result = json.loads(Path(path).read_text())
    standard = result["results"]["cpu"]["standard"]
    samples = int(result["config"]["tasks"]) * 20 * 200
    return float(standard["adaptation_s"] + standard["meta_update_s"]) / samples


def estimate(cfg: BenchConfig, measured: dict[str, Any]) -> dict[str, Any]:
    """Sampling-call and iteration time on ``machines x cores`` actors (not measured)."""
    tasks, episodes, horizon, _ = cfg.sizes
    per_actor = measured["ray_1_one_task"]["env_steps_per_s"]  # one core, one-task slice
    cores, learner = cfg.machines * cfg.cores, learner_seconds_per_sample(cfg.learner_json)
    bytes_per_step = measured["payload_bytes"] / (tasks * episodes * horizon)
    rows = {}
    for meta_batch in (tasks, cores):
        actors = min(meta_batch, cores)  # whole tasks per actor
        steps = meta_batch * episodes * horizon
        network_s = steps * bytes_per_step * 8 / (cfg.bandwidth_gbit * 1e9)
        call_s = (steps / actors) / per_actor + measured["ray_call_s"] + network_s
        row = {"meta_batch": meta_batch, "actors": actors, "call_s": call_s,
               "network_s": network_s, "env_steps_per_s": steps / call_s}
        if learner is not None:  # two sampling calls (pre/post-update) + the learner
            row["learner_s"] = learner * steps
            row["iteration_s"] = 2 * call_s + row["learner_s"]
        rows[str(meta_batch)] = row
    return {"cores": cores, "per_actor_env_steps_per_s": per_actor,
            "learner_s_per_sample": learner, "bandwidth_gbit": cfg.bandwidth_gbit,
            "rows": rows}


def machine() -> dict[str, Any]:
    import ray

    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text()
                  .splitlines() if ln.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": len(os.sched_getaffinity(0)),
            "torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version(),
            "load_average": os.getloadavg()}


def tables(cfg: BenchConfig, m: dict[str, Any], est: dict[str, Any]) -> str:
    tasks, episodes, horizon, _ = cfg.sizes
    lines = [f"{cfg.env}, {tasks} tasks x {episodes} episodes x {horizon} steps per call", "",
             "| sampler | env steps/s | seconds per call | same episodes as local |",
             "|---|---|---|---|"]
    for key, label in (("local", "local BatchedSampler (2 physics threads)"),
                       ("local_1_thread", "local BatchedSampler (1 physics thread)"),
                       ("ray_1", "Ray, 1 actor (1 core)"), ("ray_2", "Ray, 2 actors")):
        row, same = m[key], m[key]["same_episodes"]
        lines.append(f"| {label} | {row['env_steps_per_s']:,.0f} | {row['seconds']:.2f} | "
                     f"{'-' if same is None else 'yes' if same else 'NO'} |")
    lines.append(f"| Ray, 1 actor, one-task slice ({episodes} envs) | "
                 f"{m['ray_1_one_task']['env_steps_per_s']:,.0f} | "
                 f"{m['ray_1_one_task']['seconds']:.3f} | - |")
    lines += ["", f"Ray call, 1 step: {m['ray_call_s'] * 1e3:.1f} ms; one call's episodes "
              f"({m['payload_bytes'] / 2**20:.1f} MiB) through the object store: "
              f"{m['transfer_s'] * 1e3:.1f} ms", "",
              f"Estimate (not measured), {cfg.machines} machines x {cfg.cores} cores = "
              f"{est['cores']} actors at {est['per_actor_env_steps_per_s']:,.0f} env steps/s "
              f"each, {cfg.bandwidth_gbit:g} Gbit/s into the learner:", "",
              "| meta-batch | actors | network s | seconds per call | env steps/s | "
              "learner s (this CPU) | iteration s (2 calls + learner) |",
              "|---|---|---|---|---|---|---|"]
    for row in est["rows"].values():
        learner, it = row.get("learner_s"), row.get("iteration_s")
        lines.append(f"| {row['meta_batch']} | {row['actors']} | {row['network_s']:.3f} | "
                     f"{row['call_s']:.3f} | {row['env_steps_per_s']:,.0f} | "
                     f"{'n/a' if learner is None else f'{learner:.2f}'} | "
                     f"{'n/a' if it is None else f'{it:.2f}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = tyro.cli(BenchConfig, args=argv)
    load_before = os.getloadavg()
    measured = measure(cfg)
    measured["load_average_before"] = load_before
    est = estimate(cfg, measured)
    print(tables(cfg, measured, est))
    if cfg.json:
        result = {"config": dataclasses.asdict(cfg), "machine": machine(),
                  "measured": measured, "estimate": est}
        Path(cfg.json).write_text(json.dumps(result, indent=2, default=_plain) + "\n")
    return 0


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
