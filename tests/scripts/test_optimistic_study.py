"""The optimistic / bootstrapped meta-gradient study: --quick end to end, its JSON, options."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("optimistic_study")


def test_quick_json_and_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study = script(monkeypatch)
    out, png = tmp_path / "study.json", tmp_path / "study.png"
    assert study.main(["--quick", "--json", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    params = result["params"]
    assert params["quick"] is True and params["dim"] >= 50 and params["kappa"] >= 100
    rows = {r["name"]: r for r in result["rows"]}
    assert tuple(rows) == study.METHODS
    for row in rows.values():
        assert len(row["curve_median"]) == params["iters"] + 1
        assert row["curve_median"][0] == 1.0 and row["diverged"] == 0
        assert math.isfinite(row["final_rel_loss_median"]) and row["grads_per_iter"] >= 1
    # Every momentum-like method beats plain gradient descent by orders of magnitude.
    gd = rows["gd"]["final_rel_loss_median"]
    for name in ("heavy_ball", "nesterov", "mg_x_plus_w", "bmg_x_plus_w",
                 "optimistic_x_plus_w"):
        assert rows[name]["final_rel_loss_median"] < 1e-4 * gd, name
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize("argv,option", [(["--dim", "0"], "--dim"),
                                         (["--kappa", "1"], "--kappa"),
                                         (["--kappa", "x"], "--kappa"),
                                         (["--lookahead", "0"], "--lookahead"),
                                         (["--iters", "-2"], "--iters")])
def test_bad_options_name_the_option(argv: list[str], option: str,
                                     monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    study = script(monkeypatch)
    with pytest.raises(SystemExit) as info:
        study.parse_args(argv)
    assert info.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err


def test_bootstrap_sinusoid_quick_table_and_json(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    study = importlib.import_module("bootstrap_sinusoid")
    out, table = tmp_path / "sinusoid.json", tmp_path / "sinusoid.md"
    study.main(["--quick", "--iterations", "3", "--eval-tasks", "20", "--run-root",
                str(tmp_path / "runs"), "--json", str(out), "--out", str(table)])
    rows = json.loads(out.read_text())["rows"]
    assert [(r["inner_lr_meta"], r["bmg_l"]) for r in rows] == [("gradient", None), ("bmg", 3)]
    for row in rows:
        assert all(math.isfinite(row[f"mse_step{s}"]) for s in (0, 1, 2))
        assert len(row["learned_lrs"]) == 6 and row["eval_tasks"] == 20
    assert sum(line.startswith("| ") for line in table.read_text().splitlines()) == 3
