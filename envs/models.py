"""Gymnasium's MuJoCo base envs, each model source compiled at most once per process.

Gymnasium's ``MujocoEnv`` compiles its XML every time an env is built. On MuJoCo >= 4 the
HalfCheetah XML (``<compiler ... settotalmass="14"/>``) makes every compile print a deprecation
warning to stderr and ``MUJOCO_LOG.TXT``: one line per env, 800 for a benchmark of 800 envs.
:func:`make_base_env` builds the base env through a subclass whose ``_initialize_simulation``
compiles a source once and gives every later env its own copy of that ``MjModel``
(``mj_copyModel``, so each env still owns its model, and the copy equals a fresh compile bit
for bit). The single task envs and the batched engine both build their base envs here.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from typing import Any

import gymnasium
import mujoco
from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
from gymnasium.envs.registration import load_env_creator

# (model path, offscreen width, offscreen height): everything Gymnasium's
# _initialize_simulation reads -> the model it compiled, kept unmodified.
_MODELS: dict[tuple[str, int, int], mujoco.MjModel] = {}


class _CompileOnce:
    """Mixin before a ``MujocoEnv`` class: the first env of a model source compiles it as
    Gymnasium does; every later one gets a copy of that compiled model."""

    fullpath: str
    width: int
    height: int

    def _initialize_simulation(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        key = (self.fullpath, self.width, self.height)
        if key in _MODELS:
            model = copy.copy(_MODELS[key])  # MjModel's copy is mj_copyModel: a deep copy
            return model, mujoco.MjData(model)
        model, data = super()._initialize_simulation()  # type: ignore[misc]
        _MODELS[key] = copy.copy(model)  # envs change their own model in place (rand params)
        return model, data


@functools.cache
def _compiling_once(cls: Any) -> Any:
    """``cls`` (a ``MujocoEnv`` class) with :class:`_CompileOnce` in front (one subclass per
    class, so every env of it shares the model cache)."""
    return type(cls.__name__, (_CompileOnce, cls), {})


def make_base_env(base_id: str, **kwargs: Any) -> Any:
    """``gymnasium.make(base_id, **kwargs).unwrapped``, its model compiled at most once per
    process when ``base_id`` is a Gymnasium ``MujocoEnv`` (any other env is made as is)."""
    spec = gymnasium.spec(base_id)
    creator: Any = spec.entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    is_mujoco = isinstance(creator, type) and issubclass(creator, MujocoEnv)
    if is_mujoco:
        spec = dataclasses.replace(spec, entry_point=_compiling_once(creator))
    return gymnasium.make(spec, **kwargs).unwrapped
