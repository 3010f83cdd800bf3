"""Env-steps/s of the batched engine against Gymnasium's vector envs and the MuJoCo limit.

For each distribution (default HalfCheetahVel and AntVel), ``num_envs`` environments (default
800 = 40 tasks x 20 episodes, the MAML-TRPO meta-batch of Finn et al., 2017) step ``steps``
times (default 200, one paper-preset episode) with actions supplied step by step:

(a) ``batched``: :func:`metarl.envs.batched.make_batched` (physics in C threads);
(b) ``sync``:    Gymnasium's ``SyncVectorEnv`` over the single ``metarl/<Name>-v0`` envs;
(c) ``async``:   Gymnasium's ``AsyncVectorEnv`` (one process per env, so it runs
                 ``async_envs`` envs for ``async_steps`` steps: 800 processes do not fit);
(d) ``rollout``: the open-loop ``mujoco.rollout`` of the same number of physics steps on the
                 same threads: the physics limit (no Python per step, no reward, no resets).

Each method runs in its own spawned process, so its peak RSS is its own. Usage::

    nice python scripts/bench_envs.py --json bench.json
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import tyro

METHODS = ("batched", "sync", "async", "rollout")


@dataclasses.dataclass(frozen=True)
class Args:
    """Benchmark settings."""

    envs: tuple[str, ...] = ("HalfCheetahVel", "AntVel")
    """Distributions to measure."""
    num_envs: int = 800
    """Environments stepped together (tasks x episodes)."""
    steps: int = 200
    """Env steps per environment (the horizon, so every env resets once at the end)."""
    methods: tuple[str, ...] = METHODS
    """Which of batched, sync, async, rollout to run."""
    num_threads: int | None = None
    """Physics threads of (a) and (d); default every core available."""
    async_envs: int = 16
    """Processes of AsyncVectorEnv (c)."""
    async_steps: int = 400
    """Steps of (c)."""
    seed: int = 0
    """Seed of the resets and of the uniform random actions."""
    repeats: int = 1
    """Rounds over all methods; each row keeps its fastest round (on a shared machine the load
    changes while the methods run one after another, and interleaved rounds even it out)."""
    json: str | None = None
    """Write the table as JSON to this path."""


def _peak_rss_mb(include_children: bool = False) -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if include_children:  # the largest worker, not the sum
        peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / 1024.0


def _actions(space: Any, steps: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(space.low, space.high, (steps, n, *space.shape))


def _time_steps(env: Any, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return time.perf_counter() - start


def bench_batched(name: str, args: Args) -> dict[str, Any]:
    from metarl.envs.batched import make_batched

    env = make_batched(name, args.num_envs, horizon=args.steps, seed=args.seed,
                       num_threads=args.num_threads)
    env.reset(seed=args.seed)
    actions = _actions(env.single_action_space, args.steps, args.num_envs, args.seed)
    seconds = _time_steps(env, actions)
    return {"envs": args.num_envs, "env_steps": args.steps * args.num_envs, "seconds": seconds}


def bench_gym_vector(name: str, args: Args, mode: str) -> dict[str, Any]:
    import gymnasium

    from metarl.envs.batched import EnvFn, gym_id

    n, steps = (args.num_envs, args.steps) if mode == "sync" else (args.async_envs,
                                                                   args.async_steps)
    cls: Any = gymnasium.vector.SyncVectorEnv if mode == "sync" else \
        gymnasium.vector.AsyncVectorEnv
    fns = [EnvFn(gym_id(name), args.steps) for _ in range(n)]
    env = cls(fns, autoreset_mode=gymnasium.vector.AutoresetMode.SAME_STEP)
    env.reset(seed=args.seed)
    actions = _actions(env.single_action_space, steps, n, args.seed)
    seconds = _time_steps(env, actions)
    env.close()
    return {"envs": n, "env_steps": steps * n, "seconds": seconds}


def bench_rollout(name: str, args: Args) -> dict[str, Any]:
    import gymnasium
    import mujoco
    from mujoco import rollout

    from metarl.envs.batched import default_num_threads, env_rngs
    from metarl.envs.registration import get_kernel

    kernel = get_kernel(name)
    base: Any = gymnasium.make(kernel.base_id, **kernel.base_kwargs).unwrapped
    model, n = base.model, args.num_envs
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros((n, mujoco.mj_stateSize(model, spec)))
    data = mujoco.MjData(model)
    for i, rng in enumerate(env_rngs(args.seed, n)):
        mujoco.mj_resetData(model, data)
        data.qpos[:], data.qvel[:] = kernel.reset_state(rng, base.init_qpos, base.init_qvel)
        mujoco.mj_getState(model, data, state0[i], spec)
    nstep = args.steps * kernel.frame_skip
    actions = _actions(base.action_space, args.steps, n, args.seed)
    control = np.ascontiguousarray(np.repeat(actions.transpose(1, 0, 2), kernel.frame_skip, 1))
    state = np.empty((n, nstep, state0.shape[1]))
    sensordata = np.empty((n, nstep, model.nsensordata))
    threads = args.num_threads or default_num_threads()
    with rollout.Rollout(nthread=threads) as pool:
        datas = [mujoco.MjData(model) for _ in range(threads)]
        start = time.perf_counter()
        pool.rollout(model, datas, state0, control, state=state, sensordata=sensordata)
        seconds = time.perf_counter() - start
    return {"envs": n, "env_steps": args.steps * n, "seconds": seconds}


def _child(method: str, name: str, args: Args, queue: Any) -> None:
    try:
        if method == "batched":
            result = bench_batched(name, args)
        elif method == "rollout":
            result = bench_rollout(name, args)
        else:
            result = bench_gym_vector(name, args, method)
        result["peak_rss_mb"] = _peak_rss_mb(include_children=method == "async")
        queue.put(result)
    except Exception as err:  # reported in the table, the other methods still run
        queue.put({"error": f"{type(err).__name__}: {err}"})


def measure(method: str, name: str, args: Args) -> dict[str, Any]:
    """Run one method in a fresh spawned process; return its figures."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(method, name, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    row = {"env": name, "method": method, **result}
    if "seconds" in row:
        row["env_steps_per_s"] = row["env_steps"] / row["seconds"]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Each row's env-steps/s over the same env's open-loop rollout (d)."""
    limits = {r["env"]: r["env_steps_per_s"] for r in rows
              if r["method"] == "rollout" and "env_steps_per_s" in r}
    for r in rows:
        if r["env"] in limits and "env_steps_per_s" in r:
            r["ratio_to_rollout"] = r["env_steps_per_s"] / limits[r["env"]]


def format_table(rows: list[dict[str, Any]]) -> str:
    head = f"{'env':<16}{'method':<10}{'envs':>6}{'env-steps/s':>14}{'x (d)':>8}{'peak MB':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['env']:<16}{r['method']:<10}  error: {r['error']}")
            continue
        ratio = f"{r['ratio_to_rollout']:.2f}" if "ratio_to_rollout" in r else "-"
        lines.append(f"{r['env']:<16}{r['method']:<10}{r['envs']:>6}"
                     f"{r['env_steps_per_s']:>14,.0f}{ratio:>8}{r['peak_rss_mb']:>10,.0f}")
    return "\n".join(lines)


def main(args: Args) -> list[dict[str, Any]]:
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        raise ValueError(f"'methods' must be among {METHODS}, got {bad}")
    if args.repeats < 1:
        raise ValueError(f"'repeats' must be a positive integer, got {args.repeats}")
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for _ in range(args.repeats):
        for name in args.envs:
            for method in args.methods:
                row = measure(method, name, args)
                print(format_table([row]).splitlines()[-1], flush=True)  # progress
                old = best.get((name, method))
                if old is None or row.get("env_steps_per_s", 0) > old.get("env_steps_per_s", 0):
                    best[(name, method)] = row
                write_json(args, list(best.values()))
    rows = [best[(name, m)] for name in args.envs for m in args.methods]
    add_ratios(rows)
    print(format_table(rows))
    write_json(args, rows)
    return rows


def write_json(args: Args, rows: list[dict[str, Any]]) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps({"args": dataclasses.asdict(args), "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main(tyro.cli(Args))
