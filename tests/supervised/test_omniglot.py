"""Omniglot loader: archives and extracted trees, the 28x28 resize, the cache, the real data."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metarl.supervised import omniglot
from metarl.supervised.image_data import resolve_data_root, writable_dir
from metarl.supervised.omniglot import load_omniglot

REAL = Path("..") / "shared" / "data" / "omniglot"
# part -> alphabet -> characters; 6 characters in all, background first.
LAYOUT = {"images_background": {"Alpha": 2, "Beta": 2}, "images_evaluation": {"Gamma": 2}}


def bits(character: int, drawing: int) -> np.ndarray:
    """A 28x28 random bit pattern, distinct per (character, drawing)."""
    return np.random.default_rng(1000 * character + drawing).random((28, 28)) < 0.3


def png(character: int, drawing: int) -> bytes:
    """The pattern as a 56x56 1-bit PNG, each bit a 2x2 block; black (0) is ink."""
    big = np.kron(bits(character, drawing), np.ones((2, 2), dtype=bool))
    buffer = io.BytesIO()
    Image.fromarray(~big).convert("1").save(buffer, format="PNG")
    return buffer.getvalue()


def members(drawings: int = 20) -> dict[str, bytes]:
    """``part/Alphabet/characterNN/<id>_<drawer>.png`` -> PNG bytes in the real layout."""
    files, character = {}, 0
    for part, alphabets in LAYOUT.items():
        for alphabet, count in alphabets.items():
            for c in range(count):
                for d in range(drawings):
                    name = f"{part}/{alphabet}/character{c + 1:02d}/{character:04d}_{d + 1:02d}.png"
                    files[name] = png(character, d)
                character += 1
    return files


def write_zips(root: Path, files: dict[str, bytes]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for part in LAYOUT:
        with zipfile.ZipFile(root / f"{part}.zip", "w") as archive:
            for name, data in files.items():
                if name.startswith(part):
                    archive.writestr(name, data)


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def expected_box() -> torch.Tensor:
    """With the BOX filter each 2x2 block maps to its bit: ink 255, background 0."""
    rows = [np.stack([bits(c, d) for d in range(20)]) for c in range(6)]
    return torch.from_numpy(np.stack(rows).astype(np.uint8) * 255)


@pytest.mark.parametrize("layout", ["zip", "tree"])
def test_loads_archives_and_trees_resized_to_28(tmp_path: Path, layout: str) -> None:
    (write_zips if layout == "zip" else write_tree)(tmp_path / "data", members())
    data = load_omniglot(tmp_path / "data", cache_dir=tmp_path / "cache", resample="box")
    assert data.images.shape == (6, 20, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(data.images, expected_box())
    assert data.names[0] == "images_background/Alpha/character01"
    assert data.names[-1] == "images_evaluation/Gamma/character02"


def test_lanczos_and_nearest_match_pillow(tmp_path: Path) -> None:
    write_zips(tmp_path / "data", members())
    raw = Image.open(io.BytesIO(png(3, 7)))
    lanczos = 255 - np.asarray(raw.convert("L").resize((28, 28), Image.Resampling.LANCZOS))
    # Pillow resizes a 1-bit image with NEAREST whatever filter is asked: MAML's pixels.
    reference = 255 - np.asarray(raw.resize((28, 28), Image.Resampling.LANCZOS),
                                 dtype=np.uint8) * 255
    for resample, want in (("lanczos", lanczos), ("nearest", reference)):
        data = load_omniglot(tmp_path / "data", cache_dir=tmp_path, resample=resample)
        assert np.array_equal(data.images[3, 7].numpy(), want)
    assert len(np.unique(lanczos)) > 2 and len(np.unique(reference)) == 2


def test_cache_is_written_then_reused_without_opening_the_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_zips(tmp_path / "data", members())
    first = load_omniglot(tmp_path / "data", cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("omniglot28_lanczos_*.npz"))) == 1

    real_zipfile = zipfile.ZipFile

    def refuse(file: object, *args: object, **kwargs: object) -> zipfile.ZipFile:
        # np.load opens the .npz cache as a zip too; only the Omniglot archives are refused.
        if Path(str(file)).name.startswith("images_"):
            raise AssertionError("the archive was opened despite the cache")
        return real_zipfile(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(omniglot.zipfile, "ZipFile", refuse)
    monkeypatch.chdir(tmp_path)  # the same data by a relative path shares the cache
    second = load_omniglot("data", cache_dir=tmp_path / "cache")
    assert torch.equal(first.images, second.images) and first.names == second.names


@pytest.mark.parametrize("layout", ["zip", "tree"])
def test_changed_source_invalidates_the_cache(tmp_path: Path, layout: str) -> None:
    files = members()
    write = write_zips if layout == "zip" else write_tree
    write(tmp_path / "data", files)
    before = load_omniglot(tmp_path / "data", cache_dir=tmp_path, resample="box").images
    name = next(iter(files))
    files[name] = png(99, 0)  # character 0, drawing 0 redrawn
    time.sleep(0.01)
    write(tmp_path / "data", files)
    after = load_omniglot(tmp_path / "data", cache_dir=tmp_path, resample="box").images
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert not torch.equal(after[0, 0], before[0, 0]) and torch.equal(after[1:], before[1:])
    assert torch.equal(after[0, 0], torch.from_numpy(bits(99, 0).astype(np.uint8) * 255))


def test_cache_goes_next_to_writable_data_else_home(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write_zips(tmp_path / "data", members())
    load_omniglot(tmp_path / "data")
    assert len(list((tmp_path / "data").glob("*.npz"))) == 1
    os.chmod(tmp_path / "data", 0o555)
    try:
        assert writable_dir(tmp_path / "data") == tmp_path / "home" / ".cache" / "metarl"
    finally:
        os.chmod(tmp_path / "data", 0o755)


def test_missing_data_names_both_files_and_the_source(tmp_path: Path) -> None:
    for present in ([], ["images_background"]):
        for part in present:
            (tmp_path / part).mkdir()
        with pytest.raises(FileNotFoundError) as err:
            load_omniglot(tmp_path)
        for text in ("images_background.zip", "images_evaluation.zip",
                     "https://github.com/brendenlake/omniglot"):
            assert text in str(err.value)


def test_bad_resample_and_drawing_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resample must be one of"):
        load_omniglot(tmp_path, resample="bicubic")
    write_zips(tmp_path / "data", members(drawings=19))
    with pytest.raises(ValueError, match="has 19 drawings; Omniglot has 20"):
        load_omniglot(tmp_path / "data", cache_dir=tmp_path)


def test_data_root_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("METARL_DATA", raising=False)
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    assert resolve_data_root("omniglot") == tmp_path / "home" / ".cache" / "metarl" / "omniglot"
    (tmp_path / "shared" / "data" / "omniglot").mkdir(parents=True)
    assert resolve_data_root("omniglot") == Path("../shared/data/omniglot")
    monkeypatch.setenv("METARL_DATA", str(tmp_path / "elsewhere"))
    assert resolve_data_root("omniglot") == tmp_path / "elsewhere" / "omniglot"
    assert resolve_data_root("omniglot", tmp_path / "given") == tmp_path / "given"


@pytest.mark.skipif(not (REAL / "images_background.zip").is_file(),
                    reason="the real Omniglot archives are not in ../shared/data/omniglot")
def test_real_omniglot_loads_to_1623_characters_of_20_drawings() -> None:
    # The first call builds the cache (~5 s on the 2-core machine), later ones read it.
    data = load_omniglot(REAL)
    assert data.images.shape == (1623, 20, 28, 28) and data.images.dtype == torch.uint8
    assert sum(n.startswith("images_background/") for n in data.names) == 964
    ink = data.images.float().mean() / 255
    assert 0.03 < float(ink) < 0.2  # thin strokes on an empty background
    with zipfile.ZipFile(REAL / "images_evaluation.zip") as archive:
        name = data.names[964]
        first = min(m for m in archive.namelist()
                    if m.startswith(name + "/") and m.endswith(".png"))
        drawing = omniglot._resize(archive.read(first), Image.Resampling.LANCZOS)
    assert np.array_equal(data.images[964, 0].numpy(), drawing)
