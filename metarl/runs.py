"""Run folders and checkpoints, shared by ``metarl train`` and ``metarl supervised``.

A run lives in ``runs/<env>__<algo>__<seed>__<time>/`` with ``config.json``,
``checkpoints/ckpt_<iteration>.pt`` (atomic writes; the newest two are kept) and, for each
standalone ``metarl evaluate``, its own ``evaluations/<name>.json|.png`` plus TensorBoard
events in ``evaluations/<name>/``, so an evaluation never overwrites the run's results.
Checkpoints are written after the first iteration, then every N iterations or M minutes
(:class:`CheckpointSchedule`); a truncated or corrupt newest checkpoint is reported by name
and the previous good one is loaded instead (:func:`load_latest`). Each checkpoint has a
SHA-256 digest beside it (``ckpt_<iteration>.pt.sha256``) because ``torch.load`` does not
notice damaged tensor bytes inside an intact zip archive.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# Written into every checkpoint; 1 means a checkpoint from before this key existed.
CHECKPOINT_FORMAT = 2


class RunError(ValueError):
    """A run folder cannot be used as asked (no readable checkpoint, too few iterations to
    resume): the command reports the message, without a traceback, and exits with 2."""


def make_run_dir(root: str | Path, env: str, algo: str, seed: int) -> Path:
    """``<root>/<env>__<algo>__<seed>__<YYYYmmdd-HHMMSS>``, created (suffixed if it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{env}__{algo}__{seed}__{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    (path / "checkpoints").mkdir(parents=True)
    return path


def save_checkpoint(run_dir: str | Path, iteration: int, state: Mapping[str, Any],
                    keep: int = 2) -> Path:
    """Atomically write ``checkpoints/ckpt_<iteration>.pt`` and its digest (each a temp file +
    rename, the digest first) and keep the newest ``keep`` checkpoints, so a crash loses at
    most the work since the last one."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"ckpt_{iteration:08d}.pt"
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, **state}, buffer)
    data = buffer.getvalue()
    _write_atomic(digest_path(path), hashlib.sha256(data).hexdigest().encode())
    _write_atomic(path, data)
    for old in checkpoints(run_dir)[:-keep]:
        old.unlink()
        digest_path(old).unlink(missing_ok=True)
    return path


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def digest_path(path: str | Path) -> Path:
    """The SHA-256 digest file of checkpoint ``path``."""
    return Path(f"{path}.sha256")


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob("ckpt_*.pt"))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint of ``run_dir`` (None when there is none)."""
    found = checkpoints(run_dir)
    return found[-1] if found else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """One checkpoint, on ``map_location`` (CPU by default: a GPU run loads anywhere).

    Raises:
        ValueError: When the file does not match its digest (checkpoints from before digests
            have none and load unchecked).
    """
    data = Path(path).read_bytes()
    digest = digest_path(path)
    if digest.is_file() and hashlib.sha256(data).hexdigest() != digest.read_text().strip():
        raise ValueError(f"its SHA-256 does not match {digest.name} (the file is damaged)")
    state: dict[str, Any] = torch.load(io.BytesIO(data), map_location=map_location,
                                       weights_only=False)
    state.setdefault("format", 1)
    return state


def load_latest(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that loads; a bad one is named on stderr and skipped.

    Raises:
        RunError: When the run has no checkpoint, or none of them loads.
    """
    found = checkpoints(run_dir)
    if not found:
        raise RunError(no_checkpoint_message("run_dir", run_dir))
    errors = []
    for path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except Exception as err:  # noqa: BLE001  (truncated file, bad pickle, zip error, ...)
            errors.append(f"{path.name}: {type(err).__name__}: {err}")
            print(f"warning: checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                  f"trying the previous one", file=sys.stderr)
    raise RunError(f"no checkpoint of {str(run_dir)!r} can be read: {'; '.join(errors)}")


def no_checkpoint_message(name: str, run_dir: str | Path) -> str:
    return (f"{name}: the run folder {str(run_dir)!r} has no checkpoint yet (the run stopped "
            f"before its first one, written after iteration 1); nothing to resume or "
            f"evaluate: start a new run")


def saved_options(run_dir: str | Path, kind: str, names: set[str]) -> dict[str, Any]:
    """The options of ``names`` saved in ``run_dir/config.json`` by a run of ``kind``.

    Raises:
        ValueError: Naming ``run_dir`` when the run is of another kind.
    """
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    if saved.get("kind") != kind:
        raise ValueError(f"run_dir must be a metarl {kind} run (config.json kind {kind!r}), "
                         f"got kind {saved.get('kind')!r} in {run_dir}")
    return {k: v for k, v in saved.items() if k in names}


def check_run_dir(name: str, path: str | Path) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``path`` is a run folder with
    ``config.json`` and at least one checkpoint, saying which of the two is missing."""
    run = Path(path)
    if not (run / "config.json").is_file():
        raise ValueError(f"{name} must be a metarl run folder (with config.json), got "
                         f"{str(path)!r}")
    if not checkpoints(run):
        raise ValueError(no_checkpoint_message(name, path))


@dataclass
class CheckpointSchedule:
    """When to checkpoint: after the first iteration, then every ``every`` iterations or
    ``minutes`` minutes since the last checkpoint, whichever comes first.

    Args:
        every: Iterations between checkpoints (>= 1).
        minutes: Minutes between checkpoints (> 0; ``inf`` disables the clock).
        timer: Seconds since an arbitrary origin (tests inject a fake).
    """

    every: int
    minutes: float
    timer: Callable[[], float] = time.monotonic
    _last: float = field(default=math.nan, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or self.every < 1:
            raise ValueError(f"checkpoint_every must be an int >= 1, got {self.every}")
        if not self.minutes > 0:
            raise ValueError(f"checkpoint_minutes must be a number > 0, got {self.minutes}")
        self._last = self.timer()

    def due(self, iteration: int, first: int = 1) -> bool:
        """Whether to checkpoint after ``iteration`` (``first``: the run's first iteration)."""
        elapsed_min = (self.timer() - self._last) / 60.0
        return iteration == first or iteration % self.every == 0 or elapsed_min >= self.minutes

    def saved(self) -> None:
        """Restart the clock (call after every checkpoint)."""
        self._last = self.timer()


def evaluation_paths(run_dir: str | Path, name: str | None, iteration: int) -> Path:
    """``run_dir/evaluations/<name>``: the stem of a standalone evaluation's outputs.

    ``name=None`` picks ``iter<iteration>-<YYYYmmdd-HHMMSS>`` (suffixed when taken).

    Raises:
        ValueError: Naming ``out`` when a given name is taken (an evaluation is never
            overwritten) or is not a plain file stem.
    """
    folder = Path(run_dir) / "evaluations"
    if name is not None:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"out must be a plain file stem (no '/'), got {name!r}")
        stem = folder / name
        if _taken(stem):
            raise ValueError(f"out: {stem}.json already exists; evaluations are never "
                             f"overwritten: choose another --out")
        return stem
    base = folder / f"iter{iteration:06d}-{time.strftime('%Y%m%d-%H%M%S')}"
    stem, i = base, 1
    while _taken(stem):
        stem, i = Path(f"{base}-{i}"), i + 1
    return stem


def _taken(stem: Path) -> bool:
    return stem.with_suffix(".json").exists() or stem.exists()


@dataclass
class NonfiniteGuard:
    """Stops a run whose updates stay non-finite, shared by ``metarl train`` and ``supervised``.

    The updaters (TRPO, the outer Adam) already skip a non-finite update, leaving the
    parameters untouched; :meth:`record` after each update warns about a skipped one on
    stderr and counts them in a row. The loops write no scheduled checkpoint during such a
    streak (:attr:`clear`), so the newest checkpoint holds the last good state.

    Args:
        limit: Skipped updates in a row that stop the run (``--max-nonfinite-updates``).
        run_dir: The run folder (the stop message names its newest checkpoint).
        advice: What to check, for the stop message.
    """

    limit: int
    run_dir: Path
    advice: str
    streak: int = 0
    first: int = 0
    last: int = 0
    cause: str = ""

    @property
    def clear(self) -> bool:
        """Whether the last update was applied (no streak of skipped ones)."""
        return self.streak == 0

    def record(self, skipped: bool, iteration: int, cause: str) -> bool:
        """Count update ``iteration``; returns True when the run must stop (:meth:`error`)."""
        if not skipped:
            self.streak = 0
            return False
        if self.streak == 0:
            self.first = iteration
        self.streak, self.last, self.cause = self.streak + 1, iteration, cause
        from tqdm import tqdm

        tqdm.write(f"warning: iteration {iteration}: the update was skipped ({cause}); "
                   f"{self.streak} in a row, the run stops at {self.limit} "
                   f"(--max-nonfinite-updates)", file=sys.stderr)
        return self.streak >= self.limit

    def error(self) -> RunError:
        """The :class:`RunError` that stops the run: how many, what to check, where to resume."""
        newest = latest_checkpoint(self.run_dir)
        if newest is None:
            where = ("no checkpoint was written (no update of this run was applied): start a "
                     "new run once the cause is fixed")
        else:
            where = (f"the newest checkpoint, {newest.name} (iteration "
                     f"{int(newest.stem.split('_')[-1])}), holds the last good state: "
                     f"--resume {self.run_dir} continues from it")
        return RunError(f"stopped: {self.streak} consecutive updates were skipped as non-finite "
                        f"(iterations {self.first}..{self.last}; the last: {self.cause}); "
                        f"{self.advice}, or allow more with --max-nonfinite-updates (now "
                        f"{self.limit}); {where}")
