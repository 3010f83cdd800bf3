"""The physics back-ends of the MuJoCo engine: N simulations stepped in C threads.

Both back-ends expose ``qpos`` / ``qvel`` (and ``cfrc_ext``) as ``[N, ...]`` arrays that the
distribution's kernel reads, reset given environments to given states, and step all N with the
GIL released:

* :class:`BatchPhysics`: ``mujoco.batch.Batch`` (MuJoCo >= 4.0, one state row per environment,
  bit-identical to a loop over ``MjData``), for kernels that only read the state;
* :class:`DataPhysics`: one ``MjData`` per environment stepped on a thread pool (``mj_step``
  then ``mj_rnePostConstraint``, exactly Gymnasium's ``do_simulation``), for kernels that read
  ``cfrc_ext`` (Ant) and on MuJoCo 3.x;
* :class:`WarpPhysics`: MuJoCo Warp (``mujoco_warp``, the optional extra ``warp``), every world
  stepped by Warp kernels on Warp's default device (CUDA when there is one, else its CPU
  device), in float32, for kernels that only read the state and share one model.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import mujoco
import numpy as np

# MuJoCo's instability warnings: on each of these it resets the simulation (mj_resetData).
_BAD_WARNINGS = np.array([int(mujoco.mjtWarning.mjWARN_BADQPOS),
                          int(mujoco.mjtWarning.mjWARN_BADQVEL),
                          int(mujoco.mjtWarning.mjWARN_BADQACC),
                          int(mujoco.mjtWarning.mjWARN_BADCTRL)])
_STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
PHYSICS_BACKENDS = ("auto", "batch", "data", "warp")


def has_mujoco_batch() -> bool:
    """Whether this MuJoCo has ``mujoco.batch`` (4.0 and newer; Meta-World pins 3.3)."""
    try:
        from mujoco import batch  # noqa: F401
    except ImportError:
        return False
    return True


def has_mujoco_warp() -> bool:
    """Whether MuJoCo Warp (``mujoco_warp`` and ``warp``, the optional extra ``warp``) is here."""
    return all(importlib.util.find_spec(m) is not None for m in ("mujoco_warp", "warp"))


def physics_backend(name: str, needs_cfrc_ext: bool) -> type[Physics]:
    """The physics class of ``name`` (one of ``PHYSICS_BACKENDS``).

    ``auto`` takes ``mujoco.batch`` (:class:`BatchPhysics`) when the kernel does not read
    ``cfrc_ext`` and this MuJoCo has it, else one ``MjData`` per env (:class:`DataPhysics`),
    which runs on any MuJoCo >= 3.2. ``warp`` (:class:`WarpPhysics`) is only ever taken when
    asked for.
    """
    if name not in PHYSICS_BACKENDS:
        raise ValueError(f"'physics' must be one of {PHYSICS_BACKENDS}, got {name!r}")
    if name == "warp":
        if needs_cfrc_ext:
            raise ValueError("'physics' cannot be 'warp': this kernel reads cfrc_ext, which the "
                             "Warp back-end does not give; use 'auto' or 'data'")
        if not has_mujoco_warp():
            raise ValueError("'physics' cannot be 'warp': mujoco_warp is not installed "
                             "(pip install 'metarl[warp]'); use 'auto'")
        return WarpPhysics
    batch_ok = not needs_cfrc_ext and has_mujoco_batch()
    if name == "batch" and not batch_ok:
        why = "this kernel reads cfrc_ext" if needs_cfrc_ext else "this MuJoCo has no mujoco.batch"
        raise ValueError(f"'physics' cannot be 'batch': {why}; use 'auto' or 'data'")
    return BatchPhysics if batch_ok and name != "data" else DataPhysics


def default_num_threads() -> int:
    """The CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class BatchPhysics:
    """``mujoco.batch.Batch``: state rows stepped on C threads (GIL released).

    Bit-identical to stepping one ``MjData`` per environment, warm start included, since the
    rows hold ``mjSTATE_INTEGRATION``. Used for kernels that do not read ``cfrc_ext``.
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int) -> None:
        from mujoco import batch as mj_batch  # MuJoCo >= 4.0 (the Meta-World venv pins 3.3)

        self._error = mj_batch.SimulationError
        self.batch = mj_batch.Batch(model, num_envs, nthread=num_threads)
        self.qpos = self.batch.bind("qpos")
        self.qvel = self.batch.bind("qvel")
        self.ctrl = self.batch.bind("ctrl")
        self.cfrc_ext: np.ndarray | None = None
        self.batch.reset(stage=_STAGE_NONE)

    def set_models(self, models: Sequence[mujoco.MjModel] | None) -> None:
        self.batch.set_models(models)

    def reset(self, ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """``mj_resetData`` then the given state, as Gymnasium's ``reset``; its ``mj_forward``
        is skipped: the next ``mj_step`` recomputes everything it would have computed."""
        self.batch.reset(ids, stage=_STAGE_NONE)
        self.qpos[ids] = qpos
        self.qvel[ids] = qvel

    def bad_warnings(self) -> np.ndarray:
        return self.batch.warning[:, _BAD_WARNINGS, 1].sum(axis=1)  # (lastinfo, number)

    def step(self, actions: np.ndarray, nstep: int) -> np.ndarray:
        """Apply ``actions`` for ``nstep`` physics steps; return the [N] unstable mask."""
        before = self.bad_warnings()
        self.ctrl[:] = actions
        failed = np.zeros(len(actions), dtype=bool)
        try:
            self.batch.step(nstep=nstep)
        except self._error as err:  # a mju_error in some simulations only
            failed[err.ids] = True
        return failed | (self.bad_warnings() > before)

    def close(self) -> None:
        """Nothing to release: the batch's threads end with it."""


