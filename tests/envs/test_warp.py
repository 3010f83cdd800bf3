"""The engine's ``physics="warp"`` back-end (MuJoCo Warp) against the C engine.

Needs the optional extra ``warp`` (``mujoco-warp``, ``warp-lang``); without it only the refusal
is tested. Warp runs on its CPU device here when there is no GPU (its first run compiles the
kernels, about a minute, cached in ~/.cache/warp afterwards).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from metarl.envs.batched import has_mujoco_warp, make_batched, physics_backend

needs_warp = pytest.mark.skipif(not has_mujoco_warp(),
                                reason="needs the optional extra warp (mujoco-warp, warp-lang)")


@pytest.fixture(autouse=True)
def _mujoco_log_in_tmp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_warp_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match="'physics' cannot be 'warp': this kernel reads cfrc_ext"):
        physics_backend("warp", needs_cfrc_ext=True)
    if not has_mujoco_warp():
        with pytest.raises(ValueError, match="mujoco_warp is not installed"):
            physics_backend("warp", needs_cfrc_ext=False)


@needs_warp
@pytest.mark.parametrize("name", ["HalfCheetahVel", "HalfCheetahDir"])
def test_warp_equals_the_c_engine_in_float32(name: str) -> None:
    """Same tasks, seeds and actions: observations and rewards within float32 tolerance over
    12 steps, an autoreset at step 8 included (measured: 1.1e-4 on obs, 1e-5 on rewards, on
    Warp's CPU device); flags and reward parts alike."""
    from metarl.envs.physics import WarpPhysics

    n, horizon = 3, 8
    envs = [make_batched(name, n, horizon=horizon, seed=4, physics=p) for p in ("auto", "warp")]
    assert isinstance(envs[1]._physics, WarpPhysics)  # type: ignore[attr-defined]
    tasks = envs[0].sample_tasks(n)
    rng = np.random.default_rng(0)
    for env in envs:
        env.set_tasks(tasks)
    obs = [env.reset(seed=4)[0] for env in envs]
    np.testing.assert_allclose(obs[1], obs[0], rtol=0, atol=1e-6)
    for t in range(12):
        action = rng.uniform(-1, 1, (n, 6))
        (o_c, r_c, te_c, tr_c, i_c), (o_w, r_w, te_w, tr_w, i_w) = (e.step(action) for e in envs)
        np.testing.assert_allclose(o_w, o_c, rtol=1e-4, atol=5e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(r_w, r_c, rtol=1e-4, atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_array_equal(te_w, te_c)
        np.testing.assert_array_equal(tr_w, tr_c)
        np.testing.assert_allclose(i_w["x_velocity"], i_c["x_velocity"], rtol=1e-4, atol=1e-4)
    for env in envs:
        env.close()


@needs_warp
def test_warp_refuses_per_task_models() -> None:
    """Randomised-physics tasks (one MjModel per task) are refused, never run on the base model."""
    env: Any = make_batched("HalfCheetahVel", 2, horizon=5, seed=0, physics="warp")
    with pytest.raises(ValueError, match="'physics' cannot be 'warp' for randomised-physics"):
        env._physics.set_models([env._base_model] * 2)
    env.close()
