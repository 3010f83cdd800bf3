"""The batched engine: N environments of one task distribution stepped in lock-step.

Meta-RL samples ``tasks x episodes`` environments per iteration (MAML-TRPO on HalfCheetahVel:
40 tasks x 20 episodes = 800 environments, Finn et al., 2017, "Model-Agnostic Meta-Learning for
Fast Adaptation of Deep Networks"). Stepping them one Gymnasium env at a time spends most of
the time in Python, so this engine keeps the whole batch as arrays:

* the physics runs in C threads with the GIL released (:mod:`metarl.envs.physics`):
  ``mujoco.batch.Batch`` (MuJoCo >= 4.0, one state row per environment, bit-identical to a
  loop over ``MjData``) for kernels that only read the state, or one ``MjData`` per environment
  stepped on a thread pool (``mj_step`` then ``mj_rnePostConstraint``, exactly Gymnasium's
  ``do_simulation``) for kernels that read ``cfrc_ext`` (Ant);
* rewards, terminations and observations are one vectorised NumPy call of the distribution's
  :class:`~metarl.envs.core.Kernel` (the same code the single Gymnasium env runs with N = 1);
* finished environments reset inside :meth:`step` (Gymnasium's ``AutoresetMode.SAME_STEP``).

Seeding convention: ``reset(seed=s)`` seeds environment ``i`` exactly as the single env
``gymnasium.make("metarl/<Name>-v0")`` is seeded by ``reset(seed=s + i)``: its reset noise is drawn
from ``gymnasium.utils.seeding.np_random(s + i)``, and later (auto)resets continue that stream as
the single env's later ``reset()`` calls do. Tasks are sampled from the vector env's own
``np_random``, seeded by ``np_random(s)``; so with the same tasks set on both, the same seeds and
the same actions, the batched env and N single envs give equal observations, rewards and flags.

MuJoCo instability (a NaN/Inf/huge ``qpos``, ``qvel``, ``qacc`` or ``ctrl``, on which MuJoCo warns
and resets the simulation, or a non-finite observation or reward) ends that environment's
episode as truncated with ``info["unstable"][i] = True``, reward 0 and the last finite
observation as ``final_obs``; the other environments are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import mujoco
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector.utils import batch_space

from .core import Kernel, StepArrays, Task, check_positive, check_split
from .interface import StepResult, TaskVectorEnv
from .models import make_base_env
from .physics import Physics, default_num_threads, physics_backend


def env_rngs(seed: int | None, num_envs: int) -> list[np.random.Generator]:
    """Per-environment generators: env ``i`` gets ``np_random(seed + i)`` (entropy if None)."""
    if seed is None:
        return [seeding.np_random(None)[0] for _ in range(num_envs)]
    return [seeding.np_random(int(seed) + i)[0] for i in range(num_envs)]


class MujocoBatchedEnv(TaskVectorEnv):
    """N MuJoCo environments of one distribution, one task each, stepped in lock-step.

    Args:
        kernel: the distribution's vectorised reward / observation / reset definition.
        distribution: the single env (``gymnasium.make("metarl/<Name>-v0")``); its unwrapped env
            supplies ``task_type``, ``sample_tasks`` (run on this env's ``np_random``), the
            default task (``get_task()``) and the spaces.
        num_envs: N >= 1.
        horizon: episode length; an episode still running after ``horizon`` steps is truncated.
        seed: seeds as ``reset(seed=seed)`` would (see the module docstring).
        num_threads: physics threads (default: all cores this process may use).
        physics: ``auto``, ``batch`` (``mujoco.batch``, MuJoCo >= 4), ``data`` (one
            ``MjData`` per env on a thread pool) or ``warp`` (MuJoCo Warp, the optional extra
            ``warp``); see :func:`physics_backend`.
    """

    def __init__(self, kernel: Kernel, distribution: gymnasium.Env, num_envs: int, *,
                 horizon: int, seed: int | None = None, num_threads: int | None = None,
                 physics: str = "auto") -> None:
        self.num_envs = check_positive("num_envs", num_envs)
        self.horizon = check_positive("horizon", horizon)
        threads = check_positive("num_threads",
                                 default_num_threads() if num_threads is None else num_threads)
        self.kernel = kernel
        self._dist: Any = distribution.unwrapped
        base: Any = make_base_env(kernel.base_id, **kernel.base_kwargs)
        self._base_model: mujoco.MjModel = base.model
        self._init_qpos = np.array(base.init_qpos)
        self._init_qvel = np.array(base.init_qvel)
        self._dt = float(self._base_model.opt.timestep) * kernel.frame_skip
        backend = physics_backend(physics, kernel.needs_cfrc_ext)
        self._physics: Physics = backend(self._base_model, num_envs, threads)
        self._init_spaces(distribution)
        self._tasks: list[Task] = []
        self.set_tasks([self._dist.get_task()] * num_envs)  # type: ignore[attr-defined]
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._obs = np.zeros((num_envs, *self.single_observation_space.shape))  # type: ignore[misc]
        self._seed(seed)

    def _init_spaces(self, distribution: gymnasium.Env) -> None:
        self.single_observation_space = distribution.observation_space
        self.single_action_space = distribution.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def _seed(self, seed: int | None) -> None:
        self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._rngs = env_rngs(seed, self.num_envs)

    # ---- tasks ---------------------------------------------------------------------------

    def sample_tasks(self, n: int, split: str = "train") -> list[Task]:
        """Draw ``n`` tasks with the distribution's sampler on this env's ``np_random``."""
        check_split(split)
        self._dist.np_random = self.np_random
        return list(self._dist.sample_tasks(n, split=split))

    def set_tasks(self, tasks: Sequence[Task]) -> None:
        """One task per environment; takes effect at once (call ``reset`` to start episodes).

        Randomised-physics tasks each get their own ``MjModel`` (``kernel.task_model``).
        """
        checked = self._check_tasks(tasks, getattr(self._dist, "task_type", None))
        models = [self.kernel.task_model(self._base_model, t) for t in checked]
        same = all(m is self._base_model for m in models)
        self._physics.set_models(None if same else models)
        self._params = np.asarray(self.kernel.task_params(checked), dtype=np.float64)
        self._tasks = checked

    def get_tasks(self) -> list[Task]:
        return list(self._tasks)

    # ---- reset / step --------------------------------------------------------------------

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every environment (or those of ``options["reset_mask"]``).

        ``seed=s`` seeds env ``i`` like the single env's ``reset(seed=s + i)``; a list gives
        each env its own seed (None keeps that env's stream).
        """
        if isinstance(seed, Sequence):
            self._seed_each(seed)
        elif seed is not None:
            self._seed(seed)
        mask = np.ones(self.num_envs, dtype=bool)
        if options and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"], dtype=bool)
            if mask.shape != (self.num_envs,):
                raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},), "
                                 f"got {mask.shape}")
        self._reset_ids(np.flatnonzero(mask))
        return self._obs.copy(), {}

    def _seed_each(self, seeds: Sequence[int | None]) -> None:
        if len(seeds) != self.num_envs:
            raise ValueError(f"'seed' as a list must hold num_envs={self.num_envs} entries, "
                             f"got {len(seeds)}")
        for i, s in enumerate(seeds):
            if s is not None:
                self._rngs[i] = seeding.np_random(int(s))[0]
        if seeds[0] is not None:
            self._np_random, self._np_random_seed = seeding.np_random(int(seeds[0]))

    def _reset_ids(self, ids: np.ndarray) -> None:
        if ids.size == 0:
            return
        states = [self.kernel.reset_state(self._rngs[i], self._init_qpos, self._init_qvel)
                  for i in ids]
        self._physics.reset(ids, np.stack([s[0] for s in states]),
                            np.stack([s[1] for s in states]))
        phys = self._physics
        cfrc = None if phys.cfrc_ext is None else phys.cfrc_ext[ids]
        self._obs[ids] = self.kernel.observation(phys.qpos[ids], phys.qvel[ids], cfrc)
        self._elapsed[ids] = 0

    def step(self, actions: Any) -> StepResult:
        """Step every environment; finished ones reset in the same call (SAME_STEP)."""
        action = self._check_actions(actions)
        phys = self._physics
        qpos_before = phys.qpos.copy()
        unstable = phys.step(action, self.kernel.frame_skip)
        arrays = StepArrays(qpos_before, phys.qpos, phys.qvel, action, phys.cfrc_ext, self._dt)
        rewards, parts = self.kernel.reward(arrays, self._params)
        rewards = np.array(rewards, dtype=np.float64)
        terminated = np.array(self.kernel.terminated(phys.qpos, phys.qvel), dtype=bool)
        obs = np.array(self.kernel.observation(phys.qpos, phys.qvel, phys.cfrc_ext),
                       dtype=np.float64)
        unstable |= ~np.isfinite(obs).all(axis=1) | ~np.isfinite(rewards)
        self._elapsed += 1
        truncated = (self._elapsed >= self.horizon) | unstable
        terminated &= ~unstable
        info = self._step_info(parts, unstable)
        obs[unstable] = self._obs[unstable]  # the episode ends on its last finite observation
        rewards[unstable] = 0.0
        self._obs = obs
        done = terminated | truncated
        if done.any():
            info["final_obs"] = np.where(done[:, None], obs, 0.0)
            info["_final_obs"] = done
            self._reset_ids(np.flatnonzero(done))
        return self._obs.copy(), rewards, terminated, truncated, info

    def _step_info(self, parts: dict[str, np.ndarray], unstable: np.ndarray) -> dict[str, Any]:
        every = np.ones(self.num_envs, dtype=bool)
        info: dict[str, Any] = {"unstable": unstable, "_unstable": every}
        for key, value in parts.items():
            info[key] = np.where(unstable, 0.0, value)
            info[f"_{key}"] = every
        return info

    def close_extras(self, **kwargs: Any) -> None:
        self._physics.close()
