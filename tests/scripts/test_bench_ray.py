"""scripts/bench_ray.py: a quick run end to end (its own Ray runtime), its JSON and table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.rl.ray_sampler import ray_installed

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not ray_installed(), reason="needs the optional extra ray")
@pytest.mark.xdist_group("ray")
@pytest.mark.slow
def test_quick_bench_measures_every_sampler_and_estimates(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "scripts/bench_ray.py", "--quick", "--json", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "| Ray, 2 actors |" in r.stdout and "Estimate (not measured)" in r.stdout
    result = json.loads(out.read_text())
    measured = result["measured"]
    for name in ("local", "local_1_thread", "ray_1", "ray_2", "ray_1_one_task"):
        assert measured[name]["env_steps_per_s"] > 0, name
    assert measured["ray_1"]["same_episodes"] and measured["ray_2"]["same_episodes"]
    assert measured["payload_bytes"] == 4 * 2 * 20 * (17 + 6 + 1 + 1) * 4  # float32 episodes
    assert set(result["estimate"]["rows"]) == {"4", "128"}
    assert result["machine"]["torch"] == __import__("torch").__version__
