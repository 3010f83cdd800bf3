"""MAML-TRPO and ANIL-TRPO: one learner, the adapted keys tell them apart.

MAML-TRPO (Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks"): per task, inner vanilla-policy-gradient steps (linear feature baseline, GAE) on
pre-update episodes give adapted parameters; episodes sampled with them define the outer
objective, optimised by TRPO (Schulman et al., 2015) with Fisher-vector products taken through
the inner steps (second order) or around them (first order). ANIL-TRPO (Raghu et al., 2020,
"Rapid Learning or Feature Reuse?") adapts only the head (and optionally the log-std); with
zero inner steps the learner is plain multi-task TRPO and evaluation is NIL.

Each inner step samples fresh episodes with the current adapted parameters (as in Finn et
al.'s rllab code); the step itself is :func:`metarl.core.adapt`. Tasks are mapped either by
``torch.func.vmap`` (batched) or by a Python loop; both give the same step (tests check it),
and ``meta_update_path="auto"`` picks the faster one by device and samples per task.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.utils._pytree as pytree

from metarl.core import ADAPT_MODES, Params, adapt, adapt_keys, check_finite, get_params
from metarl.rl.baseline import LinearFeatureBaseline
from metarl.rl.policy import GaussianMLPPolicy, entropy, kl_divergence, log_prob
from metarl.rl.returns import discounted_returns, gae_advantages, normalize_advantages
from metarl.rl.sampler import BatchedSampler, Episodes, forward_per_task
from metarl.rl.trpo import TrpoConfig, trpo_update

META_UPDATE_PATHS = ("auto", "batched", "loop")
# "auto" on CPU: vmap over tasks up to this many (padded) samples per task, a loop beyond.
# Measured with scripts/bench_rl.py on the 2-core development machine (torch 2.13 CPU, two
# threads; one TRPO meta-update: surrogate gradient, 10 CG iterations of Fisher-vector
# products through a second-order inner step, line search; 40 HalfCheetahVel tasks, 2x64
# tanh, 17-d obs), loop time / batched time: 5.1 at 100 samples per task, 1.30 at 1,000,
# 0.87 at 1,500, 0.67 at 2,000, 0.68 at 3,000 and 0.38 at 4,000 (the paper preset). The
# crossover lies between 1,000 and 1,500. On CUDA the batched path is always taken.
AUTO_BATCHED_MAX_SAMPLES = 1200

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
    def samples_per_task(self) -> int:
        """Padded samples per task of the post-update data (``E x H``)."""
        return int(self.valid["masks"][0].numel())


def map_tasks(fn: Callable[..., Any], args: Sequence[Any], in_dims: Sequence[int | None],
              batched: bool) -> Any:
    """``fn`` over the task dimension of the ``in_dims == 0`` arguments, outputs stacked.

    ``batched``: one ``torch.func.vmap``; otherwise a Python loop (the reference).
    """
    if batched:
        return torch.func.vmap(fn, in_dims=tuple(in_dims))(*args)
    n = next(pytree.tree_leaves(a)[0].shape[0] for a, d in zip(args, in_dims, strict=True)
             if d == 0)
    outs = [fn(*[a if d is None else pytree.tree_map(lambda x, i=i: x[i], a)
                 for a, d in zip(args, in_dims, strict=True)]) for i in range(n)]
    return pytree.tree_map(lambda *xs: torch.stack(xs), *outs)


def _check_args(adapt_mode: str, inner_steps: int, path: str, fvp_subsample: float,
                gamma: float, gae_lambda: float, inner_lr: float, eval_inner_lr: float) -> None:
    if adapt_mode not in ADAPT_MODES:
        raise ValueError(f"adapt must be one of {ADAPT_MODES}, got {adapt_mode!r}")
    if path not in META_UPDATE_PATHS:
        raise ValueError(f"meta_update_path must be one of {META_UPDATE_PATHS}, got {path!r}")
    if inner_steps < 0:
        raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps}")
    if not 0.0 < fvp_subsample <= 1.0:
        raise ValueError(f"fvp_subsample must be in (0, 1], got {fvp_subsample}")
    for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    check_finite("inner_lr", inner_lr)
    check_finite("eval_inner_lr", eval_inner_lr)


def _check_trpo(cfg: TrpoConfig) -> None:
    checks = (("max_kl", cfg.max_kl > 0, "> 0"), ("cg_iters", cfg.cg_iters >= 1, ">= 1"),
              ("cg_damping", cfg.cg_damping >= 0, ">= 0"), ("ls_steps", cfg.ls_steps >= 1, ">= 1"),
              ("ls_ratio", 0 < cfg.ls_ratio < 1, "in (0, 1)"))
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"{name} must be {allowed}, got {getattr(cfg, name)}")


def _draw_seed() -> int:
    return int(torch.randint(2**31 - 1, ()))


class MetaLearner:
    """MAML-TRPO / ANIL-TRPO meta-learner over a :class:`GaussianMLPPolicy`.

    Args:
        policy: The policy; its parameters are the meta-parameters (moved to ``device``).
        adapt: ``all`` (MAML), ``head`` (ANIL) or ``none`` (no inner adaptation).
        adapt_log_std: Adapt the log-std in the inner loop with the other adapted keys.
        inner_lr: Training inner lr (any finite sign).
        eval_inner_lr: Default evaluation inner lr (any finite sign).
        inner_steps: Inner steps during training (each on fresh episodes).
        first_order: Treat the inner gradients as constants (first-order MAML).
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        max_kl: TRPO trust region (mean KL).
        cg_iters: Conjugate-gradient iterations.
        cg_damping: Damping added to the Fisher-vector products.
        ls_steps: Line-search trials.
        ls_ratio: Line-search shrink factor.
        fvp_subsample: Fraction of each task's post-update episodes used in the
            Fisher-vector products (rllab's subsampling), in (0, 1].
        meta_update_path: ``batched`` (vmap over tasks), ``loop`` or ``auto``.
        device: Device of the policy and the meta-update (sampling stays on the CPU).
        auto_batched_max_samples: ``auto`` on CPU batches up to this many samples per task.
    """

    def __init__(self, policy: GaussianMLPPolicy, *, adapt: str = "all",
                 adapt_log_std: bool = True, inner_lr: float = 0.1, eval_inner_lr: float = 0.1,
                 inner_steps: int = 1, first_order: bool = False, gamma: float = 0.99,
                 gae_lambda: float = 1.0, max_kl: float = 0.01, cg_iters: int = 10,
                 cg_damping: float = 1e-5, ls_steps: int = 15, ls_ratio: float = 0.8,
                 fvp_subsample: float = 1.0, meta_update_path: str = "auto",
                 device: torch.device | str = "cpu",
                 auto_batched_max_samples: int = AUTO_BATCHED_MAX_SAMPLES) -> None:
        _check_args(adapt, inner_steps, meta_update_path, fvp_subsample, gamma, gae_lambda,
                    inner_lr, eval_inner_lr)
        self.trpo = TrpoConfig(max_kl, cg_iters, cg_damping, ls_steps, ls_ratio)
        _check_trpo(self.trpo)
        self.device = torch.device(device)
        self.policy = policy.to(self.device)
        self.adapt_mode, self.adapt_log_std = adapt, adapt_log_std
        self.keys = self._adapted_keys()
        self.inner_lr, self.eval_inner_lr = float(inner_lr), float(eval_inner_lr)
        self.inner_steps, self.first_order = inner_steps, first_order
        self.gamma, self.gae_lambda = gamma, gae_lambda
        self.fvp_subsample = fvp_subsample
        self.meta_update_path = meta_update_path
        self.auto_batched_max_samples = auto_batched_max_samples
        self.baseline = LinearFeatureBaseline()
        self.iterations = 0

    def _adapted_keys(self) -> tuple[str, ...]:
        params = get_params(self.policy)
        keys = [k for k in adapt_keys(params, self.adapt_mode) if k != "log_std"]
        if self.adapt_log_std and self.adapt_mode != "none":
            keys.append("log_std")
        return tuple(k for k in params if k in keys)

    # ----------------------------------------------------------------------------------------
    # Per-task pure functions (run under vmap or in the loop)
    # ----------------------------------------------------------------------------------------

    def inner_loss(self, params: Params, data: Data) -> torch.Tensor:
        """VPG loss ``-mean_t log pi(a_t | s_t) A_t`` over one task's valid steps."""
        mean, log_std = self.policy.dist_params(params, data["obs"])
        logp = log_prob(mean, log_std, data["actions"])
        masks = data["masks"]
        return -(logp * data["advantages"] * masks).sum() / masks.sum().clamp_min(1.0)

    def adapted(self, params: Params, train: Sequence[Data], lr: float,
                first_order: bool) -> Params:
        """One :func:`metarl.core.adapt` step per inner step, each on its own episodes."""
        for data in train:
            out = adapt(params, self.inner_loss, data, steps=1, rule=lr, keys=self.keys,
                        first_order=first_order)
            assert isinstance(out, dict)
            params = out
        return params

    def task_objective(self, params: Params, train: Sequence[Data],
                       valid: Data) -> tuple[torch.Tensor, torch.Tensor]:
        """One task's TRPO surrogate ``-mean_t r_t(theta') A_t`` and mean ``KL(old || theta')``
        on its post-update data, ``theta'`` the parameters adapted from ``params``."""
        new = self.adapted(params, train, self.inner_lr, self.first_order)
        mean, log_std = self.policy.dist_params(new, valid["obs"])
        masks = valid["masks"]
        count = masks.sum().clamp_min(1.0)
        ratio = torch.exp(log_prob(mean, log_std, valid["actions"]) - valid["old_log_prob"])
        loss = -(ratio * valid["advantages"] * masks).sum() / count
        kl = kl_divergence(valid["old_mean"], valid["old_log_std"], mean, log_std)
        return loss, (kl * masks).sum() / count

    # ----------------------------------------------------------------------------------------
    # Collecting a meta-batch
    # ----------------------------------------------------------------------------------------

    def stacked_params(self, num_tasks: int) -> Params:
        """The meta-parameters (detached) expanded to ``[T, ...]`` without copying."""
        return {k: v.detach().expand(num_tasks, *v.shape)
                for k, v in get_params(self.policy).items()}

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

    def adapt_step(self, params: Params, data: Data, lr: float, batched: bool) -> Params:
        """Detached per-task parameters after one inner step on ``data`` (for sampling)."""

        def one(p: Params, d: Data) -> Params:
            return self.adapted(p, [d], lr, first_order=True)

        with torch.no_grad():
            out: Params = map_tasks(one, (params, data), (0, 0), batched)
        return out

    def _sample(self, sampler: BatchedSampler, params: Params, tasks: Sequence[Any],
                seed: int, logs: dict[str, float]) -> Episodes:
        start = time.perf_counter()
        episodes = sampler.sample(self.policy, params, tasks, seed)
        logs["time/sampling_s"] = logs.get("time/sampling_s", 0.0) + time.perf_counter() - start
        logs["env_steps"] = logs.get("env_steps", 0.0) + sampler.env.num_envs * sampler.horizon
        return episodes

    def collect(self, sampler: BatchedSampler, tasks: Sequence[Any]) -> MetaBatch:
        """Pre-update episodes, inner steps, post-update episodes: the data of one update."""
        logs: dict[str, float] = {"time/adaptation_s": 0.0}
        params = self.stacked_params(len(tasks))
        batched = self.use_batched(sampler.episodes_per_task * sampler.horizon)
        train, fit_errors = [], []
        for k in range(self.inner_steps):
            episodes = self._sample(sampler, params, tasks, _draw_seed(), logs)
            logs[f"adapt/return_step{k}"] = float(episodes.returns_per_episode().mean())
            start = time.perf_counter()
            data, fit_error = self.process(episodes)
            params = self.adapt_step(params, data, self.inner_lr, batched)
            logs["time/adaptation_s"] += time.perf_counter() - start
            train.append(data)
            fit_errors.append(fit_error)
        episodes = self._sample(sampler, params, tasks, _draw_seed(), logs)
        logs[f"adapt/return_step{self.inner_steps}"] = float(
            episodes.returns_per_episode().mean())
        valid, fit_error = self.process(episodes)
        fit_errors.append(fit_error)
        valid.update(self._old_distribution(params, valid))
        logs["baseline/fit_error"] = float(np.mean(fit_errors))
        logs["time/env_steps_per_s"] = logs["env_steps"] / max(logs["time/sampling_s"], 1e-9)
        return MetaBatch(train, valid, logs)

    def _old_distribution(self, params: Params, valid: Data) -> Data:
        with torch.no_grad():
            mean, log_std = forward_per_task(self.policy, params, valid["obs"].flatten(1, 2))
            mean = mean.reshape(*valid["actions"].shape)
            logp = log_prob(mean, log_std[:, None, None, :], valid["actions"])
        return {"old_mean": mean, "old_log_std": log_std, "old_log_prob": logp}

    # ----------------------------------------------------------------------------------------
    # The meta-update
    # ----------------------------------------------------------------------------------------

    def use_batched(self, samples_per_task: int) -> bool:
        """Whether the meta-update maps tasks with vmap (True) or a loop (False)."""
        if self.meta_update_path != "auto":
            return self.meta_update_path == "batched"
        return self.device.type == "cuda" or samples_per_task <= self.auto_batched_max_samples

    def meta_objective(self, params: Params, batch: MetaBatch, batched: bool,
                       valid: Data | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over tasks of the surrogate and of the KL (``valid`` overrides the batch's)."""
        losses, kls = map_tasks(self.task_objective,
                                (params, batch.train, batch.valid if valid is None else valid),
                                (None, 0, 0), batched)
        return losses.mean(), kls.mean()

    def _fvp_subset(self, valid: Data) -> Data | None:
        episodes = valid["masks"].shape[1]
        keep = max(1, math.ceil(self.fvp_subsample * episodes))
        if keep >= episodes:
            return None
        idx = torch.randperm(episodes)[:keep].sort().values.to(self.device)
        return {k: v if k == "old_log_std" else v.index_select(1, idx) for k, v in valid.items()}

    def meta_update(self, batch: MetaBatch, path: str | None = None) -> dict[str, float]:
        """One TRPO step on the meta-objective of ``batch`` (parameters updated in place)."""
        start = time.perf_counter()
        batched = (self.use_batched(batch.samples_per_task) if path is None
                   else path == "batched")
        params = get_params(self.policy)
        leaves = list(params.values())
        loss, kl = self.meta_objective(params, batch, batched)
        subset = self._fvp_subset(batch.valid)
        kl_fvp = kl if subset is None else self.meta_objective(params, batch, batched, subset)[1]

        def loss_kl() -> tuple[torch.Tensor, torch.Tensor]:
            return self.meta_objective(params, batch, batched)

        logs = trpo_update(leaves, loss, kl_fvp, loss_kl, self.trpo)
        logs["time/meta_update_s"] = time.perf_counter() - start
        logs["meta_update/path"] = 0.0 if batched else 1.0
        return logs

    def step(self, sampler: BatchedSampler, tasks: Sequence[Any]) -> dict[str, float]:
        """One meta-iteration: sample, adapt, sample, TRPO step. Returns namespaced logs."""
        batch = self.collect(sampler, tasks)
        logs = {**batch.logs, **self.meta_update(batch)}
        logs["policy/entropy"] = float(entropy(self.policy.log_std.detach()))
        self.iterations += 1
        return logs

    # ----------------------------------------------------------------------------------------
    # Evaluation and state
    # ----------------------------------------------------------------------------------------

    def adapt_and_evaluate(self, sampler: BatchedSampler, tasks: Sequence[Any],
                           inner_steps: int, inner_lr: float | None = None,
                           seed: int | None = None) -> np.ndarray:
        """Mean episode return per task after 0..``inner_steps`` inner steps, ``[K+1, T]``.

        Each step samples fresh episodes with the current adapted parameters and takes one
        inner step with ``inner_lr`` (default: ``eval_inner_lr``); 0 steps is NIL evaluation.
        """
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps}")
        lr = self.eval_inner_lr if inner_lr is None else float(inner_lr)
        check_finite("inner_lr", lr)
        gen = torch.Generator().manual_seed(_draw_seed() if seed is None else int(seed))
        params = self.stacked_params(len(tasks))
        batched = self.use_batched(sampler.episodes_per_task * sampler.horizon)
        returns = []
        for k in range(inner_steps + 1):
            episodes = sampler.sample(self.policy, params, tasks,
                                      int(torch.randint(2**31 - 1, (), generator=gen)))
            returns.append(episodes.returns_per_episode().mean(dim=1).cpu().double().numpy())
            if k < inner_steps:
                params = self.adapt_step(params, self.process(episodes)[0], lr, batched)
        return np.stack(returns)

    def state_dict(self) -> dict[str, Any]:
        """The policy's parameters and the iteration counter."""
        return {"policy": self.policy.state_dict(), "iterations": self.iterations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.policy.load_state_dict(state["policy"])
        self.iterations = int(state["iterations"])
