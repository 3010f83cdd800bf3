"""Env-steps/s of the batched engine against Gymnasium's vector envs and the MuJoCo limit.

For each distribution (default HalfCheetahVel and AntVel), ``num_envs`` environments (default
800 = 40 tasks x 20 episodes, the MAML-TRPO meta-batch of Finn et al., 2017) step ``steps``
times (default 200, one paper-preset episode) with actions supplied step by step:

(a) ``batched``: :func:`metarl.envs.batched.make_batched` (physics in C threads);
(b) ``sync``:    Gymnasium's ``SyncVectorEnv`` over the single ``metarl/<Name>-v0`` envs;
(c) ``async``:   Gymnasium's ``AsyncVectorEnv`` (one process per env, so it runs
                 ``async_envs`` envs for ``async_steps`` steps: 800 processes do not fit);
(d) ``rollout``: the open-loop ``mujoco.rollout`` of the same number of physics steps on the
                 same threads: the physics limit (no Python per step, no reward, no resets);
(e) ``warp``:    the engine on ``physics="warp"`` (MuJoCo Warp, the optional extra ``warp``), on
                 Warp's default device; not in the default ``--methods`` (on Warp's CPU device
                 it is slow: try ``--methods warp batched --num-envs 256 --steps 20``).

Each method runs in its own spawned process, so its peak RSS is its own. Usage::

    nice python scripts/bench_envs.py --json bench.json

``--sweep`` runs instead a thread sweep (``--sweep-threads``, default 1, 2, 4, ... and every
core): at each thread count, (a) the engine against (d) ``mujoco.rollout`` on the same threads,
and the sampler with a policy in the loop (:class:`metarl.rl.sampler.BatchedSampler`, a
64x64 Gaussian MLP acting between steps, per task its own parameters) against the engine
alone, the sampler once with its default of one torch thread during the rollout and once
with torch on as many threads as the physics. Every row also gives the process's CPU time
and, for the engine and the sampler, the main thread's CPU time outside MuJoCo's C step
(the serial part: Python, NumPy, the policy), from which the Amdahl table predicts the
scale-up to more cores (docs/speed.md)::

    nice python scripts/bench_envs.py --sweep --envs HalfCheetahVel --repeats 3 \
        --json docs/bench_scaling.json
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import tyro

METHODS = ("batched", "sync", "async", "rollout", "warp")
SWEEP_METHODS = ("batched", "rollout", "sampler", "sampler_torch_all")
AMDAHL_CORES = (2, 4, 8, 16, 32)


@dataclasses.dataclass(frozen=True)
class Args:
    """Benchmark settings."""

    envs: tuple[str, ...] = ("HalfCheetahVel", "AntVel")
    """Distributions to measure."""
    num_envs: int = 800
    """Environments stepped together (tasks x episodes)."""
    steps: int = 200
    """Env steps per environment (the horizon, so every env resets once at the end)."""
    methods: tuple[str, ...] = METHODS[:4]
    """Which of batched, sync, async, rollout, warp to run."""
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
    sweep: bool = False
    """Run the thread sweep (engine vs rollout, sampler vs engine) instead of the methods."""
    sweep_threads: tuple[int, ...] | None = None
    """Thread counts of the sweep (default 1, 2, 4, ... and every core available)."""
    episodes_per_task: int = 20
    """Sweep: the sampler's episodes per task (num_envs / this = tasks)."""
    plot: str | None = None
    """Sweep: write a PNG of env-steps/s against threads, measured and predicted."""


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


def bench_batched(name: str, args: Args, physics: str = "auto") -> dict[str, Any]:
    from metarl.envs.batched import make_batched

    env = make_batched(name, args.num_envs, horizon=args.steps, seed=args.seed,
                       num_threads=args.num_threads, physics=physics)
    env.reset(seed=args.seed)
    if physics == "warp":  # the first step compiles (or loads) Warp's kernels: not timed
        env.step(np.zeros((args.num_envs, *env.single_action_space.shape)))
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
        start, cpu = time.perf_counter(), time.process_time()
        pool.rollout(model, datas, state0, control, state=state, sensordata=sensordata)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"envs": n, "env_steps": args.steps * n, "seconds": seconds, "cpu_s": cpu}


