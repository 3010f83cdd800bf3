"""Meta-World ML1 / ML10 / ML45 behind the task interface (in .venv-mw: make test-metaworld)."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest

pytest.importorskip("metaworld")

from gymnasium.utils.env_checker import check_env  # noqa: E402
from metaworld.policies import SawyerReachV3Policy  # noqa: E402

from metarl.envs import metaworld as mw  # noqa: E402
from metarl.envs.core import Task, TaskDistribution, tasks_from_json, tasks_to_json  # noqa: E402

pytestmark = [pytest.mark.metaworld,
              pytest.mark.filterwarnings("ignore::UserWarning")]

ML10_TRAIN = ["reach-v3", "push-v3", "pick-place-v3", "door-open-v3", "drawer-close-v3",
              "button-press-topdown-v3", "peg-insert-side-v3", "window-open-v3", "sweep-v3",
              "basketball-v3"]
ML10_TEST = ["drawer-open-v3", "door-close-v3", "shelf-place-v3", "sweep-into-v3",
             "lever-pull-v3"]


def _reach(env: mw.MetaWorldTaskEnv, task: mw.MetaWorldTask, steps: int) -> list[bool]:
    """Meta-World's scripted reach policy (given the hidden goal); the success flags."""
    policy = SawyerReachV3Policy()
    obs, _ = env.reset(seed=0)
    flags = []
    for _ in range(steps):
        obs = obs.copy()
        obs[36:39] = task.rand_vec[3:6]  # ML hides the goal; the scripted policy reads it
        obs, _, _, _, info = env.step(policy.get_action(obs))
        flags.append(info["success"])
    return flags


def test_ml1_reach_sample_set_reset_step() -> None:
    env = mw.MetaWorldTaskEnv("ML1", "reach-v3")
    assert isinstance(env.unwrapped, TaskDistribution)
    env.reset(seed=0)
    tasks = env.sample_tasks(5)
    assert all(isinstance(t, mw.MetaWorldTask) and t.env_name == "reach-v3" for t in tasks)
    goals = mw.goal_set("reach-v3", "train", 0)
    assert len(goals) == 50 and len(set(goals)) == 50
    for t in tasks:
        assert t.rand_vec == goals[t.index]
    env.set_task(tasks[1])
    assert env.get_task() == tasks[1]
    obs, _ = env.reset(seed=1)
    assert obs.shape == (39,) and obs.dtype == np.float64
    np.testing.assert_array_equal(obs[36:], 0.0)  # ML: goal hidden
    inner = env._envs["reach-v3"]
    np.testing.assert_allclose(inner._target_pos, tasks[1].rand_vec[3:6])  # goal really set
    obs2, reward, terminated, truncated, info = env.step(np.zeros(4))
    assert obs2.shape == (39,) and np.isfinite(reward) and not terminated and not truncated
    assert isinstance(info["success"], bool)


def test_ml1_train_and_test_goals_differ() -> None:
    train, test = mw.goal_set("reach-v3", "train", 0), mw.goal_set("reach-v3", "test", 0)
    assert not set(train) & set(test)
    assert mw.goal_set("reach-v3", "train", 1) != train


def test_ml10_train_test_classes_disjoint() -> None:
    assert mw.class_names("ML10", "train") == ML10_TRAIN
    assert mw.class_names("ML10", "test") == ML10_TEST
    ml45_train, ml45_test = mw.class_names("ML45", "train"), mw.class_names("ML45", "test")
    assert len(ml45_train) == 45 and len(ml45_test) == 5 and not set(ml45_train) & set(ml45_test)
    env = mw.MetaWorldTaskEnv("ML10", None)
    env.reset(seed=0)
    test = env.sample_tasks(12, split="test")
    assert {t.env_name for t in test} <= set(ML10_TEST) and len({t.env_name for t in test}) > 1
    train = env.sample_tasks(3, split="train")
    assert {t.env_name for t in train} <= set(ML10_TRAIN)
    env.set_task(test[0])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (39,)
    assert env._envs[test[0].env_name] is not None
    with pytest.raises(ValueError, match="'env_name' must be one of"):
        mw.MetaWorldTask("ML10", "drawer-open-v3", "train", 0, 0, test[0].rand_vec).validate()


