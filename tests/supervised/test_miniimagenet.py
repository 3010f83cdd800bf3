"""mini-ImageNet cache pickles: class-indexed layout, the sampler on it, refused pickles."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from metarl.supervised.episodes import EpisodeSampler
from metarl.supervised.miniimagenet import load_mini_imagenet

NAMES = ["n0300", "n0100", "n0500", "n0200", "n0600", "n0400"]  # not in sorted order


def cache(per_class: int = 20) -> dict[str, Any]:
    """6 classes x ``per_class`` 84x84x3 images; rows interleaved, pixel = class * 40 + i."""
    n = len(NAMES) * per_class
    rows = np.random.default_rng(0).permutation(n)
    image_data = np.zeros((n, 84, 84, 3), dtype=np.uint8)
    class_dict = {}
    for c, name in enumerate(NAMES):
        mine = rows[c * per_class:(c + 1) * per_class]
        image_data[mine] = (c * 40 + np.arange(per_class))[:, None, None, None]
        image_data[mine, 0, 0, 1] = 255  # channel 1 marks the top-left pixel
        class_dict[name] = mine.tolist()
    return {"image_data": image_data, "class_dict": class_dict}


def write(root: Path, obj: Any, split: str = "train", protocol: int = 4) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 5])
def test_pickle_loads_to_classes_by_name_channels_first(tmp_path: Path, protocol: int) -> None:
    write(tmp_path, cache(), protocol=protocol)
    data = load_mini_imagenet("train", tmp_path)
    assert data.images.shape == (6, 20, 3, 84, 84) and data.images.dtype == torch.uint8
    assert data.names == tuple(sorted(NAMES))
    for c, name in enumerate(data.names):
        code = NAMES.index(name) * 40 + torch.arange(20)
        assert torch.equal(data.images[c, :, 0, 5, 5], code.to(torch.uint8))
    assert bool((data.images[:, :, 1, 0, 0] == 255).all())
    assert bool((data.images[:, :, 1, 0, 1] != 255).all())  # HWC -> CHW, not a reshape


def test_the_episode_sampler_takes_the_loaded_layout(tmp_path: Path) -> None:
    write(tmp_path, cache(), split="test")
    images = load_mini_imagenet("test", tmp_path).images
    support, query = EpisodeSampler(images, ways=5, shots=1, queries=15).sample(
        3, torch.Generator().manual_seed(0))
    assert support["x"].shape == (3, 5, 3, 84, 84) and query["x"].shape == (3, 75, 3, 84, 84)


def test_data_root_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "mini-imagenet", cache(), split="validation")
    monkeypatch.setenv("METARL_DATA", str(tmp_path))
    assert load_mini_imagenet("validation").images.shape[0] == 6


class Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("true",))


def test_pickles_with_other_globals_are_refused(tmp_path: Path) -> None:
    write(tmp_path, {"image_data": Exploit(), "class_dict": {}})
    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        load_mini_imagenet("train", tmp_path)


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="mini-imagenet-cache-train.pkl is missing"):
        load_mini_imagenet("train", tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        load_mini_imagenet("val", tmp_path)


@pytest.mark.parametrize("mutate,message", [
    (lambda c: {"image_data": c["image_data"]}, "keys image_data and class_dict"),
    (lambda c: {**c, "image_data": c["image_data"][..., 0]}, r"uint8 \[N, H, W, 3\]"),
    (lambda c: {**c, "class_dict": {**c["class_dict"], "n0100": [0]}}, "same number of images"),
    (lambda c: {**c, "class_dict": {**c["class_dict"], "n0100": list(range(110, 130))}},
     "outside image_data"),
])
def test_bad_layouts_are_refused(tmp_path: Path, mutate: Any, message: str) -> None:
    write(tmp_path, mutate(cache()))
    with pytest.raises(ValueError, match=message):
        load_mini_imagenet("train", tmp_path)
