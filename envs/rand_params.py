"""HopperRandParams and Walker2DRandParams: randomised physics over Hopper-v5 / Walker2d-v5.

Rakelly et al., "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic Context
Variables" (PEARL), ICML 2019, after ``rand_param_envs`` (``base.py``): every entry of
``body_mass``, ``body_inertia`` and ``geom_friction`` is multiplied by its own factor
``1.5 ** U[-3, 3]``, every entry of ``dof_damping`` by ``1.3 ** U[-3, 3]`` (the base
``rand_param_envs`` uses for damping). Reward, termination, observation and reset noise are
the base v5 env's:
``r = 1.0 * healthy + v_x - 1e-3 sum(a^2)``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from .core import StepArrays, Task
from .mujoco_env import PHYSICS_FIELDS as FIELDS  # the fields a task scales, in draw order
from .mujoco_env import (
    MujocoTaskEnv,
    ctrl_cost,
    uniform_uniform_reset,
    x_velocity,
)

# Each field's factor is LOG_SCALE_BASE[field] ** U[-3, 3], as rand_param_envs draws it.
LOG_SCALE_BASE = {"body_mass": 1.5, "body_inertia": 1.5, "dof_damping": 1.3,
                  "geom_friction": 1.5}
LOG_SCALE_RANGE = (-3.0, 3.0)
HEALTHY_REWARD = 1.0
CTRL_COST_WEIGHT = 1e-3
RESET_NOISE_SCALE = 5e-3


def scale_range(field: str) -> tuple[float, float]:
    """The factors ``field`` can take: ``[base ** -3, base ** 3]``."""
    base = LOG_SCALE_BASE[field]
    return base ** LOG_SCALE_RANGE[0], base ** LOG_SCALE_RANGE[1]


@dataclasses.dataclass(frozen=True)
class RandParamsTask(Task):
    """Element-wise physics scale factors, each in ``[b^-3, b^3]`` (``b`` = 1.3 for damping,
    1.5 otherwise); ``sizes`` (a class attribute of each subclass) gives the number of entries
    of every field.

    Attributes:
        body_mass: factors of ``model.body_mass`` (``nbody`` entries).
        body_inertia: factors of ``model.body_inertia`` flattened (``nbody * 3``).
        dof_damping: factors of ``model.dof_damping`` (``nv``), base 1.3.
        geom_friction: factors of ``model.geom_friction`` flattened (``ngeom * 3``).
    """

    body_mass: tuple[float, ...]
    body_inertia: tuple[float, ...]
    dof_damping: tuple[float, ...]
    geom_friction: tuple[float, ...]
    sizes: ClassVar[dict[str, int]] = {}

    def validate(self) -> None:
        if not self.sizes:
            raise ValueError("'task' must be a HopperRandParamsTask or Walker2DRandParamsTask, "
                             "not the RandParamsTask base")
        for field in FIELDS:
            values = np.asarray(getattr(self, field), dtype=np.float64)
            if values.shape != (self.sizes[field],):
                raise ValueError(f"task field '{field}' must have {self.sizes[field]} entries, "
                                 f"got shape {values.shape}")
            low, high = scale_range(field)
            if not (np.isfinite(values).all() and (values >= low).all()
                    and (values <= high).all()):
                base = LOG_SCALE_BASE[field]
                raise ValueError(f"task field '{field}' must hold finite factors in "
                                 f"[{low}, {high}] ({base}**-3, {base}**3), got {values.tolist()}")


@dataclasses.dataclass(frozen=True)
class HopperRandParamsTask(RandParamsTask):
    """Hopper-v5 scale factors (5 bodies, 6 dofs, 5 geoms)."""

    sizes: ClassVar[dict[str, int]] = {"body_mass": 5, "body_inertia": 15, "dof_damping": 6,
                                       "geom_friction": 15}


@dataclasses.dataclass(frozen=True)
class Walker2DRandParamsTask(RandParamsTask):
    """Walker2d-v5 scale factors (8 bodies, 9 dofs, 8 geoms)."""

    sizes: ClassVar[dict[str, int]] = {"body_mass": 8, "body_inertia": 24, "dof_damping": 9,
                                       "geom_friction": 24}


def identity_task(cls: type[RandParamsTask]) -> RandParamsTask:
    """The task with every factor 1 (the unmodified base env)."""
    return cls(*(tuple([1.0] * cls.sizes[f]) for f in FIELDS))


def scaled_model(base_model: Any, task: RandParamsTask) -> Any:
    """A copy of ``base_model`` with the four fields multiplied by the task's factors."""
    model = copy.deepcopy(base_model)
    for field in FIELDS:
        base = getattr(base_model, field)
        factors = np.asarray(getattr(task, field)).reshape(base.shape)
        getattr(model, field)[:] = base * factors
    return model


