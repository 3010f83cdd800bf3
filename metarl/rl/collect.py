"""Collecting one meta-batch: pre-update episodes, inner steps, post-update episodes.

As in Finn et al.'s rllab code for MAML-TRPO (2017), each inner step samples fresh episodes
with the current adapted parameters; the step itself is :func:`metarl.core.inner_step` on
the vanilla-policy-gradient loss, for all tasks at once. The result, a :class:`MetaBatch`,
is what the outer TRPO step optimises.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from metarl.core import Params, Rule, inner_step, map_tasks
from metarl.rl.baseline import LinearFeatureBaseline
from metarl.rl.policy import GaussianMLPPolicy, log_prob
from metarl.rl.returns import discounted_returns, gae_advantages, normalize_advantages
from metarl.rl.sampler import Episodes, Sampler, forward_per_task
from metarl.utils import draw_seed

Data = dict[str, torch.Tensor]


@dataclass
class MetaBatch:
    """The data of one meta-update.

    Attributes:
        train: Per inner step, the pre-update data (``obs``, ``actions``, ``advantages``,
            ``masks``; leading task dimension).
        valid: Post-update data plus the sampling distribution's ``old_log_prob``,
            ``old_mean`` and ``old_log_std``.
        logs: What collecting it measured.
    """

    train: list[Data]
    valid: Data
    logs: dict[str, float] = field(default_factory=dict)

    @property
    def num_tasks(self) -> int:
        """Tasks in the meta-batch."""
        return int(self.valid["masks"].shape[0])

    @property
    def samples_per_task(self) -> int:
        """Padded samples per task of the post-update data (``E x H``)."""
        return int(self.valid["masks"][0].numel())


def vpg_loss(policy: GaussianMLPPolicy, params: Params, data: Data) -> torch.Tensor:
    """The inner loss ``-mean_t log pi(a_t | s_t) A_t`` over one task's valid steps."""
    mean, log_std = policy.dist_params(params, data["obs"])
    logp = log_prob(mean, log_std, data["actions"])
    masks = data["masks"]
    return -(logp * data["advantages"] * masks).sum() / masks.sum().clamp_min(1.0)


def log_episodes(logs: dict[str, float], episodes: Episodes, step: int) -> None:
    """``adapt/return_step{k}`` and, for envs reporting success (Meta-World),
    ``adapt/success_step{k}``: the mean return and success rate after ``k`` inner steps."""
    logs[f"adapt/return_step{step}"] = float(episodes.returns_per_episode().mean())
    rate = episodes.success_rate()
    if rate is not None:
        logs[f"adapt/success_step{step}"] = rate


class Collector:
    """Samples, processes and adapts: everything of an iteration before the outer step.

    Args:
        policy: The policy (run functionally).
        keys: The adapted keys.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        device: Where the processed data lives.
    """

    def __init__(self, policy: GaussianMLPPolicy, keys: tuple[str, ...], *, gamma: float,
                 gae_lambda: float, device: torch.device) -> None:
        self.policy, self.keys = policy, keys
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.device = device
        self.baseline = LinearFeatureBaseline()

    def inner_loss(self, params: Params, data: Data) -> torch.Tensor:
        """The VPG loss of one task (:func:`vpg_loss`)."""
        return vpg_loss(self.policy, params, data)

    def process(self, episodes: Episodes) -> tuple[Data, float]:
        """Advantages of ``episodes`` (per-task baseline, GAE, normalised) as task data."""
        ep = episodes.to(self.device)
        returns = discounted_returns(ep.rewards, ep.masks, self.gamma)
        fit = self.baseline.fit(ep.obs, returns, ep.masks)
        values = self.baseline.predict(fit.weights, ep.obs)
        adv = gae_advantages(ep.rewards, values, ep.masks, self.gamma, self.gae_lambda)
        data = {"obs": ep.obs, "actions": ep.actions, "masks": ep.masks,
                "advantages": normalize_advantages(adv, ep.masks)}
        return data, float(fit.fit_error.mean())

    def adapt_step(self, params: Params, data: Data, step: int, rule: Rule,
                   vectorize: bool) -> Params:
        """Detached per-task parameters after inner step ``step`` on ``data`` (to sample)."""

        def one(p: Params, d: Data) -> Params:
            return inner_step(p, self.inner_loss, d, step=step, rule=rule, keys=self.keys,
                              first_order=True)

        with torch.no_grad():
            out: Params = map_tasks(one, (params, data), (0, 0), vectorize)
        return {k: v.detach() for k, v in out.items()}

    def collect(self, sampler: Sampler, params: Params, tasks: Sequence[Any], *,
                inner_steps: int, rule: Rule, vectorize: bool) -> MetaBatch:
        """Pre-update episodes, ``inner_steps`` inner steps, post-update episodes.

        Args:
            sampler: The batched sampler.
            params: The meta-parameters stacked over tasks (detached).
            tasks: The meta-batch's tasks.
            inner_steps: Inner steps, each on fresh episodes.
            rule: The training inner-lr rule.
            vectorize: Map the inner steps over tasks with vmap.
        """
        logs: dict[str, float] = {"time/adaptation_s": 0.0}
        train, fit_errors = [], []
        for k in range(inner_steps):
            episodes = self._sample(sampler, params, tasks, logs)
            log_episodes(logs, episodes, k)
            start = time.perf_counter()
            data, fit_error = self.process(episodes)
            params = self.adapt_step(params, data, k, rule, vectorize)
            logs["time/adaptation_s"] += time.perf_counter() - start
            train.append(data)
            fit_errors.append(fit_error)
        episodes = self._sample(sampler, params, tasks, logs)
        log_episodes(logs, episodes, inner_steps)
        valid, fit_error = self.process(episodes)
        fit_errors.append(fit_error)
        valid.update(self.old_distribution(params, valid))
        logs["baseline/fit_error"] = float(np.mean(fit_errors))
        logs["time/env_steps_per_s"] = logs["env_steps"] / max(logs["time/sampling_s"], 1e-9)
        return MetaBatch(train, valid, logs)

    def _sample(self, sampler: Sampler, params: Params, tasks: Sequence[Any],
                logs: dict[str, float]) -> Episodes:
        start = time.perf_counter()
        episodes = sampler.sample(self.policy, params, tasks, draw_seed())
        logs["time/sampling_s"] = logs.get("time/sampling_s", 0.0) + time.perf_counter() - start
        logs["env_steps"] = logs.get("env_steps", 0.0) + sampler.num_envs * sampler.horizon
        logs["data/nonfinite_steps"] = (logs.get("data/nonfinite_steps", 0.0) +
                                        episodes.num_nonfinite_steps)
        return episodes

    def old_distribution(self, params: Params, valid: Data) -> Data:
        """The sampling policy's ``old_mean``, ``old_log_std`` and ``old_log_prob``."""
        with torch.no_grad():
            mean, log_std = forward_per_task(self.policy, params, valid["obs"].flatten(1, 2))
            mean = mean.reshape(*valid["actions"].shape)
            logp = log_prob(mean, log_std[:, None, None, :], valid["actions"])
        return {"old_mean": mean, "old_log_std": log_std, "old_log_prob": logp}
