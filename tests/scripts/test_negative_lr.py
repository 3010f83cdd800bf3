"""The negative-lr study scripts: quick runs end to end, their JSON, and option errors."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
KEYS = {"alpha_train", "alpha_test", "test_loss", "ci95", "runs"}


def script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module(name)


def test_linear_quick_json_plot_and_optima(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    study = script("negative_lr", monkeypatch)
    out, png = tmp_path / "study.json", tmp_path / "study.png"
    assert study.main(["--quick", "--ci", "0.02", "--batch", "500", "--jobs", "1", "--json",
                       str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert result["params"]["p"] == 60 and result["params"]["quick"] is True
    rows = result["rows"]
    assert len(rows) == len(study.QUICK_GRIDS[0]) + len(study.QUICK_GRIDS[1])
    for row in rows:
        assert KEYS <= set(row)
        assert all(math.isfinite(row[k]) for k in KEYS) and row["runs"] >= 1
        assert 0 < row["ci95"] < 0.02
    assert {r["alpha_test"] for r in rows if r["sweep"] == "alpha_train"} == {0.2}
    assert {r["alpha_train"] for r in rows if r["sweep"] == "alpha_test"} == {0.2}
    # Bernacchia (2021): the best training lr is negative, the best adaptation lr positive.
    optima = result["optima"]
    assert optima["alpha_train"]["given_inputs"]["argmin"] < 0
    assert optima["alpha_test"]["given_inputs"]["parabola"] > 0
    assert png.stat().st_size > 10_000


def test_linear_rows_do_not_depend_on_the_process_layout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every point has its own seed, so serial and parallel runs write the same rows."""
    study = script("negative_lr", monkeypatch)
    rows = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}.json"
        study.main(["--alpha-train", "-1", "0.5", "--alpha-test", "0.1", "--ci", "0.05",
                    "--batch", "200", "--jobs", jobs, "--json", str(out)])
        rows.append(json.loads(out.read_text())["rows"])
    assert rows[0] == rows[1]


@pytest.mark.parametrize("argv,option", [
    (["--alpha-train"], "--alpha-train"),
    (["--alpha-test"], "--alpha-test"),
    (["--n-t", "0"], "--n-t"),
    (["--p", "-3"], "--p"),
    (["--test-tasks", "0"], "--test-tasks"),
    (["--ci", "0"], "--ci"),
    (["--sigma", "-1"], "--sigma"),
    (["--fixed-alpha-test", "nan"], "--fixed-alpha-test"),
])
def test_linear_bad_options_name_the_option(argv: list[str], option: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    study = script("negative_lr", monkeypatch)
    with pytest.raises(SystemExit) as exit_info:
        study.parse_args(argv)
    assert exit_info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_sinusoid_quick_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = script("negative_lr_sinusoid", monkeypatch)
    out, table = tmp_path / "sinusoid.json", tmp_path / "sinusoid.md"
    study.main(["--quick", "--eval-tasks", "50", "--jobs", "1", "--run-root",
                str(tmp_path / "runs"), "--json", str(out), "--out", str(table)])
    result = json.loads(out.read_text())
    assert result["params"]["iterations"] == 200
    assert [r["inner_lr"] for r in result["rows"]] == study.QUICK_LRS
    for row in result["rows"]:
        assert row["eval_inner_lr"] == 0.01 and row["eval_tasks"] == 50
        assert all(math.isfinite(row[f"{k}_step{s}"]) for k in ("mse", "ci95")
                   for s in (0, 1, 10))
        assert (Path(row["run_dir"]) / "eval.json").exists()
    lines = table.read_text().splitlines()
    assert sum(line.startswith("| ") for line in lines) == 1 + len(study.QUICK_LRS)


@pytest.mark.parametrize("argv,option", [(["--inner-lrs"], "--inner-lrs"),
                                         (["--iterations", "0"], "--iterations"),
                                         (["--eval-inner-lr", "inf"], "--eval-inner-lr")])
def test_sinusoid_bad_options_name_the_option(argv: list[str], option: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    study = script("negative_lr_sinusoid", monkeypatch)
    with pytest.raises(SystemExit):
        study.parse_args(argv)
    assert f"argument {option}" in capsys.readouterr().err
