"""scripts/first_order_study.py --quick: its JSON, and the claim it checks (Chayti & Jaggi)."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def study(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("first_order_study")


def test_quick_json_plot_and_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = study(monkeypatch)
    out, png = tmp_path / "study.json", tmp_path / "study.png"
    assert module.main(["--quick", "--json", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert result["params"]["quick"] is True
    methods = result["methods"]
    assert set(methods) == set(module.METHODS)
    for r in methods.values():
        assert len(r["iterations"]) == len(r["grad_norm"]) > 10
        assert all(math.isfinite(x) for x in r["grad_norm"])
        assert r["final_grad_norm"] == r["grad_norm"][-1]
    start = methods["maml"]["grad_norm"][0]
    # First-order MAML and Reptile stall far from stationarity ...
    for name in ("fomaml", "reptile"):
        assert methods[name]["final_grad_norm"] > 0.1 * start
    # ... the finite-difference estimators get within their O(delta) / O(delta^2) bias.
    assert methods["fdmaml"]["final_grad_norm"] < 1e-3 * start
    assert methods["fdmaml-sym"]["final_grad_norm"] < 1e-4 * start
    forward = [r["final_grad_norm"] for r in result["sweep"]["fdmaml"]]
    assert [r["delta"] for r in result["sweep"]["fdmaml"]] == [1e-1, 1e-2]
    assert forward[1] < 0.2 * forward[0]  # the forward bias falls with delta
    assert png.stat().st_size > 10_000


@pytest.mark.parametrize(("option", "value"), [("--delta", "0"), ("--alpha", "nan"),
                                               ("--iterations", "0")])
def test_bad_options_name_the_option(option: str, value: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    module = study(monkeypatch)
    with pytest.raises(ValueError, match=option.lstrip("-").replace("-", "_")):
        module.main([option, value])
