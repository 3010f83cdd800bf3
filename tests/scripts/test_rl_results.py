"""scripts/rl_results.py on a tiny grid: "not run" rows, resuming a partly done table, keeping
finished rows, learning curves and the published figures."""

from __future__ import annotations

import importlib
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
# Tiny runs: 2 tasks x 2 episodes x 10 steps, a held-out evaluation after every iteration.
TINY = dict(envs=("Navigation2D",), algos=("maml", "anil"), seeds=(0,), preset="fast",
            iterations=2, meta_batch=2, episodes_per_task=2, horizon=10, eval_every=1,
            eval_tasks=2, eval_seeds=2, eval_inner_steps=1, threads=1)


def script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return importlib.import_module("rl_results")


def config(mod: ModuleType, tmp_path: Path, **kw: object) -> object:
    return mod.ResultsConfig(**{**TINY, "run_root": str(tmp_path / "runs"),
                                "out": str(tmp_path / "docs" / "rl"), **kw})


def line(md: str, algo: str) -> str:
    return next(r for r in md.splitlines() if r.startswith(f"| Navigation2D | {algo} |"))


def test_not_run_rows_then_resume_and_keep(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    mod = script(monkeypatch)
    out = tmp_path / "docs" / "rl"
    rows = mod.main(config(mod, tmp_path, max_runs=1))
    assert [r["status"] for r in rows] == ["done", "not run"]
    md = out.with_suffix(".md").read_text()
    assert "not run" in line(md, "anil") and "not run" not in line(md, "maml")
    assert "-11.7" in line(md, "maml") and "-20.1" in line(md, "anil")  # Finn, Raghu
    maml = rows[0]
    assert maml["iteration"] == 2 and len(maml["mean"]) == 2 and maml["env_steps"] > 0
    assert maml["curve"]["iteration"] == [1.0, 2.0]  # periodic eval at 1, final at 2
    assert (tmp_path / "docs" / "rl_Navigation2D.png").stat().st_size > 5_000
    maml_eval = Path(maml["run_dir"]) / "eval.json"
    stamp = maml_eval.stat().st_mtime_ns

    # A partly done cell: anil trained to iteration 1 only; the table resumes that folder.
    from metarl.rl.train import main as train

    cfg = config(mod, tmp_path)
    partial = train(cfg.train_config("Navigation2D", "anil", 0, iterations=1))
    assert mod.cell_state(partial, 2) == ("partial", 1)
    assert "checkpointed seed 0: 1/2" in line(mod.markdown(cfg, mod.main(
        config(mod, tmp_path, run=False)), "here"), "anil")
    rows = mod.main(cfg)
    assert [r["status"] for r in rows] == ["done", "done"]
    assert rows[1]["run_dir"] == str(partial) and rows[1]["iteration"] == 2
    assert maml_eval.stat().st_mtime_ns == stamp  # the finished row was not rerun
    assert rows[0]["run_dir"] == maml["run_dir"]

    # Rows finished on another machine (run folders absent here) are kept from the JSON.
    shutil.rmtree(tmp_path / "runs")
    rows = mod.main(config(mod, tmp_path, run=False))
    assert [r["status"] for r in rows] == ["done", "done"]
    saved = json.loads(out.with_suffix(".json").read_text())
    assert {c["key"] for c in saved["cells"]} == {"fast/Navigation2D/maml/0",
                                                  "fast/Navigation2D/anil/0"}
    # ...but not when they were trained with other hyper-parameters.
    rows = mod.main(config(mod, tmp_path, run=False, horizon=11))
    assert [r["status"] for r in rows] == ["not run", "not run"]


def test_baseline_cells_run_and_sit_in_the_table(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A PPO baseline cell runs through metarl.rl.baselines_sb3 with the same preset."""
    pytest.importorskip("stable_baselines3")
    mod = script(monkeypatch)
    rows = mod.main(config(mod, tmp_path, algos=("ppo-finetune",)))
    assert rows[0]["status"] == "done" and len(rows[0]["mean"]) == 2
    assert rows[0]["env_steps"] >= 2 * 2 * 2 * 10 * 2  # the meta-learners' training steps
    md = (tmp_path / "docs" / "rl.md").read_text()
    assert "not run" not in line(md, "ppo-finetune")
    again = mod.main(config(mod, tmp_path, algos=("ppo-finetune",)))  # done: read, not rerun
    assert again[0]["run_dir"] == rows[0]["run_dir"]


@pytest.mark.parametrize(("kw", "option"), [
    ({"envs": ("HalfCheetah",)}, "envs"), ({"algos": ("ppo",)}, "algos"),
    ({"seeds": ()}, "seeds"), ({"preset": "huge"}, "preset"), ({"max_runs": -1}, "max_runs"),
    ({"horizon": 0}, "horizon"),
])
def test_bad_options_name_the_option(kw: dict[str, object], option: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    mod = script(monkeypatch)
    with pytest.raises(ValueError, match=option):
        config(mod, tmp_path, **kw)