# ---- the thread sweep ------------------------------------------------------------------------


class _StepTimer:
    """Stands in for the physics' C stepper (``mujoco.batch.Batch``, or the whole back-end for
    one ``MjData`` per env) and adds up the main thread's wall and CPU time inside ``step``:
    everything else the main thread does is the serial part."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.wall_s = 0.0
        self.main_cpu_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._inner.step(*args, **kwargs)
        finally:
            self.wall_s += time.perf_counter() - wall
            self.main_cpu_s += time.thread_time() - cpu


def _instrument(env: Any) -> _StepTimer:
    physics = env._physics
    if hasattr(physics, "batch"):
        timer = physics.batch = _StepTimer(physics.batch)
    else:
        timer = env._physics = _StepTimer(physics)
    return timer


def _timed(run: Any, timer: _StepTimer | None) -> dict[str, float]:
    """Wall, process CPU and serial (main thread, outside the C step) CPU seconds of ``run()``."""
    wall, cpu, main = time.perf_counter(), time.process_time(), time.thread_time()
    run()
    out = {"seconds": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}
    if timer is not None:
        out["serial_cpu_s"] = time.thread_time() - main - timer.main_cpu_s
        out["c_step_wall_s"] = timer.wall_s
    return out


def sweep_batched(name: str, args: Args) -> dict[str, Any]:
    from metarl.envs.batched import make_batched

    env = make_batched(name, args.num_envs, horizon=args.steps, seed=args.seed,
                       num_threads=args.num_threads)
    env.reset(seed=args.seed)
    actions = _actions(env.single_action_space, args.steps, args.num_envs, args.seed)
    timer = _instrument(env)
    result = _timed(lambda: [env.step(a) for a in actions], timer)
    return {"envs": args.num_envs, "env_steps": args.steps * args.num_envs, **result,
            "python_only_cpu_us_per_step": python_only_step_us(env, timer, actions)}


def python_only_step_us(env: Any, timer: _StepTimer, actions: np.ndarray,
                        calls: int = 50) -> float:
    """CPU microseconds of one engine step with MuJoCo's C step skipped: the engine's own
    Python and NumPy work with warm caches, a lower bound of its serial part (the sweep's
    ``serial_cpu_s`` is measured between real C steps, cold caches and other load included)."""
    step, stable = timer.step, np.zeros(env.num_envs, dtype=bool)
    # mujoco.batch's step returns nothing; a whole back-end's returns the unstable mask
    timer.step = lambda *a, **k: None if hasattr(env._physics, "batch") else stable  # type: ignore[method-assign]
    cpu = time.thread_time()
    for i in range(calls):
        env.step(actions[i % len(actions)])
    timer.step = step  # type: ignore[method-assign]
    return (time.thread_time() - cpu) / calls * 1e6


def sweep_sampler(name: str, args: Args, torch_all: bool) -> dict[str, Any]:
    """One ``BatchedSampler.sample`` (``steps`` lock-step steps, the policy acting each step);
    ``torch_all``: torch on as many threads as the physics during the rollout."""
    import torch

    from metarl.envs.batched import make_batched
    from metarl.rl.policy import GaussianMLPPolicy
    from metarl.rl.sampler import BatchedSampler

    threads = args.num_threads or 1
    if torch_all:
        torch.set_num_threads(threads)
    env = make_batched(name, args.num_envs, horizon=args.steps, seed=args.seed,
                       num_threads=threads)
    sampler = BatchedSampler(env, args.episodes_per_task, "cpu",
                             torch_threads=None if torch_all else 1)
    torch.manual_seed(args.seed)
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    policy = GaussianMLPPolicy(obs_dim, act_dim)
    tasks = env.sample_tasks(sampler.num_tasks)
    params = {k: (v.detach() + 0.01 * torch.randn(sampler.num_tasks, *v.shape))  # adapted-like
              for k, v in policy.named_parameters()}
    timer = _instrument(env)
    result = _timed(lambda: sampler.sample(policy, params, tasks, seed=args.seed), timer)
    return {"envs": args.num_envs, "env_steps": args.steps * args.num_envs,
            "torch_threads": threads if torch_all else 1, **result,
            **forward_cpu_ms(policy, params, sampler.num_tasks, args.episodes_per_task)}


def forward_cpu_ms(policy: Any, params: Any, tasks: int, episodes: int,
                   calls: int = 50) -> dict[str, float]:
    """CPU ms of one per-step policy forward of the sampler's size on one torch thread: the
    sampler's ``dist_params_per_task`` (baddbmm per layer) and its vmap reference."""
    import torch

    from metarl.rl.sampler import forward_per_task, torch_threads

    obs = torch.randn(tasks, episodes, policy.obs_dim)
    out = {}
    with torch.no_grad(), torch_threads(1):
        for key, fn in (("forward_bmm_cpu_ms", policy.dist_params_per_task),
                        ("forward_vmap_cpu_ms", lambda p, o: forward_per_task(policy, p, o))):
            fn(params, obs)
            cpu = time.process_time()
            for _ in range(calls):
                fn(params, obs)
            out[key] = (time.process_time() - cpu) / calls * 1e3
    return out


