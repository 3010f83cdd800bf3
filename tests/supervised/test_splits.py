"""Omniglot's character split (1,200 / 423, seeded, JSON) and the rotation augmentation."""

from __future__ import annotations

import json

import pytest
import torch

from metarl.supervised.splits import ClassSplit, split_characters, split_classes


def test_default_split_is_1200_train_423_test_disjoint_and_complete() -> None:
    split = split_characters(seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (1200, 0, 423)
    assert sorted(split.train + split.test) == list(range(1623))
    assert split.train != tuple(sorted(split.train))  # shuffled, not the first 1,200


def test_split_is_fixed_by_the_seed() -> None:
    assert split_characters(seed=3) == split_characters(seed=3)
    assert split_characters(seed=3).train != split_characters(seed=4).train


def test_validation_is_carved_from_the_training_characters() -> None:
    plain, carved = split_characters(seed=1), split_characters(seed=1, n_val=100)
    assert (len(carved.train), len(carved.val)) == (1100, 100)
    assert carved.test == plain.test and carved.train + carved.val == plain.train
    assert not set(carved.val) & set(carved.train)


def test_json_round_trip() -> None:
    split = split_characters(seed=5, n_val=10)
    text = json.dumps(split.to_json())
    assert ClassSplit.from_json(json.loads(text)) == split
    assert json.loads(text)["seed"] == 5 and len(json.loads(text)["test"]) == 423


def test_bad_splits_are_refused() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        ClassSplit(0, (1, 2), (), (2, 3))
    with pytest.raises(ValueError, match="lacks keys"):
        ClassSplit.from_json({"seed": 0, "train": [1]})
    with pytest.raises(ValueError, match="part must be one of"):
        split_characters(seed=0).ids("validation")
    with pytest.raises(ValueError, match=r"n_train must be in \[1, 1622\]"):
        split_characters(n_train=1623)
    with pytest.raises(ValueError, match=r"n_val must be in \[0, 1199\]"):
        split_characters(n_val=1200)
    with pytest.raises(ValueError, match="n_characters must be"):
        split_characters(1)


def test_rotations_are_exact_rot90_of_the_base_character() -> None:
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    ids = [4, 1]
    classes = split_classes(images, ids)
    assert classes.shape == (8, 3, 1, 4, 4) and classes.dtype == torch.uint8
    for r in range(4):
        for i, c in enumerate(ids):
            want = torch.rot90(images[c], k=r, dims=(-2, -1))
            assert torch.equal(classes[r * len(ids) + i, :, 0], want)
    assert not torch.equal(classes[0], classes[2])  # a quarter turn changes the character
    plain = split_classes(images, ids, rotate=False)
    assert plain.shape == (2, 3, 1, 4, 4) and torch.equal(plain, classes[:2])


def test_split_classes_refuses_bad_ids_and_layouts() -> None:
    images = torch.zeros(5, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"ids must be a non-empty list in \[0, 4\]"):
        split_classes(images, [0, 5])
    with pytest.raises(ValueError, match="ids must be a non-empty"):
        split_classes(images, [])
    with pytest.raises(ValueError, match="images must be"):
        split_classes(images[0], [0])
