"""One small logger: ``record(key, value)`` then ``dump(step)`` to TensorBoard and the console.

Tags are namespaced (``adapt/return_step0``, ``trpo/kl``, ``time/env_steps_per_s``); the
hyper-parameter table is written once as TensorBoard text. No module-level state: every run
owns its logger (after SB3 ``common/logger.py`` and cleanrl's ``SummaryWriter`` use).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from torch.utils.tensorboard import SummaryWriter


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically (temp file + rename): a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


class Logger:
    """Accumulates scalars for one step and writes them to TensorBoard and the console.

    Args:
        run_dir: folder for TensorBoard event files; ``None`` logs to the console only.
        console: print a compact line per ``dump``.
        console_keys: the keys shown on the console (all recorded keys if ``None``).
        stream: where console lines go (default: ``sys.stdout`` at the time of writing).
    """

    def __init__(self, run_dir: str | Path | None, *, console: bool = True,
                 console_keys: tuple[str, ...] | None = None, stream: TextIO | None = None,
                 purge_step: int | None = None) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer = (SummaryWriter(str(self.run_dir), purge_step=purge_step)
                       if self.run_dir is not None else None)
        self.console = console
        self.console_keys = console_keys
        self.stream = stream
        self._values: dict[str, float] = {}

    def record(self, key: str, value: float) -> None:
        self._values[key] = float(value)

    def record_dict(self, values: Mapping[str, float], prefix: str = "") -> None:
        for k, v in values.items():
            self.record(f"{prefix}{k}", v)

    def dump(self, step: int) -> dict[str, float]:
        """Write every recorded value at ``step``, clear them, and return what was written."""
        values, self._values = self._values, {}
        if self.writer is not None:
            for k, v in values.items():
                if math.isfinite(v):
                    self.writer.add_scalar(k, v, step)
            self.writer.flush()
        if self.console and values:
            keys = self.console_keys or tuple(values)
            shown = " ".join(f"{k.split('/')[-1]}={_fmt(values[k])}" for k in keys if k in values)
            if shown:  # nothing of console_keys recorded this step: no empty line
                print(f"[{step}] {shown}", file=self.stream or sys.stdout, flush=True)
        return values

    def log_hparams(self, config: Mapping[str, Any]) -> None:
        """Write the hyper-parameter table once, as a Markdown table in TensorBoard's text tab."""
        if self.writer is None:
            return
        rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(config.items()))
        self.writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{rows}", 0)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _fmt(v: float) -> str:
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


def read_scalars(run_dir: str | Path, tag: str) -> dict[int, float]:
    """The TensorBoard scalar ``tag`` that :class:`Logger` wrote into ``run_dir``, by step
    (every events file of the folder; a later file wins a step, as after a resume)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[int, float] = {}
    for events in sorted(Path(run_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            out.update({e.step: e.value for e in acc.Scalars(tag)})
    return out
