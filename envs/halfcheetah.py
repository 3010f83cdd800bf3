"""HalfCheetahVel and HalfCheetahDir over Gymnasium's HalfCheetah-v5.

Finn et al., "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML 2017,
Sec. 5.3; constants as pytorch-maml-rl (``half_cheetah.py``): control cost weight 0.05,
target velocity ``v* ~ U[0, 2]``, direction ``d in {-1, +1}``. The forward velocity is
``(qpos_after[0] - qpos_before[0]) / dt`` exactly as HalfCheetah-v5's ``x_velocity``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .core import StepArrays, Task, check_range
from .mujoco_env import (
    MujocoTaskEnv,
    RewardTaskKernel,
    ctrl_cost,
    uniform_normal_reset,
    x_velocity,
)

CTRL_COST_WEIGHT = 0.05
VELOCITY_RANGE = (0.0, 2.0)
DIRECTIONS = (-1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class HalfCheetahVelTask(Task):
    """A target forward velocity.

    Attributes:
        velocity: target ``v*`` of the torso's x velocity (m/s), in [0, 2].
    """

    velocity: float

    def validate(self) -> None:
        check_range("velocity", self.velocity, *VELOCITY_RANGE)


def check_direction(value: float, field: str = "direction") -> None:
    """Raise ``ValueError`` unless ``value`` is -1.0 or +1.0."""
    if value not in DIRECTIONS:
        raise ValueError(f"task field '{field}' must be one of {DIRECTIONS}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class HalfCheetahDirTask(Task):
    """A running direction.

    Attributes:
        direction: +1.0 rewards running forward (+x), -1.0 backward.
    """

    direction: float

    def validate(self) -> None:
        check_direction(self.direction)


class CheetahKernel(RewardTaskKernel):
    """The shared part of both HalfCheetah kernels: HalfCheetah-v5's physics, obs and reset."""

    base_id = "HalfCheetah-v5"
    frame_skip = 5
    needs_cfrc_ext = False
    reset_noise_scale = 0.1

    def observation(self, qpos: np.ndarray, qvel: np.ndarray,
                    cfrc_ext: np.ndarray | None) -> np.ndarray:
        """HalfCheetah-v5 ``_get_obs``: ``qpos[1:]`` then ``qvel`` (17 dims)."""
        return np.concatenate([qpos[:, 1:], qvel], axis=1)

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        """HalfCheetah never terminates."""
        return np.zeros(qpos.shape[0], dtype=bool)

    def reset_state(self, rng: np.random.Generator, init_qpos: np.ndarray,
                    init_qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return uniform_normal_reset(rng, init_qpos, init_qvel, self.reset_noise_scale)


class HalfCheetahVelKernel(CheetahKernel):
    """``r = -|v_x - v*| - 0.05 sum(a^2)``; params ``[N, 1]`` = target velocity."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        v = x_velocity(s)
        forward = -np.abs(v - params[:, 0])
        ctrl = ctrl_cost(s.action, CTRL_COST_WEIGHT)
        return forward - ctrl, {"reward_forward": forward, "reward_ctrl": -ctrl, "x_velocity": v}


class HalfCheetahDirKernel(CheetahKernel):
    """``r = d v_x - 0.05 sum(a^2)``; params ``[N, 1]`` = direction."""

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        v = x_velocity(s)
        forward = params[:, 0] * v
        ctrl = ctrl_cost(s.action, CTRL_COST_WEIGHT)
        return forward - ctrl, {"reward_forward": forward, "reward_ctrl": -ctrl, "x_velocity": v}


def draw_velocity_tasks(rng: np.random.Generator, n: int) -> list[Task]:
    return [HalfCheetahVelTask(float(v)) for v in rng.uniform(*VELOCITY_RANGE, size=n)]


def draw_direction(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` directions, each -1.0 or +1.0 with probability 1/2."""
    return np.where(rng.integers(0, 2, size=n) == 1, 1.0, -1.0)


def draw_direction_tasks(rng: np.random.Generator, n: int) -> list[Task]:
    return [HalfCheetahDirTask(float(d)) for d in draw_direction(rng, n)]


class HalfCheetahVelEnv(MujocoTaskEnv):
    """HalfCheetah running at a target velocity ``v* ~ U[0, 2]`` (Finn et al., 2017)."""

    name = "HalfCheetahVel"
    kernel = HalfCheetahVelKernel()
    task_type = HalfCheetahVelTask
    default_task = HalfCheetahVelTask(1.0)
    draw = staticmethod(draw_velocity_tasks)


class HalfCheetahDirEnv(MujocoTaskEnv):
    """HalfCheetah running forward or backward (Finn et al., 2017). Both splits are the
    same two tasks {-1, +1}: the distribution has no held-out task."""

    name = "HalfCheetahDir"
    kernel = HalfCheetahDirKernel()
    task_type = HalfCheetahDirTask
    default_task = HalfCheetahDirTask(1.0)
    draw = staticmethod(draw_direction_tasks)
    discrete = True