def test_success_flag_and_rate() -> None:
    env = mw.MetaWorldTaskEnv("ML1", "reach-v3", horizon=150)
    env.reset(seed=0)
    task = env.sample_tasks(1)[0]
    assert isinstance(task, mw.MetaWorldTask)
    env.set_task(task)
    reached = _reach(env, task, 150)
    idle = []
    env.reset(seed=0)
    for _ in range(20):
        idle.append(env.step(np.zeros(4))[4]["success"])
    assert any(reached) and not any(idle)
    assert mw.success_rate(np.array([reached, idle[:1] * 150]).T) == 0.5
    assert mw.success_rate([[0, 0, 1], [0, 0, 0], [1, 0, 0]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="'success_tn'"):
        mw.success_rate([1, 0])


def test_vector_success_and_autoreset() -> None:
    vec = mw.make_metaworld("MetaWorld/ML1-reach-v3", 2, horizon=120, seed=0)
    tasks = vec.sample_tasks(2)
    vec.set_tasks(tasks)
    assert vec.get_tasks() == tasks
    obs, _ = vec.reset()
    policy = SawyerReachV3Policy()
    seen = np.zeros(2, dtype=bool)
    for _ in range(120):
        obs = obs.copy()
        obs[:, 36:39] = [task.rand_vec[3:6] for task in tasks]  # type: ignore[attr-defined]
        actions = np.stack([policy.get_action(o) for o in obs])
        obs, rewards, terminated, truncated, info = vec.step(actions)
        assert info["success"].dtype == bool and info["success"].shape == (2,)
        seen |= info["success"]
    assert seen.all()
    assert truncated.all() and info["_final_obs"].all()  # step 120 ended and reset both
    assert info["final_obs"].shape == (2, 39) and obs.dtype == np.float64
    assert vec.horizon == 120 and vec.metadata["autoreset_mode"] == \
        gymnasium.vector.AutoresetMode.SAME_STEP
    vec.close()


def test_json_round_trip(tmp_path: Path) -> None:
    env = mw.MetaWorldTaskEnv("ML1", "reach-v3")
    env.reset(seed=3)
    tasks = env.sample_tasks(4) + env.sample_tasks(2, split="test")
    tasks_to_json(tasks, tmp_path / "tasks.json")
    loaded = tasks_from_json(tmp_path / "tasks.json")
    assert loaded == tasks
    assert Task.from_dict(tasks[0].to_dict()) == tasks[0]
    assert pickle.loads(pickle.dumps(tasks[0])) == tasks[0]
    bad = tasks[0].to_dict() | {"index": 50}
    with pytest.raises(ValueError, match="'index'"):
        Task.from_dict(bad)


def _rollout(seed: int, mode: str) -> tuple[list[Task], np.ndarray]:
    vec = mw.MetaWorldVecEnv("ML1", 2, env_name="reach-v3", horizon=30, seed=seed,
                             vectorization_mode=mode)
    tasks = vec.sample_tasks(2)
    vec.set_tasks(tasks)
    out = [vec.reset()[0]]
    rng = np.random.default_rng(0)
    for _ in range(30):
        obs, rewards, *_ = vec.step(rng.uniform(-1, 1, (2, 4)))
        out += [obs, rewards[:, None]]
    vec.close()
    return tasks, np.concatenate(out, axis=1)


def test_determinism_with_seed() -> None:
    tasks_a, traj_a = _rollout(7, "sync")
    tasks_b, traj_b = _rollout(7, "async")
    assert tasks_a == tasks_b
    np.testing.assert_array_equal(traj_a, traj_b)
    tasks_c, traj_c = _rollout(8, "sync")
    assert tasks_c != tasks_a and not np.array_equal(traj_c, traj_a)


def test_bad_names_raise() -> None:
    with pytest.raises(ValueError, match=r"'benchmark' must be one of \('ML1', 'ML10', 'ML45'\)"):
        mw.MetaWorldTaskEnv("ML2", None)
    with pytest.raises(ValueError, match="'env_name' must be one of .*reach-v3"):
        mw.MetaWorldTaskEnv("ML1", "reach-v9")
    with pytest.raises(ValueError, match="'env_name' must be None for ML45"):
        mw.MetaWorldVecEnv("ML45", 2, env_name="reach-v3")
    with pytest.raises(ValueError, match="'name' must be one of 'ML1-<class>'"):
        mw.parse_name("ML20")
    with pytest.raises(ValueError, match="'split' must be one of"):
        mw.class_names("ML10", "val")
    with pytest.raises(ValueError, match="'horizon' must be an integer in \\[1, 500\\]"):
        mw.MetaWorldTaskEnv("ML1", "reach-v3", horizon=501)
    with pytest.raises(ValueError, match="'vectorization_mode' must be one of"):
        mw.MetaWorldVecEnv("ML1", 1, env_name="reach-v3", vectorization_mode="ray")


def test_check_env_and_registration() -> None:
    env = mw.MetaWorldTaskEnv("ML1", "reach-v3")
    check_env(env, skip_render_check=True)
    env_id = mw.register("MetaWorld/ML1-reach-v3")
    made = gymnasium.make(env_id)
    assert made.spec is not None and made.spec.max_episode_steps == 500
    assert isinstance(made.unwrapped, mw.MetaWorldTaskEnv)
    check_env(made.unwrapped, skip_render_check=True)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.get_task() == env.get_task()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "metaworld", None)
    with pytest.raises(ImportError, match=r"pip install 'metarl\[metaworld\]'"):
        mw.class_names("ML10", "train")
