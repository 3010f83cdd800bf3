"""The stable-baselines3 PPO baselines: episode-locked envs, the oracle's observation,
fine-tuning with exactly the stated episodes, and a short end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from metarl.envs.navigation import Navigation2DTask
from metarl.rl.baselines_sb3 import (
    BaselineConfig,
    episode_locked,
    finetune,
    main,
    pretrain,
    task_features,
)
from metarl.rl.factories import make_env

pytest.importorskip("stable_baselines3")

# 2 tasks x 2 episodes x 10 steps per rollout; 2 held-out tasks, 2 fine-tuning updates.
TINY = dict(env="Navigation2D", preset="fast", meta_batch=2, episodes_per_task=2, horizon=10,
            eval_tasks=2, eval_seeds=1, eval_inner_steps=2, pretrain_steps=80, n_epochs=2,
            minibatches=2, threads=1)


def tiny(tmp_path: Path, **kw: object) -> BaselineConfig:
    return BaselineConfig(**{**TINY, "run_root": str(tmp_path), **kw})  # type: ignore[arg-type]


def params(model: object) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.policy.parameters()]  # type: ignore[attr-defined]


def test_episode_locked_runs_one_episode_per_horizon(tmp_path: Path) -> None:
    """An env that reaches its goal early is absorbed (reward 0, no done) until the horizon."""
    cfg = tiny(tmp_path)
    near, far = Navigation2DTask((0.05, 0.0)), Navigation2DTask((0.4, 0.4))
    env = episode_locked(make_env(cfg.train_config, 2, 0), [near, far], observe_task=False)
    env.reset()
    for t in range(10):
        obs, rewards, dones, infos = env.step(np.array([[0.05, 0.0], [0.0, 0.0]]))
        if t == 0:  # env 0 reached the goal (within 0.01) and terminated
            np.testing.assert_allclose(obs[0], [0.05, 0.0])
        if 0 < t < 9:
            assert rewards[0] == 0.0 and rewards[1] < 0 and not dones.any()
            np.testing.assert_allclose(obs[0], [0.05, 0.0])  # absorbed at the goal
    assert dones.all() and env.episodes == 2
    assert infos[0]["TimeLimit.truncated"] is False and infos[1]["TimeLimit.truncated"] is True
    np.testing.assert_allclose(obs, 0.0)  # every env reset together
    assert env.last_returns[1] == pytest.approx(-10 * np.hypot(0.4, 0.4), rel=1e-6)


def test_oracle_observation_contains_the_task(tmp_path: Path) -> None:
    cfg = tiny(tmp_path, baseline="oracle")
    draws = iter([[Navigation2DTask((0.1, 0.2))] * 2, [Navigation2DTask((-0.3, 0.4))] * 2])
    env = episode_locked(make_env(cfg.train_config, 2, 0), next(draws), observe_task=True,
                         next_tasks=lambda: next(draws))
    assert env.observation_space.shape == (4,)
    obs = env.reset()
    np.testing.assert_allclose(obs[:, 2:], [[0.1, 0.2]] * 2)
    for _ in range(10):
        obs, _, dones, infos = env.step(np.zeros((2, 2)))
    assert dones.all()
    np.testing.assert_allclose(infos[0]["terminal_observation"][2:], [0.1, 0.2])
    np.testing.assert_allclose(obs[:, 2:], [[-0.3, 0.4]] * 2)  # the next tasks, observed
    np.testing.assert_allclose(task_features(env.tasks), obs[:, 2:])
    plain = episode_locked(make_env(cfg.train_config, 2, 0), env.tasks, observe_task=False)
    assert plain.reset().shape == (2, 2)  # finetune: the task is not observed


def test_finetune_changes_the_policy_with_exactly_the_episodes(tmp_path: Path) -> None:
    cfg = tiny(tmp_path)
    model, steps = pretrain(cfg)
    assert steps >= cfg.total_pretrain_steps
    before = params(model)
    returns, tuned, env = finetune(cfg, model, Navigation2DTask((0.3, -0.2)), seed=5, updates=2)
    e_, h_ = cfg.hp.episodes_per_task, cfg.hp.horizon
    assert returns.shape == (3,) and np.isfinite(returns).all()
    assert env.episodes == 3 * e_  # E episodes before each of 2 updates, E after the last
    assert tuned.num_timesteps == 2 * e_ * h_ and tuned._n_updates == 2 * cfg.finetune_epochs
    assert all(not torch.equal(a, b) for a, b in zip(before, params(tuned), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before, params(model), strict=True))
    again = finetune(cfg, model, Navigation2DTask((0.3, -0.2)), seed=5, updates=2)[0]
    np.testing.assert_array_equal(returns, again)  # same seed, same fine-tuning


def test_end_to_end_writes_the_meta_learners_eval_json(tmp_path: Path) -> None:
    run_dir = main(tiny(tmp_path, baseline="oracle"))
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["algo"] == "ppo-oracle" and ev["env"] == "Navigation2D"
    assert np.asarray(ev["returns"]).shape == (1, 3, 2)  # seeds x (K + 1) x tasks
    assert len(ev["overall"]["mean"]) == 3 and ev["episodes_per_task"] == 2
    assert ev["env_steps"] >= 80 and ev["wall_s"] > 0
    assert (run_dir / "eval.png").stat().st_size > 5_000 and (run_dir / "model.zip").is_file()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["kind"] == "sb3-baseline" and saved["resolved"]["horizon"] == 10


@pytest.mark.parametrize(("kw", "field"), [
    ({"baseline": "ppo"}, "baseline"), ({"env": "Cartpole"}, "env"), ({"pretrain_steps": 0},
                                                               "pretrain_steps"),
    ({"finetune_lr": 0.0}, "finetune_lr"), ({"hidden": ()}, "hidden"),
    ({"minibatches": 1000}, "minibatches"), ({"horizon": 0}, "horizon"),
])
def test_bad_options_name_the_field(kw: dict[str, object], field: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=field):
        tiny(tmp_path, **kw)
