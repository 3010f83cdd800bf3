"""Packaging rules: SPDX licence string, dependency floors, Meta-World only as an extra."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_licence_is_an_spdx_string() -> None:
    # A TOML table makes setuptools >= 77 print a deprecation warning at every install.
    assert PYPROJECT["project"]["license"] == "MIT"


def test_dependencies_are_floors_and_metaworld_is_optional() -> None:
    deps = PYPROJECT["project"]["dependencies"]
    assert "torch>=2.3" in deps
    assert not any(d.startswith("metaworld") for d in deps)
    assert any(d.startswith("metaworld") for d in PYPROJECT["project"]["optional-dependencies"]
               ["metaworld"])
    assert all("==" not in d for d in deps)


def test_ray_is_an_optional_extra_and_make_test_installs_it() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not any(d.startswith("ray") for d in PYPROJECT["project"]["dependencies"])
    assert any(d.startswith("ray>=") for d in extras["ray"])
    assert any(d.startswith("hypothesis>=") for d in extras["dev"])
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert '.[dev,ray]' in makefile and "--dist loadgroup" in makefile


def test_mujoco_warp_is_an_optional_extra() -> None:
    """physics="warp" needs MuJoCo Warp; nothing else does (its tests skip without it)."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not any(d.startswith(("mujoco-warp", "warp-lang"))
                   for d in PYPROJECT["project"]["dependencies"])
    assert {d.split(">=")[0] for d in extras["warp"]} == {"mujoco-warp", "warp-lang"}