def _child(method: str, name: str, args: Args, queue: Any) -> None:
    try:
        if args.sweep:
            result = (sweep_batched(name, args) if method == "batched"
                      else bench_rollout(name, args) if method == "rollout"
                      else sweep_sampler(name, args, method == "sampler_torch_all"))
        elif method in ("batched", "warp"):
            result = bench_batched(name, args, "warp" if method == "warp" else "auto")
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
    if args.sweep:
        if args.repeats < 1:
            raise ValueError(f"'repeats' must be a positive integer, got {args.repeats}")
        return run_sweep(args)
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


def write_json(args: Args, rows: list[dict[str, Any]], **extra: Any) -> None:
    if args.json:
        Path(args.json).write_text(json.dumps({"args": dataclasses.asdict(args), "rows": rows,
                                               **extra}, indent=2))


def sweep_threads(args: Args) -> tuple[int, ...]:
    """``args.sweep_threads``, or 1, 2, 4, ... below every core available, and every core."""
    from metarl.envs.physics import default_num_threads

    if args.sweep_threads is not None:
        if not args.sweep_threads or min(args.sweep_threads) < 1:
            raise ValueError(f"'sweep_threads' must hold positive integers, got "
                             f"{args.sweep_threads}")
        return tuple(args.sweep_threads)
    cores, counts = default_num_threads(), [1]
    while counts[-1] * 2 < cores:
        counts.append(counts[-1] * 2)
    return tuple(counts + [cores] if cores > 1 else counts)


def machine() -> dict[str, Any]:
    """The machine the figures come from (CPU model, cores, load while the sweep ran)."""
    import platform

    import mujoco
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
                 if ln.startswith("model name")]
        model = names[0] if names else model
    from metarl.envs.physics import default_num_threads

    return {"cpu": model, "cores": default_num_threads(), "mujoco": mujoco.__version__,
            "torch": torch.__version__, "loadavg_1min": os.getloadavg()[0]}


