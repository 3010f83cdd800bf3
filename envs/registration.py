"""The registry of task distributions and their Gymnasium ids ``metarl/<Name>-v0``.

Each id is registered with ``max_episode_steps`` = the paper horizon (``HORIZONS[name]
["paper"]``). The fast variant is chosen at make time, as Gymnasium allows for any id::

    gymnasium.make("metarl/HalfCheetahVel-v0")                          # 200 steps (paper)
    gymnasium.make("metarl/HalfCheetahVel-v0", max_episode_steps=100)   # 100 steps (fast)
    gymnasium.make("metarl/HalfCheetahVel-v0",
                   max_episode_steps=HORIZONS["HalfCheetahVel"]["fast"])

Importing ``metarl.envs`` imports this module and registers every id. ``DISTRIBUTIONS``,
``PRESET_NAMES`` and ``HORIZONS`` are the one definition of the distribution names, the preset
names and the episode lengths; everything else imports them from here.
"""

from __future__ import annotations

import importlib

import gymnasium

from . import navigation
from .core import Kernel, Task

# The hyper-parameter presets: "paper" (Finn et al., 2017) and "fast" (shorter runs).
PRESET_NAMES: tuple[str, ...] = ("paper", "fast")

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

# Episode length per preset (PRESET_NAMES order): the MuJoCo tasks run 200 steps as in the
# papers and 100 in the fast preset; Navigation2D runs its own horizon in both.
_MUJOCO_HORIZONS = (200, 100)
HORIZONS: dict[str, dict[str, int]] = {
    name: dict(zip(PRESET_NAMES, (navigation.HORIZON,) * len(PRESET_NAMES)
                   if name == navigation.NAME else _MUJOCO_HORIZONS, strict=True))
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
    if name == navigation.NAME:
        raise ValueError("'name' must be a MuJoCo distribution (Navigation2D has no kernel; "
                         f"use navigation.Navigation2DVec), one of "
                         f"{tuple(n for n in DISTRIBUTIONS if n != navigation.NAME)}")
    kernel: Kernel = env_class(name).kernel  # type: ignore[attr-defined]
    return kernel


def gym_id(name: str) -> str:
    """``metarl/<name>-v0`` for the suite's distributions, else ``name`` itself (any other
    Gymnasium id)."""
    return f"metarl/{name}-v0" if name in _ENTRIES else name


def register_all() -> None:
    """Register ``metarl/<Name>-v0`` for every distribution (idempotent)."""
    for name, (module, cls, _) in _ENTRIES.items():
        env_id = gym_id(name)
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point=f"metarl.envs.{module}:{cls}",
                           max_episode_steps=HORIZONS[name]["paper"])


register_all()
TASK_TYPES: dict[str, type[Task]] = {name: _attr(name, 2) for name in DISTRIBUTIONS}
