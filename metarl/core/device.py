"""Device selection: one place that turns a user's ``--device`` string into a torch device."""

from __future__ import annotations

import re

import torch

DEVICE_CHOICES = ("cpu", "cuda", "cuda:N", "auto")


def _bad_device(name: str, why: str) -> ValueError:
    return ValueError(f"device {name!r} {why}; allowed values: {DEVICE_CHOICES}")


def resolve_device(name: str) -> torch.device:
    """Resolve ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available, else CPU).

    Raises:
        ValueError: Naming ``device`` for any other string, or for CUDA when it is not
            available (or ``N`` is not a visible GPU index).
    """
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise _bad_device(name, "is not recognised")
    if not torch.cuda.is_available():
        raise _bad_device(name, "was asked for but CUDA is not available")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise _bad_device(name, f"is out of range ({torch.cuda.device_count()} GPUs visible)")
    return torch.device(name)