class DataPhysics:
    """One ``MjData`` per environment, stepped on a thread pool (MuJoCo releases the GIL).

    Each step is Gymnasium's ``do_simulation``: ``mj_step(nstep)`` then ``mj_rnePostConstraint``,
    so ``cfrc_ext`` equals the single env's (the in-step value a force sensor would trigger
    differs from it when contacts are active, so a sensor is no shortcut). The per-env loop
    holds the GIL between MuJoCo calls, so it touches only cached views of each ``MjData``.
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int) -> None:
        self.base_model = model
        self.models = [model] * num_envs
        self.datas = [mujoco.MjData(model) for _ in range(num_envs)]
        self._views = [(d.ctrl, d.qpos, d.qvel, d.cfrc_ext, d.warning.number[_BAD_WARNINGS[0]:
                        _BAD_WARNINGS[-1] + 1]) for d in self.datas]
        self.qpos = np.zeros((num_envs, model.nq))
        self.qvel = np.zeros((num_envs, model.nv))
        self.cfrc_ext: np.ndarray | None = np.zeros((num_envs, model.nbody, 6))
        self._cfrc = self.cfrc_ext
        self._bad = np.zeros(num_envs, dtype=bool)
        bounds = np.linspace(0, num_envs, min(num_threads, num_envs) + 1).astype(int)
        pairs = zip(bounds[:-1], bounds[1:], strict=True)
        self._chunks = [range(lo, hi) for lo, hi in pairs if hi > lo]
        self._pool = ThreadPoolExecutor(len(self._chunks)) if len(self._chunks) > 1 else None

    def set_models(self, models: Sequence[mujoco.MjModel] | None) -> None:
        n = len(self.datas)
        self.models = [self.base_model] * n if models is None else list(models)

    def reset(self, ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """Gymnasium's reset: ``mj_resetData``, set the state, ``mj_forward``."""
        for k, i in enumerate(ids):
            m, d = self.models[i], self.datas[i]
            mujoco.mj_resetData(m, d)
            d.qpos[:] = qpos[k]
            d.qvel[:] = qvel[k]
            mujoco.mj_forward(m, d)
            self._read(i)

    def _read(self, i: int) -> None:
        _, qpos, qvel, cfrc, _ = self._views[i]
        self.qpos[i] = qpos
        self.qvel[i] = qvel
        self._cfrc[i] = cfrc

    def _step_chunk(self, chunk: range, actions: np.ndarray, nstep: int) -> None:
        step, rne, models, datas = mujoco.mj_step, mujoco.mj_rnePostConstraint, self.models, \
            self.datas
        for i in chunk:
            ctrl, qpos, qvel, cfrc, warnings = self._views[i]
            ctrl[:] = actions[i]
            step(models[i], datas[i], nstep=nstep)
            rne(models[i], datas[i])
            self.qpos[i] = qpos
            self.qvel[i] = qvel
            self._cfrc[i] = cfrc
            if warnings.any():  # MuJoCo found a bad qpos/qvel/qacc/ctrl and reset the data
                self._bad[i] = True
                warnings[:] = 0

    def step(self, actions: np.ndarray, nstep: int) -> np.ndarray:
        """Apply ``actions`` for ``nstep`` physics steps; return the [N] unstable mask."""
        self._bad[:] = False
        if self._pool is None:
            for chunk in self._chunks:
                self._step_chunk(chunk, actions, nstep)
        else:
            jobs = [self._pool.submit(self._step_chunk, c, actions, nstep) for c in self._chunks]
            for job in jobs:
                job.result()
        return self._bad.copy()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class WarpPhysics:
    """MuJoCo Warp: all N worlds stepped by Warp kernels on one device, in float32.

    ``qpos`` / ``qvel`` are float64 host copies read back after every env step (a host round
    trip per step: the kernels' rewards and the policy run on the host, as for the C
    back-ends). One model for every world: per-task models (randomised-physics distributions)
    raise ``ValueError``. Instability is a non-finite ``qpos`` or ``qvel`` (Warp keeps no
    MuJoCo warning counters). Equal to the C engine within float32 tolerance over short
    horizons (tests/envs/test_warp.py); ``num_threads`` is unused (Warp picks its own).
    """

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int) -> None:
        import mujoco_warp as mjw  # the optional extra ``warp``
        import warp as wp

        self._wp, self._mjw = wp, mjw
        self.device = wp.get_device()
        with wp.ScopedDevice(self.device):
            self._m = mjw.put_model(model)
            self._d = mjw.make_data(model, nworld=num_envs)
        self.qpos = np.zeros((num_envs, model.nq))
        self.qvel = np.zeros((num_envs, model.nv))
        self.cfrc_ext: np.ndarray | None = None
        self._read()

    def set_models(self, models: Sequence[mujoco.MjModel] | None) -> None:
        if models is not None:
            raise ValueError("'physics' cannot be 'warp' for randomised-physics tasks: the Warp "
                             "back-end steps one shared model; use 'auto' or 'data'")

    def _read(self) -> None:
        self.qpos[:] = self._d.qpos.numpy()
        self.qvel[:] = self._d.qvel.numpy()

    def reset(self, ids: np.ndarray, qpos: np.ndarray, qvel: np.ndarray) -> None:
        """``mjw.reset_data`` of the worlds ``ids`` (defaults, zero warm start), then the state."""
        wp = self._wp
        mask = np.zeros(len(self.qpos), dtype=bool)
        mask[ids] = True
        with wp.ScopedDevice(self.device):
            self._mjw.reset_data(self._m, self._d, reset=wp.array(mask, dtype=bool))
        self._read()
        self.qpos[ids] = qpos
        self.qvel[ids] = qvel
        self._d.qpos.assign(self.qpos.astype(np.float32))
        self._d.qvel.assign(self.qvel.astype(np.float32))

    def step(self, actions: np.ndarray, nstep: int) -> np.ndarray:
        """Apply ``actions`` for ``nstep`` physics steps; return the [N] unstable mask."""
        self._d.ctrl.assign(np.asarray(actions, dtype=np.float32))
        with self._wp.ScopedDevice(self.device):
            for _ in range(nstep):
                self._mjw.step(self._m, self._d)
        self._read()
        finite = np.isfinite(self.qpos).all(axis=1) & np.isfinite(self.qvel).all(axis=1)
        return np.asarray(~finite)

    def close(self) -> None:
        """Nothing to release: the device arrays go with the object."""


Physics = BatchPhysics | DataPhysics | WarpPhysics
