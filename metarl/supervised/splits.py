"""Omniglot's meta-train/test character split and its rotation augmentation.

The protocol of Vinyals et al. (2016, "Matching Networks for One Shot Learning") and Finn
et al. (2017, "Model-Agnostic Meta-Learning", sec. 5.2): the 1,623 characters are shuffled
by a seed, 1,200 are used for meta-training and the remaining 423 for meta-testing, and
each character rotated by 0, 90, 180 and 270 degrees counts as a class of its own, so
meta-training samples from 4,800 classes. MAML's code rotates test classes too (a
rotation per sampled class, drawn at sampling time); here rotations are new classes for
either split, and for the test split they are a flag. MAML also carves 100 validation
characters out of the 1,200 (``n_val``; off by default here).

A split is a plain list of character ids per part, so a run's ``config.json`` can hold it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

OMNIGLOT_CHARACTERS = 1623
OMNIGLOT_TRAIN = 1200
ROTATIONS = (0, 90, 180, 270)
PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class ClassSplit:
    """Disjoint class ids for meta-training, meta-validation and meta-testing.

    Args:
        seed: The seed the ids were shuffled with (recorded, not used).
        train: Meta-training class ids.
        val: Meta-validation class ids (may be empty).
        test: Meta-test class ids.
    """

    seed: int
    train: tuple[int, ...]
    val: tuple[int, ...]
    test: tuple[int, ...]

    def __post_init__(self) -> None:
        ids = [i for part in PARTS for i in getattr(self, part)]
        if any(not isinstance(i, int) or i < 0 for i in ids):
            raise ValueError("split ids must be ints >= 0")
        if len(set(ids)) != len(ids):
            raise ValueError("split parts train, val and test must be disjoint, without repeats")

    def ids(self, part: str) -> tuple[int, ...]:
        """The ids of ``part``, one of ``PARTS``."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        ids: tuple[int, ...] = getattr(self, part)
        return ids

    def to_json(self) -> dict[str, Any]:
        """``{"seed": int, "train": [ids], "val": [ids], "test": [ids]}``."""
        return {"seed": self.seed, **{part: list(self.ids(part)) for part in PARTS}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ClassSplit:
        """The split :meth:`to_json` wrote."""
        missing = [k for k in ("seed", *PARTS) if k not in obj]
        if missing:
            raise ValueError(f"split JSON lacks keys {missing}; it needs seed, train, val, test")
        return cls(int(obj["seed"]), *(tuple(obj[part]) for part in PARTS))


def split_characters(n_characters: int = OMNIGLOT_CHARACTERS, *, seed: int = 0,
                     n_train: int = OMNIGLOT_TRAIN, n_val: int = 0) -> ClassSplit:
    """Shuffle ``0..n_characters-1`` by ``seed``; the first ``n_train`` train, the rest test.

    The last ``n_val`` of the ``n_train`` shuffled training ids form the validation part
    (MAML: ``n_val=100``), so the test part does not depend on ``n_val``.

    Raises:
        ValueError: Naming the count out of range.
    """
    if n_characters < 2:
        raise ValueError(f"n_characters must be an int >= 2, got {n_characters}")
    if not 1 <= n_train < n_characters:
        raise ValueError(f"n_train must be in [1, {n_characters - 1}], got {n_train}")
    if not 0 <= n_val < n_train:
        raise ValueError(f"n_val must be in [0, {n_train - 1}], got {n_val}")
    order = torch.randperm(n_characters, generator=torch.Generator().manual_seed(seed)).tolist()
    fit = n_train - n_val
    return ClassSplit(seed, tuple(order[:fit]), tuple(order[fit:n_train]),
                      tuple(order[n_train:]))


def split_classes(images: torch.Tensor, ids: Sequence[int], *,
                  rotate: bool = True) -> torch.Tensor:
    """The classes of ``ids`` in the sampler's layout, rotated copies as new classes.

    Args:
        images: Characters ``[characters, drawings, H, W]`` (e.g. from ``load_omniglot``).
        ids: Character ids of one split part.
        rotate: Add the 90, 180 and 270 degree rotations as classes (Finn et al., 2017).

    Returns:
        ``[classes, drawings, 1, H, W]`` in the dtype of ``images``; with ``rotate``,
        class ``r * len(ids) + i`` is character ``ids[i]`` turned by ``ROTATIONS[r]``
        degrees counter-clockwise (``torch.rot90``, like ``tf.image.rot90`` in MAML).
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [characters, drawings, H, W], got "
                         f"{tuple(images.shape)}")
    bad = [i for i in ids if not 0 <= i < images.shape[0]]
    if bad or not ids:
        raise ValueError(f"ids must be a non-empty list in [0, {images.shape[0] - 1}], "
                         f"got {len(ids)} ids, out of range: {bad[:5]}")
    base = images[torch.as_tensor(list(ids))].unsqueeze(2)
    if not rotate:
        return base
    return torch.cat([torch.rot90(base, k=angle // 90, dims=(-2, -1)) for angle in ROTATIONS])
