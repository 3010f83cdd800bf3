"""Omniglot few-shot results: MAML, MAML++, ANIL and NIL-at-test, and a MAML++ ablation.

Rows (``--rows``, in this order by default):

* ``{5w1s,5w5s,20w1s,20w5s}/{maml,anil,nil,mamlpp}``: Omniglot N-way K-shot (Finn et al.,
  2017 split: 1,200 training characters x4 rotations, 423 test characters), beside the
  published figures. ``nil`` trains nothing: it evaluates the ``anil`` row's run with NIL
  (Raghu et al., 2020: no head, cosine-similarity attention over the support features).
* ``ablation/{all,-msl,-da,-bnrs,-bnwb,-lslr,-ca}``: MAML++ on 5-way 1-shot with every fix,
  then with each one left out (``--mamlpp-off``); ``ablation/bn-batch`` evaluates the
  ``ablation/all`` run with batch statistics (the MAML++ reference code) instead of the
  per-step running statistics (the paper, what the MAML++ rows use).

Every run goes through ``metarl supervised`` and is evaluated on 600 test episodes (accuracy
mean +- 95% CI). Each finished row is written at once to ``--json`` (merged under a file
lock, so several copies of the script can run different rows side by side) and the table
to ``--md``; rows already done are skipped, so a rerun resumes; rows never run say so.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python scripts/fewshot_results.py --rows 5w1s/maml \
        5w1s/anil 5w1s/nil 5w1s/mamlpp --iterations 250 --meta-batch 4
    python scripts/fewshot_results.py --table-only      # rewrite the Markdown from the JSON
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from metarl.utils import machine_description

SETTINGS = {"5w1s": (5, 1), "5w5s": (5, 5), "20w1s": (20, 1), "20w5s": (20, 5)}
METHODS = ("maml", "anil", "nil", "mamlpp")
ABLATION = ("all", "-msl", "-da", "-bnrs", "-bnwb", "-lslr", "-ca", "bn-batch")
# The same runs scored with batch statistics at test (the MAML++ reference code).
RESCORED = tuple(f"{a}@batch" for a in ABLATION if a not in ("all", "-bnrs", "bn-batch"))
ROWS = (*(f"{s}/{m}" for s in SETTINGS for m in METHODS),
        *(f"ablation/{a}" for a in (*ABLATION, *RESCORED)))
# Published test accuracies (%): MAML (Finn et al., 2017), MAML++ (Antoniou et al., 2019),
# and the ANIL paper's own 20-way runs (Raghu et al., 2020, Table 2).
PUBLISHED: dict[str, dict[str, str]] = {
    "maml": {"5w1s": "98.7", "5w5s": "99.9", "20w1s": "95.8 (ANIL paper: 93.7)",
             "20w5s": "98.9 (ANIL paper: 96.4)"},
    "mamlpp": {"5w1s": "99.47", "5w5s": "99.93", "20w1s": "97.65", "20w5s": "99.33"},
    "anil": {"20w1s": "96.2", "20w5s": "98.0"},
    "nil": {"20w1s": "96.7", "20w5s": "98.0"},
}
LABELS = {"maml": "MAML", "anil": "ANIL", "nil": "NIL at test (ANIL-trained body)",
          "mamlpp": "MAML++ (all fixes; BN running statistics at test, the paper)"}



def options(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """The ``SupervisedConfig`` options of a training row."""
    group, name = row.split("/")
    ways, shots = SETTINGS.get(group, (5, 1))
    mamlpp = name == "mamlpp" or group == "ablation"
    iterations = args.ablation_iterations if group == "ablation" else args.iterations
    opts: dict[str, Any] = dict(
        task="omniglot", ways=ways, shots=shots, meta_batch=args.meta_batch,
        iterations=iterations, lr=1e-3, eval_tasks=600, seed=args.seed,
        run_root=args.run_root, progress=False, log_every=max(iterations // 10, 1),
        checkpoint_every=max(iterations // 4, 1), data_root=args.data_root)
    if mamlpp:
        # MAML++ (Antoniou et al., 2019) with fewer inner steps than its 5, to fit the CPU.
        opts.update(algo="mamlpp", inner_steps=args.mamlpp_steps, inner_lr=args.inner_lr,
                    eval_inner_steps=args.mamlpp_steps,
                    epoch_length=max(iterations // 10, 1), msl_anneal_epochs=5)
        if group == "ablation" and name != "all":
            opts["mamlpp_off"] = (name.lstrip("-"),)
    else:  # MAML's Omniglot set-up (Finn et al., 2017): 1 inner step at lr 0.4, 3 at test
        opts.update(algo=name, inner_steps=1, inner_lr=args.inner_lr, eval_inner_steps=3)
    return opts


def train_row(row: str, args: argparse.Namespace) -> dict[str, Any]:
    """Meta-train and evaluate one row; returns its JSON entry."""
    from metarl.supervised.train import SupervisedConfig, main

    opts = options(row, args)
    start = time.perf_counter()
    run_dir = main(SupervisedConfig(**opts))
    wall = time.perf_counter() - start
    result = json.loads((run_dir / "eval.json").read_text())
    return {"status": "done", "iterations": opts["iterations"],
            "meta_batch": opts["meta_batch"], "inner_steps": opts["inner_steps"],
            "accuracy": result["final_accuracy"], "ci95": result["final_ci95"],
            "accuracy_per_step": result["accuracy_mean"], "bn_eval": result["bn_eval"],
            "eval_tasks": result["tasks"], "wall_s": wall, "run_dir": str(run_dir),
            "options": {k: v for k, v in opts.items() if k not in ("run_root", "data_root")}}


def eval_row(row: str, results: dict[str, Any]) -> dict[str, Any]:
    """NIL (on the ANIL run) or batch-statistics (on the MAML++ run) evaluations."""
    from metarl.supervised.evaluate_cmd import evaluate_run

    group, name = row.split("/")
    source = {"nil": f"{group}/anil", "bn-batch": "ablation/all"}.get(
        name, f"ablation/{name.removesuffix('@batch')}")
    base = results.get(source, {})
    if base.get("status") != "done":
        return {"status": f"not run (needs the {source} row)"}
    start = time.perf_counter()
    tag = f"results-{name.replace('@', '-')}-{int(time.time())}"
    if name == "nil":
        result = evaluate_run(base["run_dir"], nil=True, out=tag)
        accuracy, ci95 = result["nil_accuracy"], result["nil_ci95"]
    else:
        result = evaluate_run(base["run_dir"], bn_eval="batch", out=tag)
        accuracy, ci95 = result["final_accuracy"], result["final_ci95"]
    return {"status": "done", "iterations": base["iterations"],
            "meta_batch": base["meta_batch"], "inner_steps": 0 if name == "nil" else
            base["inner_steps"], "accuracy": accuracy, "ci95": ci95,
            "bn_eval": result["bn_eval"], "eval_tasks": result["tasks"],
            "wall_s": base["wall_s"], "eval_wall_s": time.perf_counter() - start,
            "run_dir": base["run_dir"], "evaluation": result["path"]}


@contextlib.contextmanager
def locked(path: Path) -> Iterator[dict[str, Any]]:
    """The results JSON, read and written back under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives outside the repository (one per results file name).
    with open(Path(tempfile.gettempdir()) / f"{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {"rows": {}}
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


def cell(entry: dict[str, Any] | None) -> tuple[str, str, str]:
    """Accuracy +- CI, iterations x meta-batch, wall-clock of a row (or "not run")."""
    if not entry or entry.get("status") != "done":
        return (entry or {}).get("status", "not run"), "", ""
    acc = f"{100 * entry['accuracy']:.1f} +- {100 * entry['ci95']:.1f}"
    length = f"{entry['iterations']} x {entry['meta_batch']}"
    wall = f"{entry['wall_s'] / 60:.1f} min"
    if "eval_wall_s" in entry:
        wall += f" (+ {entry['eval_wall_s'] / 60:.1f} min eval)"
    return acc, length, wall


def table(data: dict[str, Any]) -> str:
    """The Markdown tables of every row, run or not."""
    rows = data["rows"]
    lines = ["| setting | method | test accuracy % (600 episodes, 95% CI) | published % | "
             "iterations x meta-batch | wall-clock |", "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        for method in METHODS:
            entry, label = rows.get(f"{setting}/{method}"), LABELS[method]
            if (setting, method) == ("5w1s", "mamlpp") and (entry or {}).get("status") != "done" \
                    and rows.get("ablation/all", {}).get("status") == "done":
                entry, label = rows["ablation/all"], f"{label}: the ablation's run"
            acc, length, wall = cell(entry)
            published = PUBLISHED.get(method, {}).get(setting, "-")
            lines.append(f"| {setting} | {label} | {acc} | {published} | {length} | {wall} |")
            rescored = rows.get("ablation/bn-batch", {})
            if label.endswith("the ablation's run") and rescored.get("status") == "done":
                acc, length, wall = cell(rescored)
                lines.append(f"| {setting} | {LABELS[method]}, the same run scored with BN "
                             f"batch statistics (reference code) | {acc} | {published} | "
                             f"{length} | {wall} |")
    lines += ["", "Ablation (5-way 1-shot, MAML++ with one fix left out; test accuracy %, 600 "
              "episodes, 95% CI, with the per-step running statistics at test as the paper, "
              "and the same run with batch statistics as the reference code):", "",
              "| variant | BN running statistics at test (paper) | BN batch statistics at "
              "test (reference code) | iterations x meta-batch | wall-clock |",
              "|---|---|---|---|---|"]
    for name in ABLATION[:-1]:
        acc, length, wall = cell(rows.get(f"ablation/{name}"))
        rescored = "bn-batch" if name == "all" else f"{name}@batch"
        batch, _, _ = cell(rows.get(f"ablation/{rescored}"))
        if name == "-bnrs":  # no running statistics: evaluated with batch statistics
            acc, batch = "n/a (no running statistics)", acc
        label = "all fixes" if name == "all" else f"without {name.lstrip('-').upper()}"
        lines.append(f"| {label} | {acc} | {batch} | {length} | {wall} |")
    lines += ["", f"Machine: {data.get('machine', machine())}."]
    return "\n".join(lines) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    """A bar per finished row: test accuracy with its 95% CI, chance marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [(row, e) for row, e in data["rows"].items() if e.get("status") == "done"]
    done.sort(key=lambda item: ROWS.index(item[0]))
    labels = [f"{row} ({e['iterations']} x {e['meta_batch']}, BN {e['bn_eval']})"
              for row, e in done]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(done) + 1.5))
    ax.barh(range(len(done)), [100 * e["accuracy"] for _, e in done],
            xerr=[100 * e["ci95"] for _, e in done], color="tab:blue", capsize=3)
    ways = {row: SETTINGS.get(row.split("/")[0], (5, 1))[0] for row, _ in done}
    for i, (row, _) in enumerate(done):
        ax.plot([100 / ways[row]] * 2, [i - 0.4, i + 0.4], color="tab:red")
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy % (600 episodes; bars: 95% CI; red: chance)")
    ax.set_title("Omniglot, short CPU runs (docs/fewshot.md)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS)
    parser.add_argument("--iterations", type=int, default=250)
    parser.add_argument("--ablation-iterations", type=int, default=100)
    parser.add_argument("--meta-batch", type=int, default=4)
    parser.add_argument("--mamlpp-steps", type=int, default=2)
    parser.add_argument("--inner-lr", type=float, default=0.4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--run-root", default="runs/fewshot_results")
    parser.add_argument("--json", type=Path, default=Path("docs/fewshot_results.json"))
    parser.add_argument("--md", type=Path, default=Path("docs/fewshot_results.md"))
    parser.add_argument("--table-only", action="store_true")
    return parser.parse_args()


def machine() -> str:
    """The shared machine line plus this script's threads."""
    return (f"{machine_description()} (shared with other sessions), "
            f"{torch.get_num_threads()} thread(s) per run")


def main() -> None:
    args = parse()
    torch.set_num_threads(args.threads)
    for row in [] if args.table_only else args.rows:
        with locked(args.json) as data:
            if data["rows"].get(row, {}).get("status") == "done":
                continue
            results = dict(data["rows"])
        print(f"== {row}", flush=True)
        _, name = row.split("/")
        entry = (eval_row(row, results) if name in ("nil", "bn-batch") or "@" in name
                 else train_row(row, args))
        with locked(args.json) as data:
            data["rows"][row] = entry
            data["machine"] = machine()
        print(f"== {row}: {cell(entry)}", flush=True)
    with locked(args.json) as data:
        text = table(data)
    args.md.write_text(text)
    if data["rows"]:
        plot(data, args.md.with_suffix(".png"))
    print(text)


if __name__ == "__main__":
    main()

