"""metarl task distributions over Gymnasium/MuJoCo (numpy, gymnasium and mujoco only).

Importing this package registers every ``metarl/<Name>-v0`` id (see :mod:`.registration`).
"""

from __future__ import annotations

from . import registration
from .registration import DISTRIBUTIONS, HORIZONS, PRESET_NAMES, TASK_TYPES, get_kernel

__all__ = ["DISTRIBUTIONS", "HORIZONS", "PRESET_NAMES", "TASK_TYPES", "get_kernel",
           "registration"]
