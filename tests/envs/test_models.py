"""Base envs compile each MuJoCo model source once per process, with bit-identical models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium
import mujoco
import numpy as np
import pytest

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.models import make_base_env
from metarl.envs.registration import DISTRIBUTIONS, get_kernel

BASES = sorted({(get_kernel(n).base_id, tuple(get_kernel(n).base_kwargs.items()))
                for n in DISTRIBUTIONS if n != "Navigation2D"})

# Many HalfCheetah envs, single and batched (both physics back-ends), a pickle round trip and
# a Gymnasium vector env of single envs: each compile of the XML printed the warning.
MANY_CHEETAHS = """
import pickle
import gymnasium
import metarl.envs
from metarl.envs.batched import EnvFn, gym_id, make_batched
envs = [gymnasium.make("metarl/HalfCheetahVel-v0") for _ in range(4)]
pickle.loads(pickle.dumps(envs[0].unwrapped))
for physics in ("auto", "data"):
    make_batched("HalfCheetahVel", 3, horizon=5, physics=physics).close()
vec = gymnasium.vector.SyncVectorEnv([EnvFn(gym_id("HalfCheetahDir"), 5)] * 3)
vec.reset(seed=0)
vec.close()
"""


def model_bytes(model: Any) -> np.ndarray:
    """The model as MuJoCo's binary MJB file: equal bytes = equal in every field."""
    buffer = np.empty(mujoco.mj_sizeModel(model), dtype=np.uint8)
    mujoco.mj_saveModel(model, None, buffer)
    return buffer


def test_settotalmass_warning_is_printed_at_most_once(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", MANY_CHEETAHS], capture_output=True,
                         text=True, check=True, cwd=tmp_path)
    log = tmp_path / "MUJOCO_LOG.TXT"
    logged = log.read_text() if log.exists() else ""
    assert out.stderr.count("settotalmass") <= 1, out.stderr
    assert logged.count("settotalmass") <= 1, logged


@pytest.mark.parametrize("base_id,kwargs", BASES)
def test_copied_models_equal_gymnasiums_compile(base_id: str, kwargs: tuple[Any, ...],
                                                tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MuJoCo's warnings go to MUJOCO_LOG.TXT here
    first, second = make_base_env(base_id, **dict(kwargs)), make_base_env(base_id, **dict(kwargs))
    reference: Any = gymnasium.make(base_id, **dict(kwargs)).unwrapped  # Gymnasium's own compile
    assert isinstance(first, type(reference)) and first.model is not second.model
    for env in (first, second):
        np.testing.assert_array_equal(model_bytes(env.model), model_bytes(reference.model))
        np.testing.assert_array_equal(env.init_qpos, reference.init_qpos)
        np.testing.assert_array_equal(env.init_qvel, reference.init_qvel)
    first.model.body_mass[:] *= 2.0  # each env owns its model: the others are untouched
    np.testing.assert_array_equal(second.model.body_mass, reference.model.body_mass)
    third = make_base_env(base_id, **dict(kwargs))
    np.testing.assert_array_equal(model_bytes(third.model), model_bytes(reference.model))


def test_other_envs_are_made_as_gymnasium_makes_them() -> None:
    env = make_base_env("Pendulum-v1")
    assert type(env) is type(gymnasium.make("Pendulum-v1").unwrapped)
