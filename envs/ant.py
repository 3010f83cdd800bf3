"""AntVel, AntDir (+/-1), AntDir2D (unit vector) and AntGoal over Gymnasium's Ant-v5.

Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017
(AntVel, AntDir); Rothfuss et al., "ProMP", ICLR 2019 and Rakelly et al., "PEARL", ICML 2019
(AntGoal, 2-D directions). Constants as pytorch-maml-rl (``ant.py``): survive reward 0.05,
control cost ``0.5e-2 sum(a^2)``, contact cost ``0.5e-3 sum(clip(cfrc_ext, -1, 1)^2)``,
AntVel bonus +1.0, AntGoal bonus +4.0. Termination and observation are Ant-v5's (healthy
torso height in [0.2, 1.0] and a finite state; ``qpos[2:]``, ``qvel``,
``clip(cfrc_ext[1:], -1, 1)``). Velocities come from ``qpos[:2]`` of the free root joint
(Ant-v5's own ``x_velocity`` reads the torso's ``xpos``, which lags one physics substep).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .core import StepArrays, Task, check_range, check_vector_range
from .halfcheetah import check_direction, draw_direction
from .mujoco_env import (
    MujocoTaskEnv,
    RewardTaskKernel,
    contact_cost,
    ctrl_cost,
    uniform_normal_reset,
    xy_velocity,
)

SURVIVE_REWARD = 0.05
CTRL_COST_WEIGHT = 0.005
CONTACT_COST_WEIGHT = 5e-4
VEL_BONUS = 1.0
GOAL_BONUS = 4.0
VELOCITY_RANGE = (0.0, 3.0)
GOAL_RANGE = (-3.0, 3.0)
HEALTHY_Z_RANGE = (0.2, 1.0)
UNIT_TOL = 1e-9


@dataclasses.dataclass(frozen=True)
class AntVelTask(Task):
    """Attributes:
    velocity: target x velocity ``v*`` of the torso (m/s), in [0, 3].
    """

    velocity: float

    def validate(self) -> None:
        check_range("velocity", self.velocity, *VELOCITY_RANGE)


@dataclasses.dataclass(frozen=True)
class AntDirTask(Task):
    """Attributes:
    direction: +1.0 rewards running along +x, -1.0 along -x.
    """

    direction: float

    def validate(self) -> None:
        check_direction(self.direction)


@dataclasses.dataclass(frozen=True)
class AntDir2DTask(Task):
    """Attributes:
    direction: unit vector ``(u_x, u_y)``; the reward is ``u . v_xy``.
    """

    direction: tuple[float, float]

    def validate(self) -> None:
        if len(self.direction) != 2:
            raise ValueError(f"task field 'direction' must have 2 entries, got "
                             f"{len(self.direction)}")
        norm = math.hypot(*self.direction)
        if not abs(norm - 1.0) <= UNIT_TOL:
            raise ValueError(f"task field 'direction' must be a unit vector (norm 1 within "
                             f"{UNIT_TOL}), got norm {norm!r}")


@dataclasses.dataclass(frozen=True)
class AntGoalTask(Task):
    """Attributes:
    goal: target ``(x, y)`` position of the torso, each coordinate in [-3, 3].
    """

    goal: tuple[float, float]

    def validate(self) -> None:
        check_vector_range("goal", self.goal, 2, *GOAL_RANGE)


class AntKernel(RewardTaskKernel):
    """Ant-v5's physics, observation (with contact forces), termination and reset."""

    base_id = "Ant-v5"
    frame_skip = 5
    needs_cfrc_ext = True
    reset_noise_scale = 0.1

    def observation(self, qpos: np.ndarray, qvel: np.ndarray,
                    cfrc_ext: np.ndarray | None) -> np.ndarray:
        """Ant-v5 ``_get_obs``: ``qpos[2:]``, ``qvel``, ``clip(cfrc_ext[1:], -1, 1)`` (105)."""
        if cfrc_ext is None:
            raise ValueError("'cfrc_ext' must be given for Ant observations")
        n = qpos.shape[0]
        forces = np.clip(cfrc_ext[:, 1:], -1.0, 1.0).reshape(n, -1)
        return np.concatenate([qpos[:, 2:], qvel, forces], axis=1)

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """Ant-v5: not healthy = non-finite state or torso z outside [0.2, 1.0]."""
        finite = np.isfinite(qpos).all(axis=1) & np.isfinite(qvel).all(axis=1)
        z = qpos[:, 2]
        healthy = finite & (HEALTHY_Z_RANGE[0] <= z) & (z <= HEALTHY_Z_RANGE[1])
        return ~healthy

    def reset_state(self, rng: np.random.Generator, init_qpos: np.ndarray,
                    init_qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return uniform_normal_reset(rng, init_qpos, init_qvel, self.reset_noise_scale)

    def costs(self, s: StepArrays) -> tuple[np.ndarray, np.ndarray]:
        """[N] control and contact costs."""
        return ctrl_cost(s.action, CTRL_COST_WEIGHT), contact_cost(s.cfrc_ext,
                                                                   CONTACT_COST_WEIGHT)

    def assemble(self, s: StepArrays, task_reward: np.ndarray
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``task_reward + 0.05 - ctrl - contact`` and its components."""
        ctrl, contact = self.costs(s)
        v = xy_velocity(s)
        parts = {"reward_task": task_reward, "reward_survive": np.full_like(ctrl, SURVIVE_REWARD),
                 "reward_ctrl": -ctrl, "reward_contact": -contact,
                 "x_velocity": v[:, 0], "y_velocity": v[:, 1]}
        return task_reward + SURVIVE_REWARD - ctrl - contact, parts


class AntVelKernel(AntKernel):
    """``-|v_x - v*| + 1.0 + 0.05 - ctrl - contact``; params ``[N, 1]``."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.assemble(s, -np.abs(xy_velocity(s)[:, 0] - params[:, 0]) + VEL_BONUS)


class AntDirKernel(AntKernel):
    """``d v_x + 0.05 - ctrl - contact``; params ``[N, 1]``."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.assemble(s, params[:, 0] * xy_velocity(s)[:, 0])


class AntDir2DKernel(AntKernel):
    """``u . v_xy + 0.05 - ctrl - contact``; params ``[N, 2]`` = unit vector u."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.assemble(s, np.sum(params[:, :2] * xy_velocity(s), axis=1))


class AntGoalKernel(AntKernel):
    """``-|x - g_x| - |y - g_y| + 4.0 + 0.05 - ctrl - contact`` (position after the step)."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        dist = np.sum(np.abs(s.qpos_after[:, :2] - params[:, :2]), axis=1)
        return self.assemble(s, -dist + GOAL_BONUS)


def draw_vel(rng: np.random.Generator, n: int) -> list[Task]:
    return [AntVelTask(float(v)) for v in rng.uniform(*VELOCITY_RANGE, size=n)]


def draw_dir(rng: np.random.Generator, n: int) -> list[Task]:
    return [AntDirTask(float(d)) for d in draw_direction(rng, n)]


def draw_dir2d(rng: np.random.Generator, n: int) -> list[Task]:
    """Angles ``U[0, 2 pi)`` mapped to unit vectors."""
    angles = rng.uniform(0.0, 2.0 * np.pi, size=n)
    return [AntDir2DTask((float(np.cos(a)), float(np.sin(a)))) for a in angles]


def draw_goal(rng: np.random.Generator, n: int) -> list[Task]:
    goals = rng.uniform(*GOAL_RANGE, size=(n, 2))
    return [AntGoalTask((float(g[0]), float(g[1]))) for g in goals]


class AntVelEnv(MujocoTaskEnv):
    """Ant running at a target velocity ``v* ~ U[0, 3]`` (Finn et al., 2017)."""

    name = "AntVel"
    kernel = AntVelKernel()
    task_type = AntVelTask
    default_task = AntVelTask(1.0)
    draw = staticmethod(draw_vel)


class AntDirEnv(MujocoTaskEnv):
    """Ant running along +x or -x (Finn et al., 2017). Both splits are the same two tasks."""

    name = "AntDir"
    kernel = AntDirKernel()
    task_type = AntDirTask
    default_task = AntDirTask(1.0)
    draw = staticmethod(draw_dir)
    discrete = True


class AntDir2DEnv(MujocoTaskEnv):
    """Ant running along a unit vector at an angle ``U[0, 2 pi)``."""

    name = "AntDir2D"
    kernel = AntDir2DKernel()
    task_type = AntDir2DTask
    default_task = AntDir2DTask((1.0, 0.0))
    draw = staticmethod(draw_dir2d)


class AntGoalEnv(MujocoTaskEnv):
    """Ant reaching a goal ``~ U[-3, 3]^2`` (L1 distance reward, as pytorch-maml-rl)."""

    name = "AntGoal"
    kernel = AntGoalKernel()
    task_type = AntGoalTask
    default_task = AntGoalTask((0.0, 0.0))
    draw = staticmethod(draw_goal)
