"""Mapping a per-task function over a meta-batch: one ``torch.func.vmap`` or a Python loop.

Both paths compute the same thing (tests check it to rounding); which is faster depends on
the device and the samples per task (STYLE.md, "measure before choosing"), so callers pick:
the supervised trainer always vectorises, the meta-RL learner times both
(:class:`PathChooser`) and keeps the faster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree

PATHS = ("batched", "loop")
PATH_CHOICES = ("auto", *PATHS)


def num_tasks(tree: Any, name: str) -> int:
    """The shared leading (task) dimension of every tensor in ``tree``.

    Raises:
        ValueError: Naming ``name`` when the leading sizes differ or there is no tensor.
    """
    sizes = {leaf.shape[0] for leaf in pytree.tree_leaves(tree)
             if isinstance(leaf, torch.Tensor) and leaf.dim() > 0}
    if len(sizes) != 1:
        raise ValueError(f"{name} must be a pytree of tensors sharing a leading task "
                         f"dimension, got leading sizes {sorted(sizes)}")
    return sizes.pop()


def task_slice(tree: Any, index: int) -> Any:
    """Task ``index`` of every tensor in ``tree`` (other leaves pass through)."""
    return pytree.tree_map(lambda x: x[index] if isinstance(x, torch.Tensor) else x, tree)


def map_tasks(fn: Callable[..., Any], args: Sequence[Any], in_dims: Sequence[int | None],
              vectorize: bool) -> Any:
    """``fn`` over the task dimension of the ``in_dims == 0`` arguments, outputs stacked.

    Args:
        fn: A per-task function of ``len(args)`` arguments.
        args: Its arguments; those with ``in_dims[i] == 0`` carry a leading task dimension,
            those with ``None`` are shared by every task.
        in_dims: ``0`` or ``None`` per argument.
        vectorize: One ``torch.func.vmap`` (True) or a Python loop, the reference (False).
    """
    if vectorize:
        return torch.func.vmap(fn, in_dims=tuple(in_dims))(*args)
    batched = [a for a, d in zip(args, in_dims, strict=True) if d == 0]
    n = num_tasks(batched, "args")
    outs = [fn(*[a if d is None else task_slice(a, i) for a, d in zip(args, in_dims,
                                                                       strict=True)])
            for i in range(n)]
    return pytree.tree_map(lambda *xs: torch.stack(xs), *outs)


def check_path(path: str) -> None:
    """Raise ``ValueError`` naming ``meta_update_path`` unless ``path`` is a valid choice."""
    if path not in PATH_CHOICES:
        raise ValueError(f"meta_update_path must be one of {PATH_CHOICES}, got {path!r}")


@dataclass
class PathChooser:
    """Picks the batched or the loop path by timing both, once per problem size.

    ``path="auto"`` runs a caller-supplied probe on each path the first time a size (any
    hashable key, e.g. tasks and samples per task) is seen, keeps the faster, and remembers
    both times; ``batched`` or ``loop`` forces one. The memory goes into checkpoints so a
    resumed run keeps its choices (and so its trajectory).

    Args:
        path: ``auto``, ``batched`` or ``loop``.
        timer: Seconds since an arbitrary origin (``time.perf_counter``; tests inject a fake).
        repeats: Probe runs per path; the fastest counts (the first run pays warm-up costs).
    """

    path: str = "auto"
    timer: Callable[[], float] = time.perf_counter
    repeats: int = 2
    choices: dict[Hashable, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_path(self.path)

    def vectorize(self, key: Hashable, probe: Callable[[bool], Any]) -> bool:
        """Whether to vectorise at size ``key``; ``probe(vectorize)`` is timed when needed."""
        if self.path != "auto":
            return self.path == "batched"
        if key not in self.choices:
            times = {p: self._time(probe, p == "batched") for p in PATHS}
            self.choices[key] = {**{f"{p}_s": t for p, t in times.items()},
                                 "batched": float(times["batched"] <= times["loop"])}
        return bool(self.choices[key]["batched"])

    def known(self, key: Hashable) -> bool | None:
        """The choice already made for ``key`` (forced paths: always known), else None."""
        if self.path != "auto":
            return self.path == "batched"
        choice = self.choices.get(key)
        return None if choice is None else bool(choice["batched"])

    def _time(self, probe: Callable[[bool], Any], vectorize: bool) -> float:
        best = float("inf")
        for _ in range(self.repeats):
            start = self.timer()
            probe(vectorize)
            best = min(best, self.timer() - start)
        return best

    def state_dict(self) -> dict[str, Any]:
        """The choices made so far, for checkpoints."""
        return {"choices": [[list(k) if isinstance(k, tuple) else k, v]
                            for k, v in self.choices.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.choices = {tuple(k) if isinstance(k, list) else k: dict(v)
                        for k, v in state["choices"]}
