"""mini-ImageNet (Vinyals et al., 2016) from its standard cache pickles.

The split of Ravi & Larochelle (2017, "Optimization as a Model for Few-Shot Learning"):
64 meta-training, 16 validation and 20 test classes of 600 84x84 RGB images each, stored
as ``mini-imagenet-cache-{train,validation,test}.pkl``, each a dict with ``image_data``
(``uint8 [N, 84, 84, 3]``) and ``class_dict`` (class name -> list of row indices), as
distributed with e.g. learn2learn's ``MiniImagenet``. Nothing is downloaded.

Pickles can run code when loaded, so the reader only rebuilds NumPy arrays and builtin
containers and refuses any other global.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metarl.supervised.image_data import ClassImages, resolve_data_root

SPLITS = ("train", "validation", "test")
# What NumPy arrays reduce to; protocol 2 also spells Python 3 bytes as _codecs.encode.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"), ("numpy", "ndarray"), ("numpy", "dtype"),
            ("_codecs", "encode")}
_CORE = "numpy._core" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays only (any pickle protocol, NumPy 1 or 2 module names)."""

    def find_class(self, module: str, name: str) -> Any:
        canonical = module.replace("numpy._core", "numpy.core")
        if (canonical, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a mini-ImageNet "
                                         f"pickle holds only NumPy arrays, lists and dicts")
        return super().find_class(canonical.replace("numpy.core", _CORE), name)


def load_mini_imagenet(split: str, data_root: str | Path | None = None) -> ClassImages:
    """One split of mini-ImageNet as ``uint8 [classes, images_per_class, 3, 84, 84]``.

    Args:
        split: One of ``SPLITS``.
        data_root: Folder holding the pickles. ``None`` resolves
            ``$METARL_DATA/mini-imagenet``, else ``../shared/data/mini-imagenet`` relative to
            the current directory if it exists, else ``~/.cache/metarl/mini-imagenet``.

    Returns:
        Classes sorted by name, images in the order of their ``class_dict`` indices.

    Raises:
        FileNotFoundError: When the pickle is missing.
        ValueError: For an unknown split, or a pickle without the standard layout.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    path = resolve_data_root("mini-imagenet", data_root) / f"mini-imagenet-cache-{split}.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"mini-ImageNet not found: {path} is missing (the standard "
                                f"cache pickles mini-imagenet-cache-{{{','.join(SPLITS)}}}.pkl; "
                                f"pass data_root= or set $METARL_DATA)")
    with open(path, "rb") as f:
        cache = _ArrayUnpickler(f, encoding="latin1").load()
    image_data, class_dict = _check_cache(cache, path)
    names = sorted(class_dict)
    rows = np.stack([image_data[np.asarray(class_dict[n], dtype=np.int64)] for n in names])
    return ClassImages(torch.from_numpy(rows).permute(0, 1, 4, 2, 3).contiguous(), tuple(names))


def _check_cache(cache: Any, path: Path) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The pickle's ``image_data`` and ``class_dict``, checked for the standard layout."""
    if not isinstance(cache, dict) or not {"image_data", "class_dict"} <= set(cache):
        raise ValueError(f"{path} must hold a dict with keys image_data and class_dict")
    image_data, class_dict = cache["image_data"], cache["class_dict"]
    if (not isinstance(image_data, np.ndarray) or image_data.dtype != np.uint8
            or image_data.ndim != 4 or image_data.shape[-1] != 3):
        raise ValueError(f"{path}: image_data must be uint8 [N, H, W, 3], got "
                         f"{getattr(image_data, 'dtype', type(image_data))} "
                         f"{getattr(image_data, 'shape', '')}")
    counts = {name: len(rows) for name, rows in class_dict.items()}
    if not counts or len(set(counts.values())) != 1:
        raise ValueError(f"{path}: class_dict must give every class the same number of "
                         f"images, got {counts}")
    out_of_range = [n for n, rows in class_dict.items()
                    if min(rows) < 0 or max(rows) >= image_data.shape[0]]
    if out_of_range:
        raise ValueError(f"{path}: class_dict rows of {out_of_range} are outside image_data "
                         f"(0..{image_data.shape[0] - 1})")
    return image_data, class_dict
