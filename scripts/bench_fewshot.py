"""Few-shot meta-iteration speed: one vmap over tasks vs the per-task loop, and peak memory of
first- vs second-order meta-gradients.

The set-up of the issue: Omniglot 5-way 1-shot (1 query per class, as MAML's code), the
Conv-4 (64 filters, 28x28), meta-batch 32, 5 inner steps, second-order MAML. A
meta-iteration is ``metarl.core.meta_loss`` (``vectorize=True``: one ``torch.func.vmap``;
``False``: a Python loop over tasks) plus its backward pass, what
:class:`~metarl.supervised.fewshot.ClassificationMetaLearner` runs before its Adam step.
Images are random (speed does not depend on the pixels), so the bench needs no dataset.

Peak memory is measured in a fresh subprocess per setting: on CPU the growth of the
process's peak resident set (``ru_maxrss``) over one meta-iteration, on CUDA
``torch.cuda.max_memory_allocated``. The CPU figure includes allocator slack, so read it
as an order of magnitude. The CUDA column says "n/a" where there is no GPU.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/bench_fewshot.py --json docs/bench_fewshot.json
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

from metarl.core import FirstOrder, InnerLR, SecondOrder, get_params, meta_loss
from metarl.supervised.conv4 import Conv4
from metarl.supervised.fewshot import classification_loss

WAYS, SHOTS, QUERIES, META_BATCH, STEPS = 5, 1, 1, 32, 5


def problem(device: torch.device, meta_batch: int) -> tuple[Conv4, Any, Any]:
    """The Conv-4 and one meta-batch of random 5-way 1-shot episodes on ``device``."""
    torch.manual_seed(0)
    model = Conv4(WAYS, steps=STEPS).to(device)

    def part(per_class: int) -> dict[str, torch.Tensor]:
        n = WAYS * per_class
        return {"x": torch.rand(meta_batch, n, 1, 28, 28, device=device),
                "y": torch.arange(WAYS, device=device).repeat_interleave(per_class)
                .expand(meta_batch, n).contiguous()}

    return model, part(SHOTS), part(QUERIES)


def iteration(model: Conv4, support: Any, query: Any, *, vectorize: bool,
              second_order: bool) -> None:
    """One meta-iteration: the meta-loss over the meta-batch and its backward pass."""
    params = get_params(model)
    rule = InnerLR(tuple(params), STEPS, 0.4, "fixed").to(support["x"].device)
    loss, _ = meta_loss(params, classification_loss(model), support, query, steps=STEPS,
                        rule=rule, keys=tuple(params),
                        estimator=SecondOrder() if second_order else FirstOrder(),
                        vectorize=vectorize)
    loss.backward()
    model.zero_grad(set_to_none=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(device: torch.device, vectorize: bool, repeats: int, meta_batch: int) -> float:
    """Meta-iterations per second (best of ``repeats`` after one warm-up)."""
    model, support, query = problem(device, meta_batch)
    iteration(model, support, query, vectorize=vectorize, second_order=True)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        iteration(model, support, query, vectorize=vectorize, second_order=True)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 1.0 / best


def child_memory(device: torch.device, second_order: bool, meta_batch: int) -> float:
    """Peak memory (MiB) one meta-iteration adds, measured in this (fresh) process."""
    model, support, query = problem(device, meta_batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        iteration(model, support, query, vectorize=True, second_order=second_order)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    small = problem(device, 1)  # warm-up at one task: one-off allocations happen here
    iteration(*small, vectorize=True, second_order=second_order)
    del small
    # The resident set now (not the peak so far, which the warm-up may have set) ...
    base = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    iteration(model, support, query, vectorize=True, second_order=second_order)
    # ... against the peak after the iteration (ru_maxrss is in KiB on Linux).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(peak - base, 0) / 2**20


def memory(device: str, second_order: bool, threads: int, meta_batch: int) -> float:
    """:func:`child_memory` in a subprocess, so each setting starts from a fresh peak."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", "second" if second_order else "first",
         "--device", device, "--threads", str(threads), "--meta-batch", str(meta_batch)],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH":
                                                          str(Path(__file__).parents[1])})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"])


def column(device: str, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of one device."""
    dev = torch.device(device)
    vmap = speed(dev, True, args.repeats, args.meta_batch)
    loop = speed(dev, False, args.repeats, args.meta_batch)
    first = memory(device, False, args.threads, args.meta_batch)
    second = memory(device, True, args.threads, args.meta_batch)
    return {"vmap_iters_per_s": vmap, "loop_iters_per_s": loop, "vmap_speedup": vmap / loop,
            "peak_mib_first_order": first, "peak_mib_second_order": second}


def table(results: dict[str, Any]) -> str:
    devices = results["devices"]
    names = list(devices)
    rows = [("meta-iterations/s, vmap over tasks", "vmap_iters_per_s", "{:.3f}"),
            ("meta-iterations/s, per-task loop", "loop_iters_per_s", "{:.3f}"),
            ("vmap speed-up over the loop", "vmap_speedup", "{:.2f}x"),
            ("peak memory of one iteration, first order (MiB)", "peak_mib_first_order",
             "{:.0f}"),
            ("peak memory of one iteration, second order (MiB)", "peak_mib_second_order",
             "{:.0f}")]
    lines = ["| 5-way 1-shot Conv-4, meta-batch {mb}, {st} inner steps, second order | "
             .format(mb=results["meta_batch"], st=STEPS) + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for label, key, fmt in rows:
        cells = [fmt.format(d[key]) if isinstance(d, dict) else d for d in devices.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nMachine: {results['machine']}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--meta-batch", type=int, default=META_BATCH)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=("first", "second"), default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child is not None:
        peak = child_memory(torch.device(args.device), args.child == "second", args.meta_batch)
        print(json.dumps({"peak_mib": peak}))
        return
    devices: dict[str, Any] = {"cpu": column("cpu", args)}
    if torch.cuda.is_available():
        devices["cuda"] = column("cuda", args)
    else:
        devices["cuda"] = "n/a: no GPU here"
    results = {"meta_batch": args.meta_batch, "ways": WAYS, "shots": SHOTS,
               "queries_per_class": QUERIES, "inner_steps": STEPS, "devices": devices,
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} "
                          f"cores (shared with other sessions), torch {torch.__version__}, "
                          f"{args.threads} thread(s)"}
    text = table(results)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
