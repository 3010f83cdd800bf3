"""Seeding, RNG states, confidence intervals, adaptation plots and the machine line of the
benchmark and results scripts (run folders and checkpoints: :mod:`metarl.runs`)."""

from __future__ import annotations

import math
import os
import platform
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Two-sided 95% Student-t critical values for df = 1..30; 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


# Seeds are drawn in [0, SEED_BOUND) everywhere (torch, NumPy and MuJoCo all accept them).
SEED_BOUND = 2**31 - 1
# Held-out evaluation seeds are EVAL_SEED_BASE + 0, 1, ...: fixed (not the training seed), so
# runs are compared on the same episodes and held-out tasks.
EVAL_SEED_BASE = 1_000_000


def machine_description() -> str:
    """CPU model (``/proc/cpuinfo``, else the platform), usable cores, the GPU when there is
    one, and torch's version: the machine every script's table and JSON names."""
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


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A seed in ``[0, SEED_BOUND)`` from ``generator`` (torch's global RNG when None)."""
    return int(torch.randint(SEED_BOUND, (), generator=generator))


def check_seed(name: str, seed: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``0 <= seed < SEED_BOUND``."""
    if isinstance(seed, bool) or not 0 <= seed < SEED_BOUND:
        raise ValueError(f"{name} must be an int in [0, {SEED_BOUND}), got {seed!r}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, for checkpoints (a resumed run continues the same trajectory)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def mean_ci95(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t confidence interval (0 for one value)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("mean_ci95 needs at least one value")
    if x.size == 1:
        return float(x[0]), 0.0
    df = x.size - 1
    t = _T95[df - 1] if df <= len(_T95) else 1.96
    return float(x.mean()), float(t * x.std(ddof=1) / math.sqrt(x.size))


def plot_adaptation(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                    path: str | Path, *, title: str, ylabel: str,
                    xlabel: str = "inner steps") -> Path:
    """Plot the mean per inner step of each labelled curve with its 95% CI as a shaded band
    (the legend says so) and save a PNG.

    Args:
        curves: label -> (means, ci_half_widths), indexed by inner step 0..K.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (label, (mean, ci)) in enumerate(curves.items()):
        m, c = np.asarray(mean, dtype=float), np.asarray(ci, dtype=float)
        steps = np.arange(len(m))
        (line,) = ax.plot(steps, m, marker="o", label=f"{label} (mean)")
        ax.fill_between(steps, m - c, m + c, alpha=0.25, color=line.get_color(),
                        label="95% CI" if i == 0 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.set_xticks(np.arange(max(len(v[0]) for v in curves.values())))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
