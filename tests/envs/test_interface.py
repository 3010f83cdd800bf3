"""The batched-env interface: every batched env satisfies the ``BatchedTaskEnv`` protocol, and
the names the batched module held before it was split by job still import from it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs import engine, gym_vector, interface, physics
from metarl.envs.batched import make_batched
from metarl.envs.interface import BatchedTaskEnv
from metarl.envs.navigation import Navigation2DVec


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """MuJoCo appends its warnings to MUJOCO_LOG.TXT in the working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name,cls", [("HalfCheetahVel", engine.MujocoBatchedEnv),
                                      ("Navigation2D", Navigation2DVec),
                                      ("Pendulum-v1", gym_vector.GymVectorTaskEnv)])
def test_every_batched_env_satisfies_the_protocol(name: str, cls: type) -> None:
    env = make_batched(name, 2, horizon=3, seed=0)
    assert type(env) is cls and isinstance(env, BatchedTaskEnv)
    assert isinstance(env, interface.TaskVectorEnv)  # the shared base: SAME_STEP, checks
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, *env.single_observation_space.shape)  # type: ignore[misc]
    actions = np.zeros((2, *env.single_action_space.shape))  # type: ignore[misc]
    for _ in range(env.horizon):
        _, _, terminated, truncated, info = env.step(actions)
    assert (terminated | truncated).all() and info["_final_obs"].all()
    env.close()


def test_protocol_rejects_a_plain_vector_env() -> None:
    import gymnasium

    plain = gymnasium.make_vec("Pendulum-v1", num_envs=2)
    assert not isinstance(plain, BatchedTaskEnv)  # no tasks, no horizon
    plain.close()


def test_navigation_vec_shares_the_task_checks() -> None:
    env = Navigation2DVec(3)
    with pytest.raises(ValueError, match="'tasks' must hold num_envs=3 tasks, got 2"):
        env.set_tasks(env.sample_tasks(2))


def test_sb3_adapter_takes_any_batched_env() -> None:
    pytest.importorskip("stable_baselines3")
    from metarl.envs.sb3_vec import to_sb3

    venv = to_sb3(Navigation2DVec(2, horizon=4))
    assert venv.reset().shape == (2, 2)


def test_names_of_the_split_modules_still_import_from_batched() -> None:
    from metarl.envs import batched

    moved = {"MujocoBatchedEnv": engine, "env_rngs": engine, "BatchedTaskEnv": interface,
             "GymVectorTaskEnv": gym_vector, "EnvFn": gym_vector, "set_vector_tasks": gym_vector,
             "VECTORIZATION_MODES": gym_vector, "physics_backend": physics,
             "has_mujoco_batch": physics, "default_num_threads": physics,
             "PHYSICS_BACKENDS": physics, "BatchPhysics": physics, "DataPhysics": physics}
    for name, module in moved.items():
        assert getattr(batched, name) is getattr(module, name), name
    for name in ("make_batched", "check_positive", "resolve_horizon", "gym_id"):
        assert callable(getattr(batched, name)), name
    assert set(batched.__all__) <= set(dir(batched))
