"""The registry of task distributions and their Gymnasium ids ``metarl/<Name>-v0``.

Each id is registered with ``max_episode_steps`` = the paper horizon (``HORIZONS[name]
["paper"]``). The fast variant is chosen at make time, as Gymnasium allows for any id::

    gymnasium.make("metarl/HalfCheetahVel-v0")                          # 200 steps (paper)
    gymnasium.make("metarl/HalfCheetahVel-v0", max_episode_steps=100)   # 100 steps (fast)
    gymnasium.make("metarl/HalfCheetahVel-v0",
                   max_episode_steps=HORIZONS["HalfCheetahVel"]["fast"])

Importing ``metarl.envs`` imports this module and registers every id.
"""

from __future__ import annotations

import importlib

import gymnasium

from .core import Kernel, Task

# name -> (module, env class, task class)
_ENTRIES: dict[str, tuple[str, str, str]] = {
    "HalfCheetahVel": ("halfcheetah", "HalfCheetahVelEnv", "HalfCheetahVelTask"),
    "HalfCheetahDir": ("halfcheetah", "HalfCheetahDirEnv", "HalfCheetahDirTask"),
    "AntVel": ("ant", "AntVelEnv", "AntVelTask"),
    "AntDir": ("ant", "AntDirEnv", "AntDirTask"),
    "AntDir2D": ("ant", "AntDir2DEnv", "AntDir2DTask"),
    "AntGoal": ("ant", "AntGoalEnv", "AntGoalTask"),
    "Navigation2D": ("navigation", "Navigation2DEnv", "Navigation2DTask"),
    "HopperRandParams": ("rand_params", "HopperRandParamsEnv", "HopperRandParamsTask"),
    "Walker2DRandParams": ("rand_params", "Walker2DRandParamsEnv", "Walker2DRandParamsTask"),
}

DISTRIBUTIONS: tuple[str, ...] = tuple(_ENTRIES)

HORIZONS: dict[str, dict[str, int]] = {
    name: ({"paper": 100, "fast": 100} if name == "Navigation2D"
           else {"paper": 200, "fast": 100})
    for name in DISTRIBUTIONS
}


def _attr(name: str, index: int) -> type:
    check_name(name)
    module = importlib.import_module(f"metarl.envs.{_ENTRIES[name][0]}")
    cls: type = getattr(module, _ENTRIES[name][index])
    return cls


def check_name(name: str) -> None:
    if name not in _ENTRIES:
        raise ValueError(f"'name' must be one of {DISTRIBUTIONS}, got {name!r}")


def env_class(name: str) -> type:
    """The single-env class of distribution ``name``."""
    return _attr(name, 1)


def get_kernel(name: str) -> Kernel:
    """The batched kernel of MuJoCo distribution ``name`` (``ValueError`` if unknown or
    Navigation2D, which has no MuJoCo kernel: use ``Navigation2DVec``)."""
    if name == "Navigation2D":
        raise ValueError("'name' must be a MuJoCo distribution (Navigation2D has no kernel; "
                         f"use navigation.Navigation2DVec), one of "
                         f"{tuple(n for n in DISTRIBUTIONS if n != 'Navigation2D')}")
    kernel: Kernel = env_class(name).kernel  # type: ignore[attr-defined]
    return kernel


def gym_id(name: str) -> str:
    check_name(name)
    return f"metarl/{name}-v0"


def _task_types() -> dict[str, type[Task]]:
    return {name: _attr(name, 2) for name in DISTRIBUTIONS}


TASK_TYPES: dict[str, type[Task]] = {}


def register_all() -> None:
    """Register ``metarl/<Name>-v0`` for every distribution (idempotent)."""
    for name, (module, cls, _) in _ENTRIES.items():
        env_id = f"metarl/{name}-v0"
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point=f"metarl.envs.{module}:{cls}",
                           max_episode_steps=HORIZONS[name]["paper"])


register_all()
TASK_TYPES.update(_task_types())
