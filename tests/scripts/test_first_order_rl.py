"""scripts/first_order_rl.py: option errors, and finished runs reused into the table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "first_order_rl.py"


def _module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("first_order_rl", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("argv", "name"), [(["--iterations", "0"], "iterations"),
                                            (["--variants", "reptile"], "variants")])
def test_bad_options_name_the_option(argv: list[str], name: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=name):
        _module().main([*argv, "--out", str(tmp_path / "x")])


def test_finished_runs_are_reused_and_tabled(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "metasgd-bmg" / "Navigation2D__metasgd__0__x"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"seed": 0}))
    (run / "eval.json").write_text(json.dumps({
        "iteration": 7, "num_tasks": 20, "seeds": [1, 2],
        "overall": {"mean": [-40.0, -25.5, -24.0, -23.25], "ci95": [4.0, 1.5, 1.0, 1.0]}}))
    out = tmp_path / "docs" / "bmg_rl"
    assert _module().main(["--variants", "metasgd-bmg", "--run-root", str(tmp_path / "runs"),
                           "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    (row,) = data["rows"]
    assert row["variant"] == "metasgd-bmg" and row["inner_lr_meta"] == "bmg"
    assert row["iterations"] == 7 and row["wall_s"] is None
    md = out.with_suffix(".md").read_text()
    assert "| metasgd-bmg | 7 | -40.0 +- 4.0 | -25.5 +- 1.5 | -23.2 | - | reused |" in md
