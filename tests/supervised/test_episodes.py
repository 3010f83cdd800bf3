"""The N-way K-shot episode sampler: shapes, labels, disjoint sets, determinism, bad input."""

from __future__ import annotations

import pytest
import torch

from metarl.supervised.episodes import EpisodeSampler

CLASSES, PER_CLASS = 12, 20


def coded_images() -> torch.Tensor:
    """Float images whose every pixel holds ``class * 100 + drawing``, to trace each draw."""
    code = torch.arange(CLASSES)[:, None] * 100 + torch.arange(PER_CLASS)[None, :]
    return code[:, :, None, None, None].float().expand(CLASSES, PER_CLASS, 1, 3, 3).clone()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def codes(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["x"][:, :, 0, 0, 0].long()


def test_shapes_dtypes_and_label_ranges() -> None:
    sampler = EpisodeSampler(coded_images(), ways=5, shots=2, queries=3)
    support, query = sampler.sample(7, gen())
    assert support["x"].shape == (7, 10, 1, 3, 3) and query["x"].shape == (7, 15, 1, 3, 3)
    assert support["x"].dtype == torch.float32 and support["y"].dtype == torch.int64
    assert support["y"].shape == (7, 10) and query["y"].shape == (7, 15)
    for batch, per in ((support, 2), (query, 3)):
        assert torch.equal(batch["y"], torch.arange(5).repeat_interleave(per).expand(7, -1))


def test_a_label_is_one_class_per_task_and_classes_are_distinct() -> None:
    support, query = EpisodeSampler(coded_images(), ways=5, shots=2, queries=3).sample(50, gen())
    for batch in (support, query):
        classes = codes(batch) // 100
        for label in range(5):
            of_label = classes[batch["y"] == label].reshape(50, -1)
            assert bool((of_label == of_label[:, :1]).all())
    task_classes = (codes(support) // 100)[:, ::2]
    assert all(len(set(row.tolist())) == 5 for row in task_classes)
    assert torch.equal(task_classes, (codes(query) // 100)[:, ::3])


def test_no_image_is_shared_between_support_and_query_of_a_task() -> None:
    support, query = EpisodeSampler(coded_images(), ways=4, shots=5, queries=15).sample(30, gen())
    for s, q in zip(codes(support), codes(query), strict=True):
        drawn = s.tolist() + q.tolist()
        assert len(set(drawn)) == len(drawn) == 4 * 20


def test_labels_are_randomly_permuted_per_task() -> None:
    support, _ = EpisodeSampler(coded_images(), ways=5, shots=1).sample(200, gen())
    classes = codes(support) // 100
    # Label 0 goes to the smallest chosen class id only about a fifth of the time.
    smallest_first = (classes[:, 0] == classes.min(dim=1).values).float().mean()
    assert 0.1 < float(smallest_first) < 0.35


def test_same_generator_seed_same_episodes() -> None:
    sampler = EpisodeSampler(coded_images(), ways=5, shots=1, queries=2)
    a, b, c = (sampler.sample(6, gen(s)) for s in (3, 3, 4))
    assert torch.equal(a[0]["x"], b[0]["x"]) and torch.equal(a[1]["x"], b[1]["x"])
    assert not torch.equal(a[0]["x"], c[0]["x"])


def test_uint8_images_are_scaled_to_unit_range_and_queries_default_to_shots() -> None:
    images = torch.full((6, 20, 1, 2, 2), 255, dtype=torch.uint8)
    support, query = EpisodeSampler(images, ways=3, shots=4).sample(2, gen())
    assert query["x"].shape == support["x"].shape == (2, 12, 1, 2, 2)
    assert bool((support["x"] == 1.0).all())


@pytest.mark.parametrize("kwargs,message", [
    ({"ways": 13, "shots": 1}, "ways must be <= 12, the classes available in this split"),
    ({"ways": 5, "shots": 6, "queries": 15}, r"shots \+ queries must be <= 20"),
    ({"ways": 0, "shots": 1}, "ways must be an int >= 1, got 0"),
    ({"ways": 5, "shots": 0}, "shots must be an int >= 1, got 0"),
    ({"ways": 5, "shots": 1, "queries": -1}, "queries must be an int >= 1, got -1"),
    ({"ways": 5, "shots": 1.5}, "shots must be an int >= 1, got 1.5"),
])
def test_bad_counts_fail_before_sampling(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EpisodeSampler(coded_images(), **kwargs)


def test_bad_task_count_and_layout() -> None:
    sampler = EpisodeSampler(coded_images(), ways=2, shots=1)
    with pytest.raises(ValueError, match="n_tasks must be an int >= 1, got 0"):
        sampler.sample(0, gen())
    with pytest.raises(ValueError, match=r"images must be \[classes, images_per_class"):
        EpisodeSampler(coded_images()[:, :, 0], ways=2, shots=1)
