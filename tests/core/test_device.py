from __future__ import annotations

import pytest
import torch

from metarl.core import resolve_device


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", "", "mps0"])
def test_unknown_names_raise(name: str) -> None:
    with pytest.raises(ValueError, match=r"device.*'cpu', 'cuda', 'cuda:N', 'auto'"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_unavailable_raises(name: str) -> None:
    with pytest.raises(ValueError, match="device.*not available"):
        resolve_device(name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_available() -> None:
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="device.*out of range"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
