"""Class-indexed image data for few-shot classification, and where datasets live on disk.

Every few-shot dataset is held as one array indexed by class first, ``[classes,
images_per_class, ...]``, the layout Vinyals et al. (2016, "Matching Networks for One Shot
Learning") sample episodes from: an N-way task is N rows, its shots are entries of a row.
Nothing is downloaded: data is read from a folder the user provides or a default one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATA_ENV = "METARL_DATA"
SHARED_DATA = Path("..") / "shared" / "data"
USER_CACHE = Path("~") / ".cache" / "metarl"


@dataclass(frozen=True)
class ClassImages:
    """Images of a dataset indexed by class, with the name of each class.

    Args:
        images: ``uint8`` tensor ``[classes, images_per_class, ...]``.
        names: One name per class (e.g. ``images_background/Latin/character01``).
    """

    images: torch.Tensor
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dim() < 3 or self.images.shape[0] != len(self.names):
            raise ValueError(f"images must be [classes, images_per_class, ...] with one row per "
                             f"name ({len(self.names)}), got shape {tuple(self.images.shape)}")


def resolve_data_root(name: str, data_root: str | Path | None = None) -> Path:
    """The folder of dataset ``name``, first match wins.

    1. ``data_root`` when given;
    2. ``$METARL_DATA/<name>`` when the environment variable is set;
    3. ``../shared/data/<name>`` relative to the current directory, if it exists (the
       project's shared data folder, seen from the project root);
    4. ``~/.cache/metarl/<name>``.
    """
    if data_root is not None:
        return Path(data_root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser() / name
    shared = SHARED_DATA / name
    if shared.is_dir():
        return shared
    return USER_CACHE.expanduser() / name


def writable_dir(preferred: Path) -> Path:
    """``preferred`` if it is a writable folder, else ``~/.cache/metarl`` (created).

    A folder without any write permission bit counts as read-only even for root, who
    ``os.access`` says may write anywhere: a shared data folder marked read-only stays so.
    """
    if (preferred.is_dir() and os.access(preferred, os.W_OK)
            and preferred.stat().st_mode & 0o222):
        return preferred
    fallback = USER_CACHE.expanduser()
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def save_npz_atomic(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` via a temporary file, so readers never see half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)
