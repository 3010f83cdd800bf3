"""The Ray back-end of the sampler: whole tasks per actor, the learner unchanged.

:class:`RaySampler` has the interface of :class:`~metarl.rl.sampler.BatchedSampler` (the
:class:`~metarl.rl.sampler.Sampler` protocol), so ``TrpoMetaLearner`` takes either. The
meta-batch's tasks are cut into contiguous slices of whole tasks, one per actor; each actor
(:class:`SliceWorker`) owns one batched engine (:func:`metarl.envs.batched.make_batched`) of
``slice tasks x episodes`` environments and samples its slice with a local
:class:`~metarl.rl.sampler.BatchedSampler`, told the slice's first task index. By the
sampler's seeding convention a task's episodes depend only on the call's seed and the task's
index, so the episodes equal the local sampler's whatever the number of actors (tested bit
for bit). Each call ships the policy module and the slice's per-task parameters (small) as
NumPy arrays and gets padded NumPy episode arrays back.

An actor that dies during a call (killed, its node lost) is replaced by a fresh one and its
slice sampled again with the same seed, so the call returns the same episodes.

Ray is an optional extra (``pip install 'metarl[ray]'``); this module imports it only when a
:class:`RaySampler` is built.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from metarl.core import Params
from metarl.envs.batched import make_batched
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler, Episodes
from metarl.utils import draw_seed

SAMPLERS = ("local", "ray")
FIELDS = ("obs", "actions", "rewards", "masks")
INSTALL_HINT = "pip install 'metarl[ray]'"


def ray_installed() -> bool:
    """Whether the optional ``ray`` package can be imported."""
    return importlib.util.find_spec("ray") is not None


def check_sampler_options(sampler: str, ray_address: str | None, ray_actors: int,
                          meta_batch: int) -> None:
    """Raise ``ValueError`` naming the option unless the sampler options are usable.

    Args:
        sampler: ``local`` or ``ray``.
        ray_address: The cluster to join (``ray`` only), or None for a local runtime.
        ray_actors: Actors, ``1..meta_batch`` (each samples whole tasks).
        meta_batch: Tasks per call.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if isinstance(ray_actors, bool) or not 1 <= ray_actors <= meta_batch:
        raise ValueError(f"ray_actors must be an int in [1, meta_batch={meta_batch}] (each actor "
                         f"samples whole tasks), got {ray_actors}")
    if ray_address is not None:
        if not ray_address or any(c.isspace() for c in ray_address):
            raise ValueError(f"ray_address must be a Ray cluster address such as auto or "
                             f"HOST:PORT, got {ray_address!r}")
        if sampler != "ray":
            raise ValueError(f"ray_address applies to --sampler ray only, got sampler "
                             f"{sampler!r} with ray_address {ray_address!r}")
    if sampler == "ray" and not ray_installed():
        raise ValueError(f"sampler 'ray' needs the optional extra: {INSTALL_HINT} (or use "
                         f"--sampler local)")