class RandParamsKernel:
    """Hopper/Walker2d-v5: reset noise qpos, qvel + U[-5e-3, 5e-3], reward
    ``healthy + v_x - 1e-3 sum(a^2)``, and a per-task ``MjModel``."""

    base_kwargs: dict[str, Any] = {}
    frame_skip = 4
    needs_cfrc_ext = False
    base_id: str
    healthy_z: tuple[float, float]
    healthy_angle: tuple[float, float]

    def task_params(self, tasks: Sequence[Task]) -> np.ndarray:
        """No reward parameters: the task lives in the physics (``[N, 0]``)."""
        return np.zeros((len(tasks), 0))

    def task_model(self, base_model: Any, task: Task) -> Any:
        if not isinstance(task, RandParamsTask):
            raise ValueError(f"'task' must be a RandParamsTask, got {type(task).__name__}")
        return scaled_model(base_model, task)

    def observation(self, qpos: np.ndarray, qvel: np.ndarray,
                    cfrc_ext: np.ndarray | None) -> np.ndarray:
        """v5 ``_get_obs``: ``qpos[1:]`` then ``clip(qvel, -10, 10)``."""
        return np.concatenate([qpos[:, 1:], np.clip(qvel, -10.0, 10.0)], axis=1)

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        z, angle = qpos[:, 1], qpos[:, 2]
        ok_z = (self.healthy_z[0] < z) & (z < self.healthy_z[1])
        ok_angle = (self.healthy_angle[0] < angle) & (angle < self.healthy_angle[1])
        return ok_z & ok_angle

    def terminated(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        return ~self.healthy(qpos, qvel)

    def reset_state(self, rng: np.random.Generator, init_qpos: np.ndarray,
                    init_qvel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return uniform_uniform_reset(rng, init_qpos, init_qvel, RESET_NOISE_SCALE)

    def reward(self, s: StepArrays, params: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        v = x_velocity(s)
        healthy = HEALTHY_REWARD * self.healthy(s.qpos_after, s.qvel_after)
        ctrl = ctrl_cost(s.action, CTRL_COST_WEIGHT)
        parts = {"reward_forward": v, "reward_ctrl": -ctrl, "reward_survive": healthy,
                 "x_velocity": v}
        return v + healthy - ctrl, parts


class HopperKernel(RandParamsKernel):
    """Hopper-v5: healthy when z > 0.7, |angle| < 0.2 and ``|state[2:]| < 100``."""

    base_id = "Hopper-v5"
    healthy_z = (0.7, float("inf"))
    healthy_angle = (-0.2, 0.2)

    def healthy(self, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
        state = np.concatenate([qpos, qvel], axis=1)[:, 2:]
        ok_state = ((-100.0 < state) & (state < 100.0)).all(axis=1)
        return super().healthy(qpos, qvel) & ok_state


class Walker2DKernel(RandParamsKernel):
    """Walker2d-v5: healthy when 0.8 < z < 2.0 and -1 < angle < 1."""

    base_id = "Walker2d-v5"
    healthy_z = (0.8, 2.0)
    healthy_angle = (-1.0, 1.0)


def draw_factors(rng: np.random.Generator, cls: type[RandParamsTask], n: int) -> list[Task]:
    """``n`` tasks, every factor ``LOG_SCALE_BASE[field] ** U[-3, 3]``, fields drawn in
    ``FIELDS`` order."""
    out: list[Task] = []
    for _ in range(n):
        exps = {f: rng.uniform(*LOG_SCALE_RANGE, size=cls.sizes[f]) for f in FIELDS}
        out.append(cls(*(tuple(float(x) for x in LOG_SCALE_BASE[f] ** exps[f])
                         for f in FIELDS)))
    return out


def draw_hopper(rng: np.random.Generator, n: int) -> list[Task]:
    return draw_factors(rng, HopperRandParamsTask, n)


def draw_walker(rng: np.random.Generator, n: int) -> list[Task]:
    return draw_factors(rng, Walker2DRandParamsTask, n)


class HopperRandParamsEnv(MujocoTaskEnv):
    """Hopper-v5 with randomised mass, inertia, damping and friction (PEARL)."""

    name = "HopperRandParams"
    kernel = HopperKernel()
    task_type = HopperRandParamsTask
    default_task = identity_task(HopperRandParamsTask)
    draw = staticmethod(draw_hopper)


class Walker2DRandParamsEnv(MujocoTaskEnv):
    """Walker2d-v5 with randomised mass, inertia, damping and friction (PEARL)."""

    name = "Walker2DRandParams"
    kernel = Walker2DKernel()
    task_type = Walker2DRandParamsTask
    default_task = identity_task(Walker2DRandParamsTask)
    draw = staticmethod(draw_walker)
