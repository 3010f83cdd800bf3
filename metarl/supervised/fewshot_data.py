"""Few-shot classification data of ``metarl supervised``: which classes each split holds, and
the N-way K-shot meta-batches drawn from them.

Omniglot (Lake et al., 2015): 1,200 characters for meta-training (x4 rotations as new
classes, 4,800 classes) and the other 423 for meta-testing, shuffled by ``split_seed``
(Vinyals et al., 2016; Finn et al., 2017); test characters are unrotated unless
``test_rotations``. mini-ImageNet (Ravi & Larochelle, 2017): the 64 training classes and
the 20 test classes of its standard pickles. Both use :class:`EpisodeSampler`, the same
sampler for training and evaluation.

The arrays are loaded once per process (:func:`split_images` is cached) and stay ``uint8``;
episodes are scaled to ``[0, 1]`` floats as they are drawn.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from metarl.supervised.episodes import EpisodeSampler
from metarl.supervised.image_data import resolve_data_root
from metarl.supervised.miniimagenet import load_mini_imagenet
from metarl.supervised.omniglot import find_sources, load_omniglot
from metarl.supervised.splits import (
    OMNIGLOT_CHARACTERS,
    OMNIGLOT_TRAIN,
    ROTATIONS,
    ClassSplit,
    split_characters,
    split_classes,
)

PARTS = ("train", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """What a classification task's data looks like, known before loading it.

    Attributes:
        name: The ``--task`` name.
        channels: Image channels.
        image_size: Image height and width.
        per_class: Images per class.
        filters: Conv-4 filters (64 for Omniglot, 32 for mini-ImageNet as in MAML).
        default_queries: Query images per class when ``--queries`` is not given.
    """

    name: str
    channels: int
    image_size: int
    per_class: int
    filters: int
    default_queries: int | None

    def classes(self, part: str, test_rotations: bool) -> int:
        """Classes of split ``part`` (``train`` or ``test``)."""
        if self.name == "omniglot":
            if part == "train":
                return OMNIGLOT_TRAIN * len(ROTATIONS)
            test = OMNIGLOT_CHARACTERS - OMNIGLOT_TRAIN
            return test * len(ROTATIONS) if test_rotations else test
        return 64 if part == "train" else 20


# Omniglot queries: MAML's code uses Q = K (None); mini-ImageNet: 15 per class.
DATASETS: dict[str, DatasetSpec] = {
    "omniglot": DatasetSpec("omniglot", 1, 28, 20, 64, None),
    "miniimagenet": DatasetSpec("miniimagenet", 3, 84, 600, 32, 15),
}
CLASSIFICATION_TASKS = tuple(DATASETS)


def check_data_present(task: str, data_root: str | None) -> None:
    """Raise ``ValueError`` naming ``data_root`` when the dataset's files are missing.

    Only looks at the file system (nothing is read), so configs call it before any work.
    """
    try:
        if task == "omniglot":
            find_sources(resolve_data_root("omniglot", data_root))
        else:
            root = resolve_data_root("mini-imagenet", data_root)
            for split in ("train", "test"):
                path = root / f"mini-imagenet-cache-{split}.pkl"
                if not path.is_file():
                    raise FileNotFoundError(
                        f"mini-ImageNet not found: {path} is missing (the standard cache "
                        f"pickles mini-imagenet-cache-{{train,validation,test}}.pkl)")
    except FileNotFoundError as err:
        raise ValueError(f"data_root: {err}") from err


def omniglot_split(split_seed: int) -> ClassSplit:
    """The 1,200 / 423 character split of Omniglot fixed by ``split_seed``."""
    return split_characters(seed=split_seed)


@functools.lru_cache(maxsize=4)
def split_images(task: str, data_root: str | None, part: str, split_seed: int,
                 test_rotations: bool) -> torch.Tensor:
    """``uint8 [classes, images_per_class, C, H, W]`` of split ``part`` (cached per process)."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    if task == "omniglot":
        images = load_omniglot(data_root).images
        ids = omniglot_split(split_seed).ids(part)
        return split_classes(images, ids, rotate=part == "train" or test_rotations)
    return load_mini_imagenet("train" if part == "train" else "test", data_root).images


def episode_sampler(task: str, data_root: str | Path | None, part: str, *, split_seed: int,
                    test_rotations: bool, ways: int, shots: int,
                    queries: int | None) -> EpisodeSampler:
    """The N-way K-shot sampler over split ``part`` of ``task``."""
    root = None if data_root is None else str(data_root)
    images = split_images(task, root, part, split_seed, test_rotations)
    return EpisodeSampler(images, ways=ways, shots=shots, queries=queries)