def task_slices(num_tasks: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``[start, stop)`` ranges of whole tasks, sizes differing by <= 1."""
    if not 1 <= parts <= num_tasks:
        raise ValueError(f"ray_actors must be in [1, {num_tasks}], got {parts}")
    base, extra = divmod(num_tasks, parts)
    bounds = [0]
    for i in range(parts):
        bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    return list(zip(bounds[:-1], bounds[1:], strict=True))


class SliceWorker:
    """One actor's job: a batched env of ``num_tasks x episodes_per_task`` environments.

    Args:
        env_name: The task distribution.
        num_tasks: Tasks of this actor's slice.
        episodes_per_task: Episodes per task.
        horizon: Steps per episode.
        preset: The preset (for :func:`make_batched`).
        threads: Torch and physics threads of this actor.
    """

    def __init__(self, env_name: str, num_tasks: int, episodes_per_task: int, horizon: int,
                 preset: str, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        env = make_batched(env_name, num_tasks * episodes_per_task, horizon=horizon,
                           preset=preset, num_threads=threads)
        self.sampler = BatchedSampler(env, episodes_per_task, "cpu")

    def sample(self, policy: GaussianMLPPolicy, params: dict[str, np.ndarray],
               tasks: Sequence[Any], seed: int, first_task: int) -> dict[str, np.ndarray]:
        """The slice's episodes as NumPy arrays ``[slice tasks, E, H, ...]``."""
        torch_params = {k: torch.from_numpy(v.copy()) for k, v in params.items()}  # writable
        episodes = self.sampler.sample(policy, torch_params, tasks, seed, first_task=first_task)
        return {name: getattr(episodes, name).numpy() for name in FIELDS}

    def close(self) -> None:
        """Close the env."""
        self.sampler.close()


def _cpu_policy(policy: GaussianMLPPolicy) -> GaussianMLPPolicy:
    """``policy`` itself when on the CPU, else a CPU copy (actors need not have a GPU)."""
    if all(p.device.type == "cpu" for p in policy.parameters()):
        return policy
    return copy.deepcopy(policy).cpu()


class RaySampler:
    """Samples a meta-batch on Ray actors, whole tasks per actor (see the module docstring).

    Args:
        env_name: The task distribution.
        num_tasks: Tasks per call (the meta-batch).
        episodes_per_task: Episodes per task.
        horizon: Steps per episode.
        preset: The preset (for :func:`make_batched`).
        actors: Actors, ``1..num_tasks``; slices of ``num_tasks / actors`` tasks.
        address: Ray cluster to join; None starts a local runtime (shut down by
            :meth:`close`). An already initialised Ray is used as it is.
        device: Where the returned :class:`Episodes` live.
        max_replacements: Actor replacements allowed within one call before it fails.
    """

    def __init__(self, env_name: str, num_tasks: int, episodes_per_task: int, horizon: int, *,
                 preset: str = "paper", actors: int = 2, address: str | None = None,
                 device: torch.device | str = "cpu", max_replacements: int = 3) -> None:
        import ray

        self.slices = task_slices(num_tasks, actors)
        self.num_tasks, self.episodes_per_task = num_tasks, episodes_per_task
        self.horizon = int(horizon)
        self.device = torch.device(device)
        self.max_replacements = max_replacements
        self.replaced = 0
        self._args = (env_name, episodes_per_task, horizon, preset)
        self._owns_runtime = not ray.is_initialized()
        if self._owns_runtime:
            if address is None:
                ray.init(num_cpus=actors, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=address, logging_level=logging.WARNING)
        self._actor_cls = ray.remote(num_cpus=1, max_restarts=0)(SliceWorker)
        self.workers = [self._new_worker(i) for i in range(len(self.slices))]

    @property
    def num_envs(self) -> int:
        """Environments per call, ``num_tasks x episodes_per_task``."""
        return self.num_tasks * self.episodes_per_task

    def _new_worker(self, i: int) -> Any:
        name, episodes, horizon, preset = self._args
        start, stop = self.slices[i]
        return self._actor_cls.remote(name, stop - start, episodes, horizon, preset)

    def sample(self, policy: GaussianMLPPolicy, params_per_task: Params, tasks: Sequence[Any],
               seed: int | None = None) -> Episodes:
        """The episodes :meth:`BatchedSampler.sample` gives for the same arguments.

        Args:
            policy: The policy module (sent to the actors; its parameters unused).
            params_per_task: Every parameter key stacked over tasks, ``[T, ...]``.
            tasks: ``T`` tasks.
            seed: Seeds the episodes (None: drawn from torch's RNG).
        """
        import ray

        if len(tasks) != self.num_tasks:
            raise ValueError(f"tasks must hold {self.num_tasks} tasks (the meta-batch), got "
                             f"{len(tasks)}")
        seed = draw_seed() if seed is None else int(seed)
        params = {k: v.detach().cpu().numpy() for k, v in params_per_task.items()}
        call = (ray.put(_cpu_policy(policy)), params, list(tasks), seed)
        pending = {self._submit(i, call): i for i in range(len(self.slices))}
        parts = self._gather(pending, call)
        return Episodes(*(torch.from_numpy(np.concatenate([p[name] for p in parts]))
                          .to(self.device) for name in FIELDS))

    def _submit(self, i: int, call: tuple[Any, dict[str, np.ndarray], list[Any], int]) -> Any:
        """Send slice ``i`` of ``call`` to its actor; returns the result's object ref."""
        policy_ref, params, tasks, seed = call
        start, stop = self.slices[i]
        part = {k: np.ascontiguousarray(v[start:stop]) for k, v in params.items()}
        return self.workers[i].sample.remote(policy_ref, part, tasks[start:stop], seed, start)

    def _gather(self, pending: dict[Any, int],
                call: tuple[Any, dict[str, np.ndarray], list[Any], int]) -> list[dict[str, Any]]:
        """Every slice's result in slice order, replacing actors that die on the way."""
        import ray
        from ray.exceptions import RayActorError

        results: dict[int, dict[str, Any]] = {}
        replaced = 0
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                results[i] = ray.get(ref)
            except RayActorError as err:
                replaced += 1
                self._replace(i, err, replaced)
                pending[self._submit(i, call)] = i
        return [results[i] for i in range(len(self.slices))]

    def _replace(self, i: int, err: Exception, replaced: int) -> None:
        start, stop = self.slices[i]
        if replaced > self.max_replacements:
            raise RuntimeError(f"ray sampler: actors died {replaced} times in one call (the "
                               f"last one sampled tasks {start}..{stop - 1}): {err}")
        print(f"warning: ray sampler: the actor of tasks {start}..{stop - 1} died "
              f"({type(err).__name__}); replacing it and sampling its tasks again",
              file=sys.stderr, flush=True)
        self.workers[i] = self._new_worker(i)
        self.replaced += 1

    def close(self) -> None:
        """Kill the actors, and shut Ray down when this sampler started it."""
        import ray

        for worker in self.workers:
            ray.kill(worker)
        self.workers = []
        if self._owns_runtime:
            ray.shutdown()
