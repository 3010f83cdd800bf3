"""``metarl train --env ML1-<task> | ML10 | ML45``: a short Meta-World run with success rates in
the training logs, TensorBoard and the held-out evaluation (in .venv-mw: make test-metaworld)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("metaworld")

from metarl.logging import read_scalars  # noqa: E402
from metarl.rl.config import TrainConfig  # noqa: E402
from metarl.rl.factories import make_env, make_sampler  # noqa: E402
from metarl.rl.presets import get_preset  # noqa: E402
from metarl.rl.train import main  # noqa: E402

pytestmark = [pytest.mark.metaworld, pytest.mark.filterwarnings("ignore::UserWarning")]

# 2 tasks x 2 episodes x 30 steps per phase, 2 iterations, 2 held-out goals.
TINY = dict(env="ML1-reach-v3", iterations=2, meta_batch=2, episodes_per_task=2, horizon=30,
            eval_tasks=2, eval_seeds=1, eval_inner_steps=1, eval_every=1, threads=1,
            progress=False)


def test_ml1_short_run_logs_success_beside_return(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = main(TrainConfig(**{**TINY, "run_root": str(tmp_path)}))  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "success_step0=" in out and "success_step1=" in out  # console, every iteration
    assert "success rate (mean +- 95% CI)" in out  # the final table
    for tag in ("adapt/success_step0", "adapt/success_step1", "eval/success_step1"):
        steps = read_scalars(run_dir, tag)
        assert steps and all(0.0 <= v <= 1.0 for v in steps.values()), tag
    assert set(read_scalars(run_dir, "adapt/success_step1")) == {1, 2}
    ev = json.loads((run_dir / "eval.json").read_text())
    success = np.asarray(ev["success"])
    assert success.shape == (1, 2, 2) and ((success >= 0) & (success <= 1)).all()
    assert len(ev["overall_success"]["mean"]) == 2
    assert {t["task"]["env_name"] for t in ev["per_task"]} == {"reach-v3"}
    assert {t["task"]["split"] for t in ev["per_task"]} == {"test"}  # held-out goals


def test_sampler_success_is_the_flag_on_valid_steps() -> None:
    """An episode succeeds when info["success"] is raised on one of its valid steps."""
    cfg = TrainConfig(**{**TINY, "run_root": "unused"})  # type: ignore[arg-type]
    env = make_env(cfg, 4, 0)
    env.reset(seed=0)
    tasks = env.sample_tasks(2)
    sampler = make_sampler(env, 2, "cpu")
    from metarl.rl.factories import build_learner

    learner = build_learner(cfg, env)
    episodes = sampler.sample(learner.policy, learner.stacked_params(2), tasks, seed=3)
    assert episodes.success is not None and episodes.success.shape == (2, 2)
    assert set(episodes.success.unique().tolist()) <= {0.0, 1.0}
    env.close()


def test_benchmark_names_and_presets() -> None:
    for name in ("ML1-reach-v3", "ML10", "ML45"):
        cfg = TrainConfig(env=name, preset="paper")
        assert cfg.hp.horizon == 500 and cfg.hp == get_preset(name, "paper")
        assert TrainConfig(env=name).hp.horizon == 150
    with pytest.raises(ValueError, match="'env_name' must be one of"):
        TrainConfig(env="ML1-reach-v9")
    with pytest.raises(ValueError, match="env must be one of"):
        TrainConfig(env="ML20")