def add_sweep_ratios(rows: list[dict[str, Any]]) -> None:
    """The engine over ``mujoco.rollout`` and each sampler over the engine, at equal threads."""
    rate = {(r["env"], r["threads"], r["method"]): r.get("env_steps_per_s") for r in rows}
    for r in rows:
        if "env_steps_per_s" not in r:
            continue
        base = "rollout" if r["method"] == "batched" else "batched"
        ref = rate.get((r["env"], r["threads"], base))
        if r["method"] != "rollout" and ref:
            r[f"ratio_to_{base}"] = r["env_steps_per_s"] / ref
            other = next(o for o in rows if (o["env"], o["threads"], o["method"])
                         == (r["env"], r["threads"], base))
            r[f"cpu_ratio_to_{base}"] = other["cpu_s"] / r["cpu_s"]  # env-steps per CPU second


def amdahl(rows: list[dict[str, Any]], cores: tuple[int, ...] = AMDAHL_CORES) -> list[dict]:
    """Amdahl's law ``S(n) = 1 / (f + (1 - f) / n)`` for the engine and the sampler, with the
    serial fraction ``f`` two ways: measured (the 1-thread row's serial CPU over its CPU:
    robust to other load, since CPU time is what the process got) and fitted to the wall-clock
    rates at 1 and 2 threads (``f = 2 T2 / T1 - 1``: noisy on a shared machine)."""
    out = []
    for r1 in rows:
        if r1["threads"] != 1 or "serial_cpu_s" not in r1:
            continue
        r2 = next((r for r in rows if (r["env"], r["method"], r["threads"])
                   == (r1["env"], r1["method"], 2) and "seconds" in r), None)
        f_cpu = min(max(r1["serial_cpu_s"] / r1["cpu_s"], 0.0), 1.0)
        rate1 = r1["env_steps"] / r1["cpu_s"]  # per core, as if alone on it
        row = {"env": r1["env"], "method": r1["method"], "serial_fraction_cpu": f_cpu,
               "rate_1core_cpu": rate1,
               "predicted": {n: rate1 / (f_cpu + (1 - f_cpu) / n) for n in cores}}
        if "python_only_cpu_us_per_step" in r1:  # the lower bound: warm caches, no C step
            steps = r1["env_steps"] / r1["envs"]
            f_warm = min(r1["python_only_cpu_us_per_step"] * 1e-6 * steps / r1["cpu_s"], 1.0)
            row["serial_fraction_warm"] = f_warm
            row["predicted_warm"] = {n: rate1 / (f_warm + (1 - f_warm) / n) for n in cores}
        if r2 is not None:
            f_fit = 2 * r2["seconds"] / r1["seconds"] - 1
            row["serial_fraction_fit_1_2"] = f_fit
            if 0 <= f_fit <= 1:
                row["predicted_fit"] = {n: r1["env_steps_per_s"] / (f_fit + (1 - f_fit) / n)
                                        for n in cores}
        out.append(row)
    return out


def format_sweep(rows: list[dict[str, Any]]) -> str:
    head = (f"{'env':<16}{'threads':>8} {'method':<19}{'env-steps/s':>12}{'CPU s':>8}"
            f"{'serial CPU':>11}{'ratio':>7}{'CPU ratio':>10} {'to':<8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['env']:<16}{r['threads']:>8} {r['method']:<19}error: {r['error']}")
            continue
        ratio = next(((v, k[9:]) for k, v in r.items() if k.startswith("ratio_to_")), None)
        cpu_ratio = next((v for k, v in r.items() if k.startswith("cpu_ratio_to_")), None)
        serial = f"{r['serial_cpu_s'] / r['cpu_s']:.1%}" if "serial_cpu_s" in r else "-"
        lines.append(f"{r['env']:<16}{r['threads']:>8} {r['method']:<19}"
                     f"{r['env_steps_per_s']:>12,.0f}{r['cpu_s']:>8.2f}{serial:>11}"
                     + (f"{ratio[0]:>7.2f}{cpu_ratio:>10.2f} {ratio[1]:<8}" if ratio and
                        cpu_ratio is not None else f"{'-':>7}"))
    return "\n".join(lines)


