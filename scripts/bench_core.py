"""Benchmark of the meta-learning core: vmap over tasks vs the per-task loop.

Sinusoid MAML as in Finn et al. (2017): 1-40-40-1 ReLU, 10-shot support and query,
1 inner step at lr 0.01, second-order meta-gradient, Adam 1e-3. One meta-iteration is:
sample the meta-batch, :func:`metarl.core.meta_loss`, one outer Adam step. Each cell runs
in its own subprocess so its peak memory is its own: on CPU the growth of the peak
resident set over the process's size after set-up, on CUDA ``max_memory_allocated``.

The ``compiled`` columns run the learner's step with ``compile=True`` (``metarl supervised
--compile``: the inner steps, meta-loss and meta-gradient as one ``torch.compile`` graph, CUDA
graphs on CUDA); the compile time is the first iteration's, outside the timed loop, and is kept
in the JSON as ``compile_s``. ``--no-compiled`` leaves them out.

Rates are wall-clock meta-iterations per second (run it on an otherwise idle machine); the
rate per second of the process's CPU time is kept in the JSON as ``cpu_iters_per_s``.

The learn2learn 0.2.0 column runs ``l2l.algorithms.MAML`` (clone + adapt per task, its
documented MAML loop) when ``--l2l-python`` names an interpreter that can import it. On
Python 3.11 its sdist does not build (its Cython-generated C includes ``longintrepr.h``, gone
since 3.11); regenerating the C files with Cython 3.0 makes it build::

    python -m venv /tmp/l2l/venv && cd /tmp/l2l
    venv/bin/pip install "cython<3.1" setuptools wheel
    venv/bin/pip download --no-deps learn2learn==0.2.0 && tar xzf learn2learn-0.2.0.tar.gz
    (cd learn2learn-0.2.0 && ../venv/bin/cython -3 learn2learn/data/*.pyx \
        && ../venv/bin/pip install --no-build-isolation .)

(its torchvision dependency brings its own torch: the table gives each column's version).

Usage::

    nice python scripts/bench_core.py --json docs/bench_core.json \
        --l2l-python /tmp/l2l/venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

META_BATCHES = (25, 250, 1000)
NO_GPU = "n/a: no GPU"
NOT_RUN = "not run (--no-compiled)"
L2L_NA = "n/a (no --l2l-python: see the docstring for building learn2learn 0.2.0 on 3.11)"


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(meta_batch: int, device: torch.device,
           compile: bool = False) -> tuple[Any, list[Any]]:
    from metarl.core import get_algorithm
    from metarl.supervised.models import build_model
    from metarl.supervised.tasks import sample_sinusoid
    from metarl.supervised.trainer import SupervisedMetaLearner

    torch.manual_seed(0)
    learner = SupervisedMetaLearner(
        build_model("sinusoid"), algorithm=get_algorithm("maml"), inner_steps=1, inner_lr=0.01,
        head_selector=None, outer_lr=1e-3, total_steps=1, cosine=False, clip_norm=None,
        msl=False, msl_anneal_epochs=1, first_order_until=0, epoch_length=1, device=device,
        compile=compile)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        support, query = sample_sinusoid(meta_batch, 10, 10, gen)
        batches.append(tuple({k: v.to(device) for k, v in b.items()} for b in (support, query)))
    return learner, batches


def _core_iteration(learner: Any, batch: Any, vectorize: bool) -> None:
    from metarl.core import SecondOrder, meta_loss

    loss, _ = meta_loss(learner.params, learner.loss_fn, batch[0], batch[1], steps=1,
                        rule=learner.rule, keys=learner.keys, estimator=SecondOrder(),
                        vectorize=vectorize)
    learner.optimizer.step(loss)


def _l2l_setup(meta_batch: int, device: torch.device) -> tuple[Any, list[Any]]:
    import learn2learn as l2l  # only in the separate learn2learn venv

    learner, batches = _setup(meta_batch, device)
    maml = l2l.algorithms.MAML(learner.model, lr=0.01, first_order=False)
    opt = torch.optim.Adam(maml.parameters(), lr=1e-3)
    return (maml, opt), batches


def _l2l_iteration(state: Any, batch: Any) -> None:
    maml, opt = state
    opt.zero_grad()
    total = 0.0
    for t in range(batch[0]["x"].shape[0]):
        clone = maml.clone()
        clone.adapt(((clone(batch[0]["x"][t]) - batch[0]["y"][t]) ** 2).mean())
        total = total + ((clone(batch[1]["x"][t]) - batch[1]["y"][t]) ** 2).mean()
    (total / batch[0]["x"].shape[0]).backward()
    opt.step()


def worker(path: str, meta_batch: int, device_name: str, seconds: float) -> dict[str, Any]:
    """Time one cell; returns meta-iterations/s and peak memory (MiB)."""
    device = torch.device(device_name)
    if path == "l2l":
        state, batches = _l2l_setup(meta_batch, device)

        def iteration(i: int) -> None:
            _l2l_iteration(state, batches[i % len(batches)])
    elif path == "compiled":
        learner, batches = _setup(meta_batch, device, compile=True)

        def iteration(i: int) -> None:
            learner.step(*batches[i % len(batches)], i)
    else:
        learner, batches = _setup(meta_batch, device)

        def iteration(i: int) -> None:
            _core_iteration(learner, batches[i % len(batches)], path == "vmap")
    base, count = _rss_mib(), 0  # after set-up, before the first meta-iteration
    compile_start = time.perf_counter()
    iteration(0)  # warm-up (and, compiled, the compilation)
    _sync(device)
    compile_s = time.perf_counter() - compile_start
    iteration(1)
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    while count < 3 or time.process_time() - cpu_start < seconds:
        iteration(count)
        count += 1
    _sync(device)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak = (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else max(_peak_rss_mib() - base, 0.0))
    return {"iters_per_s": count / wall, "cpu_iters_per_s": count / cpu, "cpu_s": cpu,
            "wall_s": wall, "peak_mib": peak, "iterations": count,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "compile_s": compile_s}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(python: str, path: str, meta_batch: int, device: str, seconds: float,
            threads: int | None = None) -> dict[str, Any] | str:
    """Run one cell in a fresh subprocess; a string says why it could not run."""
    cmd = [python, __file__, "--worker", path, str(meta_batch), device, str(seconds)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(cell: dict[str, Any] | str) -> str:
    if isinstance(cell, str):
        return cell
    return f"{cell['iters_per_s']:.1f} it/s, {cell['peak_mib']:.0f} MiB (torch {cell['torch']})"


def run_bench(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for mb in args.meta_batches:
        vmap = measure(sys.executable, "vmap", mb, "cpu", args.seconds, args.threads)
        loop = measure(sys.executable, "loop", mb, "cpu", args.seconds, args.threads)
        ratio = (vmap["iters_per_s"] / loop["iters_per_s"]
                 if isinstance(vmap, dict) and isinstance(loop, dict) else None)
        l2l = (measure(args.l2l_python, "l2l", mb, "cpu", args.seconds, args.threads)
               if args.l2l_python
               else L2L_NA)
        gpu = torch.cuda.is_available()
        cuda = measure(sys.executable, "vmap", mb, "cuda", args.seconds) if gpu else NO_GPU
        compiled = (measure(sys.executable, "compiled", mb, "cpu", args.seconds, args.threads)
                    if args.compiled else NOT_RUN)
        compiled_cuda = (measure(sys.executable, "compiled", mb, "cuda", args.seconds)
                         if gpu and args.compiled else NO_GPU if args.compiled else NOT_RUN)
        rows.append({"meta_batch": mb, "vmap_cpu": vmap, "loop_cpu": loop, "ratio": ratio,
                     "learn2learn_cpu": l2l, "vmap_cuda": cuda, "compiled_cpu": compiled,
                     "compiled_cuda": compiled_cuda})
        print(f"meta-batch {mb}: done", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| meta-batch | vmap (CPU) | per-task loop (CPU) | vmap / loop | "
             "learn2learn 0.2.0 MAML (CPU) | vmap / learn2learn | vmap (CUDA) | "
             "compiled (CPU) | compiled / vmap (CPU) | compiled (CUDA) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = "n/a" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        l2l = r["learn2learn_cpu"]
        vs_l2l = (f"{r['vmap_cpu']['iters_per_s'] / l2l['iters_per_s']:.1f}x"
                  if isinstance(l2l, dict) and isinstance(r["vmap_cpu"], dict) else "n/a")
        comp = r.get("compiled_cpu", NOT_RUN)
        vs_eager = (f"{comp['iters_per_s'] / r['vmap_cpu']['iters_per_s']:.2f}x"
                    if isinstance(comp, dict) and isinstance(r["vmap_cpu"], dict) else "n/a")
        lines.append(f"| {r['meta_batch']} | {_fmt(r['vmap_cpu'])} | {_fmt(r['loop_cpu'])} | "
                     f"{ratio} | {_fmt(l2l)} | {vs_l2l} | {_fmt(r['vmap_cuda'])} | "
                     f"{_fmt(comp)} | {vs_eager} | "
                     f"{_fmt(r.get('compiled_cuda', NOT_RUN))} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per cell")
    parser.add_argument("--meta-batches", type=int, nargs="+", default=list(META_BATCHES))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per cell (OMP_NUM_THREADS); default: torch's")
    parser.add_argument("--compiled", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the torch.compile columns (default: yes)")
    parser.add_argument("--l2l-python", default=None,
                        help="python of a venv with learn2learn==0.2.0 and metarl importable")
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        path, mb, device, seconds = sys.argv[2:6]
        print(json.dumps(worker(path, int(mb), device, float(seconds))))
        return
    args = parse_args()
    rows = run_bench(args)
    threads = args.threads or torch.get_num_threads()
    header = (f"sinusoid MAML, 1 inner step, second order, 10-shot; {platform.machine()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}, {threads} thread(s)")
    print(header)
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"setup": header, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
