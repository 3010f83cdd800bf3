"""Omniglot (Lake et al., 2015, Science): 1,623 characters x 20 drawings, resized to 28x28.

The dataset is read from its own two archives, ``images_background.zip`` (30 alphabets,
964 characters) and ``images_evaluation.zip`` (20 alphabets, 659 characters), or from the
extracted folders ``images_background/`` and ``images_evaluation/`` (layout
``images_*/<Alphabet>/characterNN/<id>_<drawer>.png``). Nothing is downloaded.

Every drawing is resized once to 28x28 as in MAML's preprocessing (Finn et al., 2017,
``Image.resize((28, 28), resample=Image.LANCZOS)``) and inverted (MAML's ``1 - x``), so
ink is 255 and background 0. Note that Pillow silently resizes 1-bit images with
``NEAREST`` whatever filter is asked, so MAML's script, run on the 1-bit PNGs, produced
nearest-neighbour binary images; here drawings are converted to 8-bit grey first, so
``lanczos`` really filters, and ``nearest`` reproduces the reference pixels.

The result, ``[1623, 20, 28, 28]`` uint8, is cached as an ``.npz`` keyed by the sources'
sizes and modification times, and reloaded from there without opening the archives.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from metarl.supervised.image_data import (
    ClassImages,
    resolve_data_root,
    save_npz_atomic,
    writable_dir,
)

PARTS = ("images_background", "images_evaluation")
DRAWINGS = 20
IMAGE_SIZE = 28
RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "box": Image.Resampling.BOX,
            "nearest": Image.Resampling.NEAREST}
CACHE_VERSION = 1
URL = "https://github.com/brendenlake/omniglot"


def load_omniglot(data_root: str | Path | None = None, *, cache_dir: str | Path | None = None,
                  resample: str = "lanczos") -> ClassImages:
    """All Omniglot characters as ``uint8 [characters, 20, 28, 28]`` (255 = ink).

    Characters are ordered by part (background, then evaluation), alphabet and character
    folder; drawings by file name. Ids used by splits index this order.

    Args:
        data_root: Folder holding the two archives or extracted folders. ``None`` resolves
            ``$METARL_DATA/omniglot``, else ``../shared/data/omniglot`` relative to the
            current directory if it exists, else ``~/.cache/metarl/omniglot``.
        cache_dir: Where the resized cache goes; ``None``: next to the data if that folder
            is writable, else ``~/.cache/metarl``.
        resample: Pillow filter of the resize, one of ``RESAMPLE``.

    Raises:
        FileNotFoundError: When either part is missing (naming both and where Omniglot is
            published).
        ValueError: For an unknown ``resample`` or a character without 20 drawings.
    """
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {tuple(RESAMPLE)}, got {resample!r}")
    root = resolve_data_root("omniglot", data_root)
    sources = find_sources(root)
    folder = writable_dir(root) if cache_dir is None else Path(cache_dir).expanduser()
    cache = folder / f"omniglot{IMAGE_SIZE}_{resample}_{cache_key(sources, resample)}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return ClassImages(torch.from_numpy(stored["images"]), tuple(map(str, stored["names"])))
    images, names = read_sources(sources, RESAMPLE[resample])
    folder.mkdir(parents=True, exist_ok=True)
    save_npz_atomic(cache, images=images, names=np.array(names))
    return ClassImages(torch.from_numpy(images), tuple(names))


def find_sources(root: Path) -> list[Path]:
    """Per part, its ``.zip`` archive if present, else its extracted folder."""
    sources = []
    for part in PARTS:
        archive, folder = root / f"{part}.zip", root / part
        if archive.is_file():
            sources.append(archive)
        elif folder.is_dir():
            sources.append(folder)
        else:
            raise FileNotFoundError(
                f"Omniglot not found: {archive} (or the folder {folder}/) is missing; the "
                f"dataset needs both {PARTS[0]}.zip and {PARTS[1]}.zip, published at {URL} "
                f"(python/); pass data_root= or set $METARL_DATA to the folder holding them")
    return sources


def cache_key(sources: list[Path], resample: str) -> str:
    """A short hash of every source file's size, mtime and name relative to the data root
    (the archives' or the PNGs'), so the same data reached by another path shares a cache."""
    digest = hashlib.sha256(f"v{CACHE_VERSION} {IMAGE_SIZE} {resample}".encode())
    for source in sources:
        files = [source] if source.is_file() else sorted(source.glob("*/*/*.png"))
        for path in files:
            stat, name = path.stat(), path.relative_to(source.parent).as_posix()
            digest.update(f"{name} {stat.st_size} {stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_sources(sources: list[Path],
                 resample: Image.Resampling) -> tuple[np.ndarray, list[str]]:
    """Decode, resize and invert every drawing; ``([characters, 20, 28, 28], names)``."""
    rows: list[np.ndarray] = []
    names: list[str] = []
    for source in sources:
        for name, drawings in _characters(source):
            if len(drawings) != DRAWINGS:
                raise ValueError(f"character {name} in {source} has {len(drawings)} drawings; "
                                 f"Omniglot has {DRAWINGS} per character")
            rows.append(np.stack([_resize(png, resample) for png in drawings]))
            names.append(name)
    return np.stack(rows), names


def _characters(source: Path) -> Iterator[tuple[str, list[bytes]]]:
    """``(part/Alphabet/character, PNG bytes of its drawings)`` in sorted order."""
    if source.is_file():
        with zipfile.ZipFile(source) as archive:
            members = [m for m in archive.namelist() if m.endswith(".png") and m.count("/") == 3]
            for name, files in _group(members):
                yield name, [archive.read(m) for m in files]
    else:
        members = [p.relative_to(source.parent).as_posix() for p in source.glob("*/*/*.png")]
        for name, files in _group(members):
            yield name, [(source.parent / m).read_bytes() for m in files]


def _group(members: list[str]) -> list[tuple[str, list[str]]]:
    """Sorted ``part/Alphabet/character/file.png`` paths grouped by character folder."""
    groups: dict[str, list[str]] = {}
    for member in sorted(members):
        groups.setdefault(member.rsplit("/", 1)[0], []).append(member)
    return sorted(groups.items())


def _resize(png: bytes, resample: Image.Resampling) -> np.ndarray:
    """One drawing as 28x28 uint8 with ink 255 (MAML's inversion, Finn et al., 2017)."""
    with Image.open(io.BytesIO(png)) as image:
        grey = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), resample=resample)
    return 255 - np.asarray(grey, dtype=np.uint8)