def format_amdahl(table: list[dict[str, Any]]) -> str:
    cores = list(table[0]["predicted"]) if table else []
    head = f"{'env':<16}{'method':<19}{'f (CPU)':>8}{'f (fit)':>8}" + "".join(
        f"{f'{n} cores':>11}" for n in cores)
    lines = ["Amdahl prediction, env-steps/s from the measured serial fraction f (CPU):",
             head, "-" * len(head)]
    for a in table:
        fit = f"{a['serial_fraction_fit_1_2']:.3f}" if "serial_fraction_fit_1_2" in a else "-"
        lines.append(f"{a['env']:<16}{a['method']:<19}{a['serial_fraction_cpu']:>8.3f}{fit:>8}"
                     + "".join(f"{a['predicted'][n]:>11,.0f}" for n in cores))
        if "predicted_warm" in a:
            lines.append(f"{a['env']:<16}{a['method'] + ' (warm f)':<19}"
                         f"{a['serial_fraction_warm']:>8.3f}{'-':>8}"
                         + "".join(f"{a['predicted_warm'][n]:>11,.0f}" for n in cores))
    return "\n".join(lines)


def run_sweep(args: Args) -> list[dict[str, Any]]:
    counts = sweep_threads(args)
    best: dict[tuple[str, int, str], dict[str, Any]] = {}
    info = machine()
    for _ in range(args.repeats):
        for name in args.envs:
            for threads in counts:
                for method in SWEEP_METHODS:
                    row = measure(method, name, dataclasses.replace(args, num_threads=threads))
                    row["threads"] = threads
                    print(format_sweep([row]).splitlines()[-1], flush=True)  # progress
                    key, old = (name, threads, method), best.get((name, threads, method))
                    if old is None or row.get("env_steps_per_s", 0) > old.get(
                            "env_steps_per_s", 0):
                        best[key] = row
    rows = [best[(n, t, m)] for n in args.envs for t in counts for m in SWEEP_METHODS]
    add_sweep_ratios(rows)
    table = amdahl([r for r in rows if "error" not in r])
    info["loadavg_1min_end"] = os.getloadavg()[0]
    print(f"{info['cpu']}, {info['cores']} cores, MuJoCo {info['mujoco']}, torch "
          f"{info['torch']}; 1-min load {info['loadavg_1min']:.1f} -> "
          f"{info['loadavg_1min_end']:.1f}")
    print(format_sweep(rows))
    print(format_amdahl(table))
    write_json(args, rows, machine=info, amdahl=table)
    if args.plot:
        plot_sweep(rows, table, info, args.plot)
    return rows


def plot_sweep(rows: list[dict[str, Any]], table: list[dict[str, Any]], info: dict[str, Any],
               path: str) -> None:
    """Measured env-steps/s per thread count (points) and the Amdahl predictions (lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, method in enumerate(SWEEP_METHODS):
        color = f"C{i}"
        got = [r for r in rows if r["method"] == method and "env_steps_per_s" in r]
        ax.plot([r["threads"] for r in got], [r["env_steps_per_s"] for r in got], "o",
                color=color, label=f"{method} (measured, wall)")
        for a in (a for a in table if a["method"] == method != "sampler_torch_all"):
            # (torch_all's 1-thread row is the sampler's: its contention starts at 2 threads)
            cores = [1, *a["predicted"]]
            ax.plot(cores, [a["rate_1core_cpu"], *a["predicted"].values()], "-", color=color,
                    alpha=0.6, label=f"{method} (Amdahl, f={a['serial_fraction_cpu']:.3f})")
    ax.set(xscale="log", yscale="log", xlabel="threads (cores)", ylabel="env-steps/s",
           title=f"{', '.join(sorted({r['env'] for r in rows}))}: {info['cores']}-core "
                 f"{info['cpu']} (load {info['loadavg_1min']:.0f})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main(tyro.cli(Args))
