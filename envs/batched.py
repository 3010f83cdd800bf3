"""Dispatch: ``make_batched(name, num_envs)`` picks the batched env of a distribution.

Every batched env satisfies :class:`~metarl.envs.interface.BatchedTaskEnv` (a ``Protocol``):

* the MuJoCo distributions run on the engine, :class:`~metarl.envs.engine.MujocoBatchedEnv`
  (physics back-ends in :mod:`metarl.envs.physics`);
* ``"Navigation2D"`` on its NumPy vector env, :class:`~metarl.envs.navigation.Navigation2DVec`;
* Meta-World benchmark names on :class:`~metarl.envs.metaworld.MetaWorldVecEnv`;
* any other Gymnasium id on :class:`~metarl.envs.gym_vector.GymVectorTaskEnv`.

The names those modules define are importable from here as well, as they were when this
module held all of them.
"""

from __future__ import annotations

import gymnasium

from . import metaworld  # imports without the metaworld package
from .core import check_positive
from .engine import MujocoBatchedEnv, env_rngs
from .gym_vector import (
    VECTORIZATION_MODES,
    EnvFn,
    GymVectorTaskEnv,
    check_vectorization_mode,
    set_vector_tasks,
)
from .interface import BatchedTaskEnv, StepResult, TaskVectorEnv
from .navigation import NAME as NAVIGATION
from .navigation import Navigation2DVec
from .physics import (
    PHYSICS_BACKENDS,
    BatchPhysics,
    DataPhysics,
    WarpPhysics,
    default_num_threads,
    has_mujoco_batch,
    has_mujoco_warp,
    physics_backend,
)
from .registration import DISTRIBUTIONS, HORIZONS, PRESET_NAMES, get_kernel, gym_id

__all__ = [
    "PHYSICS_BACKENDS", "VECTORIZATION_MODES", "BatchPhysics", "BatchedTaskEnv",
    "DataPhysics", "EnvFn", "GymVectorTaskEnv", "MujocoBatchedEnv", "StepResult",
    "TaskVectorEnv", "WarpPhysics", "check_positive", "default_num_threads", "env_rngs",
    "gym_id", "has_mujoco_batch", "has_mujoco_warp", "make_batched", "physics_backend",
    "resolve_horizon", "set_vector_tasks",
]


def resolve_horizon(name: str, horizon: int | None, preset: str) -> int | None:
    """``horizon`` if given, else ``HORIZONS[name][preset]`` (None for names it lacks)."""
    if preset not in PRESET_NAMES:
        raise ValueError(f"'preset' must be one of {PRESET_NAMES}, got {preset!r}")
    if horizon is not None:
        return check_positive("horizon", horizon)
    return HORIZONS[name][preset] if name in HORIZONS else None


def make_batched(name: str, num_envs: int, *, horizon: int | None = None, preset: str = "paper",
                 seed: int | None = None, num_threads: int | None = None,
                 vectorization_mode: str = "sync", physics: str = "auto") -> BatchedTaskEnv:
    """N environments of distribution ``name``, one task each, as one :class:`BatchedTaskEnv`.

    MuJoCo distributions run on the batched engine (:class:`MujocoBatchedEnv`),
    ``"Navigation2D"`` on its NumPy vector env (``Navigation2DVec``), a Meta-World benchmark
    name (``"ML1-reach-v3"``, ``"ML10"``, ``"ML45"``) on ``MetaWorldVecEnv``, and any other
    Gymnasium id on :class:`GymVectorTaskEnv` over Gymnasium's Sync/AsyncVectorEnv
    (``vectorization_mode``); all four expose the same interface.

    Args:
        name: a distribution of ``metarl.envs.registration.DISTRIBUTIONS`` or a Gymnasium id.
        num_envs: number of environments (e.g. tasks x episodes per task), >= 1.
        horizon: episode length; default ``HORIZONS[name][preset]`` (or the env's TimeLimit).
        preset: ``"paper"`` or ``"fast"``.
        seed: env ``i`` resets like the single env seeded ``seed + i``.
        num_threads: physics threads of the MuJoCo engine (default: every core available).
        vectorization_mode: ``"sync"`` or ``"async"``, for Meta-World and the Gymnasium
            fallback.
        physics: the MuJoCo engine's back-end, ``"auto"``, ``"batch"``, ``"data"`` or
            ``"warp"`` (MuJoCo Warp, the optional extra ``warp``).
    """
    num_envs = check_positive("num_envs", num_envs)
    if num_threads is not None:
        check_positive("num_threads", num_threads)
    check_vectorization_mode(vectorization_mode)
    steps = resolve_horizon(name, horizon, preset)
    if name == NAVIGATION:
        return Navigation2DVec(num_envs, horizon=steps, seed=seed)
    if name in DISTRIBUTIONS and steps is not None:
        return MujocoBatchedEnv(get_kernel(name), gymnasium.make(gym_id(name)), num_envs,
                                horizon=steps, seed=seed, num_threads=num_threads,
                                physics=physics)
    if _is_metaworld_name(name):
        return metaworld.make_metaworld(name, num_envs, horizon=steps or metaworld.HORIZON,
                                        seed=seed, vectorization_mode=vectorization_mode)
    return _fallback(name, num_envs, steps, vectorization_mode, seed)


def _is_metaworld_name(name: str) -> bool:
    """Whether ``name`` is a Meta-World benchmark name (``"ML1-reach-v3"``, ``"ML10"``, ...)."""
    if name in gymnasium.registry:
        return False
    try:
        metaworld.parse_name(name)
    except ValueError:
        return False
    return True


def _fallback(name: str, num_envs: int, horizon: int | None, mode: str,
              seed: int | None) -> GymVectorTaskEnv:
    env_id = gym_id(name)
    if env_id not in gymnasium.registry:
        raise ValueError(f"'name' must be a metarl distribution, a registered Gymnasium id or a "
                         f"Meta-World benchmark name ('ML1-<class>', 'ML10', 'ML45'), got {name!r}")
    steps = horizon if horizon is not None else gymnasium.spec(env_id).max_episode_steps
    if steps is None:
        raise ValueError(f"'horizon' must be given for {name!r}: its Gymnasium spec has no "
                         "max_episode_steps")
    fns = [EnvFn(env_id, int(steps)) for _ in range(num_envs)]
    return GymVectorTaskEnv(fns, horizon=int(steps), mode=mode, seed=seed)


# ---- every batched env satisfies BatchedTaskEnv: mypy checks these returns ----------------


def _engine_is_batched(env: MujocoBatchedEnv) -> BatchedTaskEnv:
    return env


def _navigation_is_batched(env: Navigation2DVec) -> BatchedTaskEnv:
    return env


def _gym_fallback_is_batched(env: GymVectorTaskEnv) -> BatchedTaskEnv:
    return env


def _metaworld_is_batched(env: metaworld.MetaWorldVecEnv) -> BatchedTaskEnv:
    return env
