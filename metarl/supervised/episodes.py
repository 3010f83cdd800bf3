"""N-way K-shot episodes drawn a meta-batch at a time from class-indexed images.

An episode (Vinyals et al., 2016, "Matching Networks for One Shot Learning"; Finn et al.,
2017, "Model-Agnostic Meta-Learning") takes N classes without replacement, then K support
and Q query images per class without replacement, and labels the classes 0..N-1 in a
random order. All tasks of a meta-batch are drawn at once with vectorised draws from a
``torch.Generator`` passed in, so its seed fixes the episode sequence and checkpointing
its state resumes it. The same sampler serves meta-training and evaluation.

MAML's reference code uses Q = K for Omniglot (``update_batch_size`` images per class for
both sets) and Q = 15 for mini-ImageNet; ``queries=None`` takes the Omniglot default.
"""

from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]


def _check_positive(**counts: int) -> None:
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class EpisodeSampler:
    """Meta-batches of N-way K-shot classification tasks.

    Args:
        images: ``[classes, images_per_class, C, H, W]``, ``uint8`` (scaled to ``[0, 1]``)
            or floating point (taken as is); e.g. ``splits.split_classes`` of Omniglot or
            ``load_mini_imagenet(...).images``.
        ways: Classes per task, N (at most the classes of ``images``).
        shots: Support images per class, K.
        queries: Query images per class, Q; ``None`` for Q = K (MAML's Omniglot set-up).
            ``shots + queries`` must not exceed ``images_per_class``.

    Raises:
        ValueError: Naming the bad argument, before anything is sampled.
    """

    def __init__(self, images: torch.Tensor, *, ways: int, shots: int,
                 queries: int | None = None) -> None:
        if images.dim() != 5:
            raise ValueError(f"images must be [classes, images_per_class, C, H, W], got shape "
                             f"{tuple(images.shape)}")
        queries = shots if queries is None else queries
        _check_positive(ways=ways, shots=shots, queries=queries)
        classes, per_class = images.shape[:2]
        if ways > classes:
            raise ValueError(f"ways must be <= {classes}, the classes available in this split, "
                             f"got {ways}")
        if shots + queries > per_class:
            raise ValueError(f"shots + queries must be <= {per_class}, the images per class, "
                             f"got {shots} + {queries}")
        self.images, self.ways, self.shots, self.queries = images, ways, shots, queries

    def indices(self, n_tasks: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Drawn ids: classes ``[T, N]`` (label ``j`` is ``classes[:, j]``) and images per
        class ``[T, N, K + Q]`` (the first K support, the rest query)."""
        _check_positive(n_tasks=n_tasks)
        classes, per_class = self.images.shape[:2]
        chosen = _first_of_permutations((n_tasks, classes), self.ways, generator)
        draws = _first_of_permutations((n_tasks, self.ways, per_class),
                                       self.shots + self.queries, generator)
        return chosen, draws

    def sample(self, n_tasks: int, generator: torch.Generator) -> tuple[Batch, Batch]:
        """A meta-batch of ``n_tasks`` tasks: support and query sets.

        Returns:
            ``support = {"x": [T, N*K, C, H, W] float32, "y": [T, N*K] int64}`` and ``query``
            likewise with Q per class, on the device of ``images``. Entry ``j * K + k``
            of the support is shot ``k`` of the class labelled ``j``.
        """
        chosen, draws = self.indices(n_tasks, generator)
        device = self.images.device
        picked = self.images[chosen.to(device)[..., None], draws.to(device)]
        x = picked.float().div_(255) if picked.dtype == torch.uint8 else picked.float()
        labels = torch.arange(self.ways, device=device).expand(n_tasks, self.ways)
        return (_flatten(x[:, :, :self.shots], labels),
                _flatten(x[:, :, self.shots:], labels))


def _first_of_permutations(shape: tuple[int, ...], k: int,
                           generator: torch.Generator) -> torch.Tensor:
    """The first ``k`` entries of a uniform random permutation of the last axis, per row.

    The indices of the ``k`` largest of i.i.d. float64 uniforms, in decreasing order: a
    uniform ordered draw without replacement (ties have probability ~2^-53).
    """
    keys = torch.rand(shape, generator=generator, dtype=torch.float64)
    return keys.topk(k, dim=-1).indices


def _flatten(x: torch.Tensor, labels: torch.Tensor) -> Batch:
    """``[T, N, K, C, H, W]`` and labels ``[T, N]`` -> ``{"x": [T, N*K, ...], "y": [T, N*K]}``."""
    n_tasks, ways, shots = x.shape[:3]
    y = labels[..., None].expand(n_tasks, ways, shots).reshape(n_tasks, ways * shots)
    return {"x": x.reshape(n_tasks, ways * shots, *x.shape[3:]), "y": y}
