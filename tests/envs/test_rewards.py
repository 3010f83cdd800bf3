"""Each reward formula against hand computation from MuJoCo state (qpos, cfrc_ext)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import pytest

import metarl.envs  # noqa: F401  (registers the ids)
from metarl.envs.core import StepArrays
from metarl.envs.halfcheetah import HalfCheetahDirTask, HalfCheetahVelTask
from metarl.envs.navigation import Navigation2DEnv, Navigation2DTask
from metarl.envs.registration import get_kernel

Hand = Callable[[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], float]


def ant_costs(a: np.ndarray, cfrc: np.ndarray) -> float:
    return 0.005 * float(a @ a) + 5e-4 * float(np.sum(np.clip(cfrc, -1, 1) ** 2))


def hand_cheetah_vel(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                     cfrc: np.ndarray, dt: float) -> float:
    return -abs((after[0] - before[0]) / dt - task.velocity) - 0.05 * float(a @ a)


def hand_cheetah_dir(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                     cfrc: np.ndarray, dt: float) -> float:
    return task.direction * (after[0] - before[0]) / dt - 0.05 * float(a @ a)


def hand_ant_vel(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                 cfrc: np.ndarray, dt: float) -> float:
    v = (after[0] - before[0]) / dt
    return -abs(v - task.velocity) + 1.0 + 0.05 - ant_costs(a, cfrc)


def hand_ant_dir(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                 cfrc: np.ndarray, dt: float) -> float:
    return task.direction * (after[0] - before[0]) / dt + 0.05 - ant_costs(a, cfrc)


def hand_ant_dir2d(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                   cfrc: np.ndarray, dt: float) -> float:
    vx, vy = (after[0] - before[0]) / dt, (after[1] - before[1]) / dt
    ux, uy = task.direction
    return ux * vx + uy * vy + 0.05 - ant_costs(a, cfrc)


def hand_ant_goal(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                  cfrc: np.ndarray, dt: float) -> float:
    l1 = abs(after[0] - task.goal[0]) + abs(after[1] - task.goal[1])
    return -l1 + 4.0 + 0.05 - ant_costs(a, cfrc)


def hand_hopper(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                cfrc: np.ndarray, dt: float) -> float:
    healthy = after[1] > 0.7 and -0.2 < after[2] < 0.2
    return (after[0] - before[0]) / dt + float(healthy) - 1e-3 * float(a @ a)


def hand_walker(task: Any, before: np.ndarray, after: np.ndarray, a: np.ndarray,
                cfrc: np.ndarray, dt: float) -> float:
    healthy = 0.8 < after[1] < 2.0 and -1.0 < after[2] < 1.0
    return (after[0] - before[0]) / dt + float(healthy) - 1e-3 * float(a @ a)


HAND: dict[str, Hand] = {
    "HalfCheetahVel": hand_cheetah_vel, "HalfCheetahDir": hand_cheetah_dir,
    "AntVel": hand_ant_vel, "AntDir": hand_ant_dir, "AntDir2D": hand_ant_dir2d,
    "AntGoal": hand_ant_goal, "HopperRandParams": hand_hopper,
    "Walker2DRandParams": hand_walker,
}
DT = {"HalfCheetah": 0.05, "Ant": 0.05, "Hopper": 0.008, "Walker2D": 0.008}


@pytest.mark.parametrize("name", sorted(HAND))
def test_reward_matches_hand_computation(name: str) -> None:
    env: Any = gymnasium.make(f"metarl/{name}-v0").unwrapped
    env.reset(seed=2)
    env.set_task(env.sample_tasks(1)[0])
    env.reset(seed=2)
    task, data = env.get_task(), env.data
    dt = next(v for k, v in DT.items() if name.startswith(k))
    rng = np.random.default_rng(7)
    scale = 2.0 if name.startswith("Ant") else 1.0  # beyond the range: raw actions are costed
    for _ in range(25):
        a = rng.uniform(-scale, scale, size=env.action_space.shape)
        before = data.qpos.copy()
        _, reward, terminated, _, info = env.step(a)
        expected = HAND[name](task, before, data.qpos.copy(), a, data.cfrc_ext.copy(), dt)
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert info["x_velocity"] == pytest.approx((data.qpos[0] - before[0]) / dt, rel=1e-12)
        if terminated:
            env.reset()


def test_ant_contact_cost_is_nonzero_and_terminates_like_ant_v5() -> None:
    env = gymnasium.make("metarl/AntVel-v0").unwrapped
    base = gymnasium.make("Ant-v5").unwrapped
    env.reset(seed=0)
    base.reset(seed=0)
    rng = np.random.default_rng(3)
    contact = []
    for _ in range(120):
        a = rng.uniform(-1, 1, size=8)
        _, _, term, _, info = env.step(a)
        _, _, bterm, _, binfo = base.step(a)
        assert term == bterm
        # Ant-v5's contact cost uses the same clipped cfrc_ext, weight 5e-4.
        assert info["reward_contact"] == pytest.approx(binfo["reward_contact"], rel=1e-12)
        contact.append(-info["reward_contact"])
        if term:
            break
    assert max(contact) > 0


def test_kernel_hand_values() -> None:
    """A fixed step: x moves 0.1 in dt = 0.05, so v_x = 2."""
    s = StepArrays(qpos_before=np.zeros((2, 9)), qpos_after=np.zeros((2, 9)),
                   qvel_after=np.zeros((2, 9)), action=np.ones((2, 6)), cfrc_ext=None, dt=0.05)
    s.qpos_after[:, 0] = 0.1
    vel = get_kernel("HalfCheetahVel")
    params = vel.task_params([HalfCheetahVelTask(1.5), HalfCheetahVelTask(0.0)])
    r, parts = vel.reward(s, params)
    np.testing.assert_allclose(r, [-0.5 - 0.3, -2.0 - 0.3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(parts["x_velocity"], [2.0, 2.0])
    d = get_kernel("HalfCheetahDir")
    r, _ = d.reward(s, d.task_params([HalfCheetahDirTask(-1.0), HalfCheetahDirTask(1.0)]))
    np.testing.assert_allclose(r, [-2.3, 1.7], rtol=0, atol=1e-12)


def test_ant_goal_kernel_hand_value() -> None:
    k = get_kernel("AntGoal")
    s = StepArrays(qpos_before=np.zeros((1, 15)), qpos_after=np.zeros((1, 15)),
                   qvel_after=np.zeros((1, 14)), action=np.full((1, 8), 0.5),
                   cfrc_ext=np.zeros((1, 14, 6)), dt=0.05)
    s.qpos_after[0, :3] = (1.0, -1.0, 0.5)
    s.cfrc_ext[0, 3, :2] = (2.0, -0.5)  # clipped to (1, -0.5): sum of squares 1.25
    r, _ = k.reward(s, np.array([[2.0, 1.0]]))
    expected = -(1.0 + 2.0) + 4.05 - 0.005 * 8 * 0.25 - 5e-4 * 1.25
    assert r[0] == pytest.approx(expected, rel=0, abs=1e-12)
    assert not k.terminated(s.qpos_after, s.qvel_after)[0]
    s.qpos_after[0, 2] = 1.2
    assert k.terminated(s.qpos_after, s.qvel_after)[0]


def test_kernel_batch_rows_equal_single_rows() -> None:
    """N = 3 at once equals three N = 1 calls (what the batched engine relies on)."""
    k = get_kernel("AntDir2D")
    rng = np.random.default_rng(0)
    s = StepArrays(rng.normal(size=(3, 15)), rng.normal(size=(3, 15)), rng.normal(size=(3, 14)),
                   rng.normal(size=(3, 8)), rng.normal(size=(3, 14, 6)), 0.05)
    angles = rng.uniform(0, 2 * np.pi, 3)
    params = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    r, _ = k.reward(s, params)
    for i in range(3):
        one = StepArrays(*(x[i:i + 1] for x in (s.qpos_before, s.qpos_after, s.qvel_after,
                                                 s.action, s.cfrc_ext)), 0.05)
        assert k.reward(one, params[i:i + 1])[0][0] == r[i]
    obs = k.observation(s.qpos_after, s.qvel_after, s.cfrc_ext)
    assert obs.shape == (3, 13 + 14 + 13 * 6)


def test_navigation_reward_hand_values() -> None:
    env = Navigation2DEnv(Navigation2DTask((0.3, -0.4)))
    assert np.array_equal(env.reset(seed=0)[0], [0.0, 0.0])
    obs, r, term, _, _ = env.step(np.array([0.5, -0.05]))  # x clipped to 0.1
    np.testing.assert_array_equal(obs, [0.1, -0.05])
    assert r == pytest.approx(-np.hypot(0.2, 0.35), abs=1e-15) and not term
    env.set_task(Navigation2DTask((0.105, -0.05)))
    _, r, term, _, _ = env.step(np.array([0.0, 0.0]))
    assert r == pytest.approx(-0.005, abs=1e-15) and term  # within 0.01 of the goal
