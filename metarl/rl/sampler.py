"""Batched episode sampler: every task's episodes step in lock-step on one batched env.

Environment ``i`` runs task ``i // episodes_per_task``. The policy acts for all environments
in one call: ``torch.func.vmap`` over tasks of the functional policy, each task with its own
(adapted) parameters, on the learner's device; only the actions go back to the CPU env.
Exactly ``horizon`` steps follow a reset; an episode's valid steps end at its first
``terminated``/``truncated`` flag, and the rest (the env's autoreset continuation) is masked.
The raw Gaussian sample is stored; it is clipped to the action space only to step the env.

Seeding convention (shared by every :class:`Sampler`): a call's ``seed`` gives one env seed
and one noise seed (:func:`call_seeds`); environment ``j`` of the meta-batch (task
``j // E``, episode ``j % E``) resets as ``reset(seed=env_seed + j)`` would seed it, and task
``i``'s action noise comes from its own generator seeded by ``(noise_seed, i)``
(:func:`task_noise`). So a task's episodes depend only on the seed and the task's index in
the meta-batch: a slice of the tasks sampled alone (``first_task=``, as each Ray actor does,
:mod:`metarl.rl.ray_sampler`) gives exactly the episodes the whole batch gives.

Threads: the physics steps on the env's C threads while the policy acts between steps, so the
rollout runs torch's CPU work on ``torch_threads`` intra-op threads (default 1). The per-step
policy forward is a few small matmuls; on torch's default of one thread per core, its OpenMP
threads wait (spinning, then at a barrier) on cores the physics threads want, which on a busy
2-core machine made the sampler's serial work 9x larger and the sampler 2.2x slower than on one
torch thread (docs/speed.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from metarl.core import Params
from metarl.rl.policy import GaussianMLPPolicy
from metarl.utils import draw_seed


@dataclass(frozen=True)
class Episodes:
    """Padded episodes of ``T`` tasks x ``E`` episodes x ``H`` steps.

    Attributes:
        obs: ``[T, E, H, obs_dim]`` observations ``s_t`` (before acting).
        actions: ``[T, E, H, act_dim]`` raw (unclipped) Gaussian samples ``a_t``.
        rewards: ``[T, E, H]`` rewards ``r_t`` (0 on masked steps).
        masks: ``[T, E, H]`` 1 on valid steps, 0 after the episode ended.
        success: ``[T, E]`` 1 where the env's ``info["success"]`` flag was raised on a valid
            step of the episode (Meta-World's success, Yu et al., 2019); None for envs that
            report no success.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    masks: torch.Tensor
    success: torch.Tensor | None = None

    def returns_per_episode(self) -> torch.Tensor:
        """Undiscounted return of every episode, ``[T, E]``."""
        return (self.rewards * self.masks).sum(dim=-1)

    def success_rate(self) -> float | None:
        """Fraction of episodes that succeeded (None when the env reports no success)."""
        return None if self.success is None else float(self.success.mean())

    @property
    def num_steps(self) -> int:
        """Valid environment steps held."""
        return int(self.masks.sum())

    @property
    def num_nonfinite_steps(self) -> int:
        """Steps (valid or padding) whose observation or reward is NaN or infinite; any one
        poisons the losses, masked or not (``NaN * 0`` is NaN)."""
        bad = ~torch.isfinite(self.obs).all(dim=-1) | ~torch.isfinite(self.rewards)
        return int(bad.sum())

    def to(self, device: torch.device | str) -> Episodes:
        """A copy on ``device``."""
        return Episodes(self.obs.to(device), self.actions.to(device), self.rewards.to(device),
                        self.masks.to(device),
                        None if self.success is None else self.success.to(device))


def forward_per_task(policy: GaussianMLPPolicy, params_per_task: Params,
                     obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [T, B, a], log_std [T, a])`` of ``obs [T, B, d]``, task ``i`` with params ``i``.

    One ``torch.func.vmap`` over tasks: a batched matmul per layer instead of ``T`` calls.
    """
    out: tuple[torch.Tensor, torch.Tensor] = torch.func.vmap(policy.dist_params)(
        params_per_task, obs)
    return out


class Sampler(Protocol):
    """What the learner samples with: :class:`BatchedSampler` (one process) or
    :class:`~metarl.rl.ray_sampler.RaySampler` (Ray actors), interchangeable."""

    episodes_per_task: int
    num_tasks: int
    horizon: int

    @property
    def num_envs(self) -> int:
        """Environments per call, ``num_tasks x episodes_per_task``."""
        ...

    def sample(self, policy: GaussianMLPPolicy, params_per_task: Params, tasks: Sequence[Any],
               seed: int | None = None) -> Episodes:
        """``episodes_per_task`` episodes of every task, acting with its own parameters."""
        ...

    def close(self) -> None:
        """Release the environments (and workers)."""
        ...


def call_seeds(seed: int) -> tuple[int, int]:
    """``(env_seed, noise_seed)`` of one sampling call seeded ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    return draw_seed(gen), draw_seed(gen)


def task_noise(noise_seed: int, task_index: int, shape: Sequence[int],
               dtype: torch.dtype) -> torch.Tensor:
    """Standard normal noise ``[H, E, a]`` of task ``task_index`` (its own generator)."""
    state = np.random.SeedSequence([int(noise_seed), int(task_index)]).generate_state(1, np.uint64)
    gen = torch.Generator().manual_seed(int(state[0]))
    return torch.randn(tuple(shape), generator=gen, dtype=dtype)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` inside the block (None: unchanged)."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class BatchedSampler:
    """Samples ``episodes_per_task`` episodes of each task with per-task policy parameters.

    Args:
        env: A batched env (:func:`metarl.envs.batched.make_batched`) whose ``num_envs`` is
            ``tasks x episodes_per_task``.
        episodes_per_task: Episodes per task, >= 1.
        device: Where the policy acts and the returned :class:`Episodes` live.
        torch_threads: torch's CPU threads during a rollout (>= 1; None: leave torch's
            setting), restored afterwards; see the module docstring.
    """

    def __init__(self, env: Any, episodes_per_task: int, device: torch.device | str, *,
                 torch_threads: int | None = 1) -> None:
        if episodes_per_task < 1 or env.num_envs % episodes_per_task != 0:
            raise ValueError(f"episodes_per_task must be >= 1 and divide env.num_envs="
                             f"{env.num_envs}, got {episodes_per_task}")
        if torch_threads is not None and (isinstance(torch_threads, bool)
                                          or not isinstance(torch_threads, int)
                                          or torch_threads < 1):
            raise ValueError(f"torch_threads must be None or an int >= 1, got {torch_threads!r}")
        self.torch_threads = torch_threads
        self.env = env
        self.episodes_per_task = episodes_per_task
        self.device = torch.device(device)
        self.num_tasks = env.num_envs // episodes_per_task
        self.horizon = int(env.horizon)
        space = env.single_action_space
        self._low, self._high = np.asarray(space.low), np.asarray(space.high)

    @property
    def num_envs(self) -> int:
        """Environments per call, ``num_tasks x episodes_per_task``."""
        return int(self.env.num_envs)

    def close(self) -> None:
        """Close the batched env."""
        self.env.close()

    def sample(self, policy: GaussianMLPPolicy, params_per_task: Params, tasks: Sequence[Any],
               seed: int | None = None, *, first_task: int = 0) -> Episodes:
        """Run one episode batch: ``horizon`` lock-step steps of all ``T x E`` environments.

        Args:
            policy: The policy module (run functionally, its own parameters unused).
            params_per_task: Every parameter key stacked over tasks, ``[T, ...]``.
            tasks: ``T`` tasks (``T = env.num_envs / episodes_per_task``).
            seed: Seeds the env reset and the action noise (None: drawn from torch's RNG).
            first_task: Index of ``tasks[0]`` in the meta-batch when these tasks are a slice
                of it (the module docstring's seeding convention).
        """
        if len(tasks) != self.num_tasks:
            raise ValueError(f"tasks must hold {self.num_tasks} tasks "
                             f"(num_envs / episodes_per_task), got {len(tasks)}")
        env_seed, noise_seed = call_seeds(draw_seed() if seed is None else seed)
        self.env.set_tasks([t for t in tasks for _ in range(self.episodes_per_task)])
        obs_np, _ = self.env.reset(seed=env_seed + first_task * self.episodes_per_task)
        dtype = next(iter(params_per_task.values())).dtype
        shape = (self.horizon, self.episodes_per_task, policy.act_dim)
        noise = torch.stack([task_noise(noise_seed, first_task + i, shape, dtype)
                             for i in range(self.num_tasks)], dim=1)  # [H, T, E, a]
        with torch.no_grad(), torch_threads(self.torch_threads):
            return self._rollout(policy, params_per_task, obs_np, noise)

    def _rollout(self, policy: GaussianMLPPolicy, params: Params, obs_np: np.ndarray,
                 noise: torch.Tensor) -> Episodes:
        t_, e_, h_ = self.num_tasks, self.episodes_per_task, self.horizon
        dtype = noise.dtype
        noise = noise.to(next(iter(params.values())).device)
        obs = torch.zeros(h_, t_ * e_, obs_np.shape[-1], dtype=dtype)
        actions = torch.zeros(h_, t_ * e_, policy.act_dim, dtype=dtype)
        rewards = torch.zeros(h_, t_ * e_, dtype=dtype)
        masks = torch.zeros(h_, t_ * e_, dtype=dtype)
        alive = np.ones(t_ * e_, dtype=bool)
        success: np.ndarray | None = None
        for h in range(h_):
            obs[h] = torch.from_numpy(obs_np)
            actions[h] = self._act(policy, params, obs[h], noise[h])
            obs_np, rew, term, trunc, info = self.env.step(
                np.clip(actions[h].numpy(), self._low, self._high))
            masks[h] = torch.from_numpy(alive.astype(np.float64))
            rewards[h] = torch.from_numpy(np.where(alive, rew, 0.0))
            if "success" in info:  # Meta-World: the flag of this step, per env
                flags = alive & np.asarray(info["success"], dtype=bool)
                success = flags if success is None else success | flags
            alive = alive & ~(np.asarray(term) | np.asarray(trunc))

        def shaped(x: torch.Tensor) -> torch.Tensor:
            x = x.reshape(h_, t_, e_, *x.shape[2:]).movedim(0, 2)
            return x.contiguous().to(self.device)

        won = None if success is None else torch.from_numpy(success.astype(np.float64)).to(
            dtype).reshape(t_, e_).to(self.device)
        return Episodes(shaped(obs), shaped(actions), shaped(rewards), shaped(masks), won)

    def _act(self, policy: GaussianMLPPolicy, params: Params, obs: torch.Tensor,
             noise: torch.Tensor) -> torch.Tensor:
        """Gaussian actions ``[T * E, a]`` for ``obs [T * E, d]`` and ``noise [T, E, a]``."""
        t_, e_ = self.num_tasks, self.episodes_per_task
        mean, log_std = policy.dist_params_per_task(
            params, obs.reshape(t_, e_, -1).to(noise.device))
        sample = mean + torch.exp(log_std)[:, None, :] * noise
        return sample.reshape(t_ * e_, -1).cpu()
