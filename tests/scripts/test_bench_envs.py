"""scripts/bench_envs.py's thread sweep: the Amdahl arithmetic, the thread counts, a tiny run."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    return importlib.import_module("bench_envs")


def test_amdahl_from_serial_cpu_and_from_the_two_point_fit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    b = bench(monkeypatch)
    rows = [{"env": "E", "method": "batched", "threads": 1, "env_steps": 1000, "seconds": 1.0,
             "cpu_s": 1.0, "serial_cpu_s": 0.1, "env_steps_per_s": 1000.0},
            {"env": "E", "method": "batched", "threads": 2, "env_steps": 1000, "seconds": 0.55,
             "cpu_s": 1.0, "serial_cpu_s": 0.1, "env_steps_per_s": 1000 / 0.55},
            {"env": "E", "method": "rollout", "threads": 1, "env_steps": 1000, "seconds": 0.5,
             "cpu_s": 0.5, "env_steps_per_s": 2000.0}]
    rows[0]["envs"], rows[0]["python_only_cpu_us_per_step"] = 10, 500.0  # 100 steps: 0.05 s
    [a] = b.amdahl(rows, cores=(2, 16))
    assert a["serial_fraction_warm"] == pytest.approx(0.05)
    assert a["predicted_warm"][16] == pytest.approx(1000 / (0.05 + 0.95 / 16))
    assert a["serial_fraction_cpu"] == pytest.approx(0.1)
    assert a["serial_fraction_fit_1_2"] == pytest.approx(0.1)
    assert a["predicted"][2] == pytest.approx(1000 / (0.1 + 0.9 / 2))
    assert a["predicted"][16] == pytest.approx(1000 / (0.1 + 0.9 / 16))
    assert a["predicted_fit"][16] == pytest.approx(a["predicted"][16])
    b.add_sweep_ratios(rows)
    assert rows[0]["ratio_to_rollout"] == pytest.approx(0.5)
    assert rows[0]["cpu_ratio_to_rollout"] == pytest.approx(0.5)


def test_sweep_threads_default_and_given(monkeypatch: pytest.MonkeyPatch) -> None:
    b = bench(monkeypatch)
    from metarl.envs import physics

    for cores, counts in ((1, (1,)), (2, (1, 2)), (12, (1, 2, 4, 8, 12)), (16, (1, 2, 4, 8, 16))):
        monkeypatch.setattr(physics, "default_num_threads", lambda c=cores: c)
        assert b.sweep_threads(b.Args()) == counts
    assert b.sweep_threads(b.Args(sweep_threads=(3, 1))) == (3, 1)
    with pytest.raises(ValueError, match="'sweep_threads' must hold positive integers"):
        b.sweep_threads(b.Args(sweep_threads=(0,)))


@pytest.mark.slow
def test_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sweep.json"
    r = subprocess.run([sys.executable, "scripts/bench_envs.py", "--sweep", "--envs",
                        "HalfCheetahVel", "--sweep-threads", "1", "--num-envs", "4", "--steps",
                        "3", "--episodes-per-task", "2", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Amdahl prediction" in r.stdout
    result = json.loads(out.read_text())
    methods = {row["method"]: row for row in result["rows"]}
    assert set(methods) == {"batched", "rollout", "sampler", "sampler_torch_all"}
    assert all(row["env_steps"] == 12 and row["seconds"] > 0 for row in methods.values())
    assert 0 <= methods["sampler"]["serial_cpu_s"] <= methods["sampler"]["cpu_s"]
    assert methods["batched"]["python_only_cpu_us_per_step"] > 0
    assert methods["sampler"]["forward_bmm_cpu_ms"] > 0 < methods["sampler"]["forward_vmap_cpu_ms"]
    assert {a["method"] for a in result["amdahl"]} == {"batched", "sampler", "sampler_torch_all"}
    assert result["machine"]["cores"] >= 1
