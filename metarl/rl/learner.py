"""MAML-TRPO and its relatives: any :class:`~metarl.core.MetaAlgorithm` with a TRPO outer step.

MAML-TRPO (Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks"): per task, inner vanilla-policy-gradient steps (linear feature baseline, GAE) on
pre-update episodes give adapted parameters; episodes sampled with them define the outer
objective, optimised by TRPO (Schulman et al., 2015) with Fisher-vector products taken through
the inner steps as the algorithm's estimator builds them (exactly for second order, around
them for first order). ANIL-TRPO (Raghu et al., 2020) adapts only the head (and optionally the
log-std); learned inner lrs (Meta-SGD, MAML++ LSLR) are meta-parameters TRPO updates with
the policy, or learn by bootstrapped meta-gradients instead (``bootstrap``: Flennerhag et
al., 2022; :mod:`metarl.core.bootstrap`), by Adam on a matching loss toward a target policy
while TRPO moves the policy with the rates held constant. With zero inner steps the learner
is plain multi-task TRPO and evaluation is NIL.

The meta-update maps tasks by ``torch.func.vmap`` (batched) or a Python loop; both give the
same step (tests check it), and ``meta_update_path="auto"`` times both on the first
meta-update of each batch size and keeps the faster (:class:`metarl.core.PathChooser`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metarl.core import (
    ALGORITHMS,
    InnerLR,
    MetaAlgorithm,
    Params,
    PathChooser,
    Rule,
    TaskProblem,
    adapt_keys,
    check_finite,
    get_params,
    map_tasks,
)
from metarl.core.bootstrap import BootstrapOptions, FrozenLR, bootstrapped_lr_loss
from metarl.rl.collect import Collector, Data, MetaBatch
from metarl.rl.policy import GaussianMLPPolicy, entropy, kl_divergence, log_prob
from metarl.rl.sampler import Sampler
from metarl.rl.trpo import (
    TrpoConfig,
    fisher_vector_product,
    flat_grad,
    skipped_logs,
    trpo_update,
)
from metarl.utils import draw_seed

MAML = ALGORITHMS["maml"]


@dataclass(frozen=True)
class Adaptation:
    """Per inner step ``k`` and task ``t``: the mean return ``returns[k, t]`` and, for envs
    reporting ``info["success"]`` (Meta-World), the success rate ``success[k, t]``."""

    returns: np.ndarray
    success: np.ndarray | None = None
DEFAULT_TRPO = TrpoConfig()


def _check_args(inner_steps: int, fvp_subsample: float, gamma: float, gae_lambda: float,
                inner_lr: float, eval_inner_lr: float | None) -> None:
    if inner_steps < 0:
        raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps}")
    if not 0.0 < fvp_subsample <= 1.0:
        raise ValueError(f"fvp_subsample must be in (0, 1], got {fvp_subsample}")
    for name, value in (("gamma", gamma), ("gae_lambda", gae_lambda)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    check_finite("inner_lr", inner_lr)
    if eval_inner_lr is not None:
        check_finite("eval_inner_lr", eval_inner_lr)


class TrpoMetaLearner:
    """A meta-algorithm over a :class:`GaussianMLPPolicy` with an outer TRPO step.

    Args:
        policy: The policy; its parameters are meta-parameters (moved to ``device``).
        algorithm: Adapted keys, inner-lr rule and estimator (``ALGORITHMS[name]``).
        inner_lr: Training inner lr (any finite sign); the initial value of learned rates.
        eval_inner_lr: Default evaluation inner lr (any finite sign); ``None``: the training
            rule (learned rates included).
        inner_steps: Inner steps during training (each on fresh episodes).
        adapt_log_std: Adapt the log-std in the inner loop with the other adapted keys.
        gamma: Discount factor.
        gae_lambda: GAE lambda.
        trpo: The TRPO constants.
        fvp_subsample: Fraction of each task's post-update episodes used in the
            Fisher-vector products (rllab's subsampling), in (0, 1].
        meta_update_path: ``auto`` (time both, keep the faster), ``batched`` or ``loop``.
        device: Device of the policy and the meta-update (the envs stay on the CPU).
        timer: The clock ``auto`` times the paths with (tests inject a fake one).
        bootstrap: Learn the inner lrs by bootstrapped meta-gradients toward this target
            (needs learned rates); ``None``: TRPO moves them with the policy.
        bmg_lr: Adam lr of the rates under ``bootstrap``.
    """

    def __init__(self, policy: GaussianMLPPolicy, *, algorithm: MetaAlgorithm = MAML,
                 inner_lr: float = 0.1, eval_inner_lr: float | None = None,
                 inner_steps: int = 1, adapt_log_std: bool = True, gamma: float = 0.99,
                 gae_lambda: float = 1.0, trpo: TrpoConfig = DEFAULT_TRPO,
                 fvp_subsample: float = 1.0, meta_update_path: str = "auto",
                 device: torch.device | str = "cpu",
                 timer: Callable[[], float] = time.perf_counter,
                 bootstrap: BootstrapOptions | None = None, bmg_lr: float = 1e-3) -> None:
        _check_args(inner_steps, fvp_subsample, gamma, gae_lambda, inner_lr, eval_inner_lr)
        if algorithm.outer != "default":
            raise ValueError(f"outer must be 'default' for meta-RL (its outer step is TRPO), "
                             f"got {algorithm.outer!r}")
        self.algorithm, self.trpo = algorithm, trpo
        self.device = torch.device(device)
        self.policy = policy.to(self.device)
        self.keys = self._adapted_keys(adapt_log_std)
        dtype = next(self.policy.parameters()).dtype
        self.rule = InnerLR(self.keys, inner_steps, inner_lr,
                            algorithm.lr_kind if inner_steps > 0 else "fixed").to(self.device,
                                                                                   dtype)
        self.eval_inner_lr = eval_inner_lr
        self.inner_steps = inner_steps
        self.fvp_subsample = fvp_subsample
        self.paths = PathChooser(meta_update_path, timer=timer)
        self.collector = Collector(self.policy, self.keys, gamma=gamma, gae_lambda=gae_lambda,
                                   device=self.device)
        self.iterations = 0
        self.bootstrap = bootstrap
        # Under BMG the TRPO objective sees the rates as constants; they learn from the target.
        self.objective_rule: InnerLR = self.rule
        self.rate_optimizer: torch.optim.Optimizer | None = None
        if bootstrap is not None:
            if not self.rule.learned:
                raise ValueError(f"bootstrap (inner_lr_meta 'bmg') needs learned inner lrs "
                                 f"(lr_kind per_tensor or per_step), got "
                                 f"{self.rule.kind!r}")
            check_finite("bmg_lr", bmg_lr)
            if bmg_lr <= 0:
                raise ValueError(f"bmg_lr must be a finite number > 0, got {bmg_lr}")
            self.objective_rule = FrozenLR(self.rule)
            self.rate_optimizer = torch.optim.Adam(self.rule.parameters(), lr=bmg_lr)

    def _adapted_keys(self, adapt_log_std: bool) -> tuple[str, ...]:
        params = get_params(self.policy)
        keys = [k for k in adapt_keys(params, self.algorithm.adapt) if k != "log_std"]
        if adapt_log_std and self.algorithm.adapt != "none":
            keys.append("log_std")
        return tuple(k for k in params if k in keys)

    def meta_parameters(self) -> list[torch.Tensor]:
        """What TRPO updates: the policy's parameters and any learned inner lrs (not under
        BMG, which moves the rates itself)."""
        rates = [] if self.bootstrap is not None else list(self.rule.parameters())
        leaves: list[torch.Tensor] = [*self.policy.parameters(), *rates]
        return leaves

    # ----------------------------------------------------------------------------------------
    # Per-task pure functions (run under vmap or in the loop)
    # ----------------------------------------------------------------------------------------

    def surrogate(self, params: Params, valid: Data) -> torch.Tensor:
        """One task's TRPO surrogate ``-mean_t r_t(theta') A_t`` on its post-update data."""
        mean, log_std = self.policy.dist_params(params, valid["obs"])
        ratio = torch.exp(log_prob(mean, log_std, valid["actions"]) - valid["old_log_prob"])
        masks = valid["masks"]
        return -(ratio * valid["advantages"] * masks).sum() / masks.sum().clamp_min(1.0)

    def mean_kl(self, params: Params, valid: Data) -> torch.Tensor:
        """One task's mean ``KL(old || theta')`` over its valid post-update steps."""
        mean, log_std = self.policy.dist_params(params, valid["obs"])
        kl = kl_divergence(valid["old_mean"], valid["old_log_std"], mean, log_std)
        masks = valid["masks"]
        return (kl * masks).sum() / masks.sum().clamp_min(1.0)

    def task_objective(self, params: Params, train: Sequence[Data],
                       valid: Data) -> tuple[torch.Tensor, torch.Tensor]:
        """One task's surrogate and mean KL at the parameters adapted from ``params``, with
        the graph (and the surrogate's gradient) the algorithm's estimator gives."""
        problem = TaskProblem(self.collector.inner_loss, train, self.surrogate, valid,
                              self.objective_rule, self.keys)
        estimator = self.algorithm.estimator
        trajectory = estimator.trajectory(params, problem)
        loss = estimator.outer_loss(params, trajectory, len(train), problem)
        return loss, self.mean_kl(trajectory[-1], valid)

    # ----------------------------------------------------------------------------------------
    # Collecting a meta-batch
    # ----------------------------------------------------------------------------------------

    def stacked_params(self, num_tasks: int) -> Params:
        """The meta-parameters (detached) expanded to ``[T, ...]`` without copying."""
        return {k: v.detach().expand(num_tasks, *v.shape)
                for k, v in get_params(self.policy).items()}

    def _sampling_vectorize(self, num_tasks: int, samples_per_task: int) -> bool:
        known = self.paths.known((num_tasks, samples_per_task))
        return True if known is None else known

    def collect(self, sampler: Sampler, tasks: Sequence[Any]) -> MetaBatch:
        """Pre-update episodes, inner steps, post-update episodes: the data of one update."""
        vectorize = self._sampling_vectorize(len(tasks), sampler.episodes_per_task *
                                             sampler.horizon)
        return self.collector.collect(sampler, self.stacked_params(len(tasks)), tasks,
                                      inner_steps=self.inner_steps, rule=self.rule,
                                      vectorize=vectorize)

    # ----------------------------------------------------------------------------------------
    # The meta-update
    # ----------------------------------------------------------------------------------------

    def meta_objective(self, params: Params, batch: MetaBatch, vectorize: bool,
                       valid: Data | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean over tasks of the surrogate and of the KL (``valid`` overrides the batch's)."""
        losses, kls = map_tasks(self.task_objective,
                                (params, batch.train, batch.valid if valid is None else valid),
                                (None, 0, 0), vectorize)
        return losses.mean(), kls.mean()

    def _fvp_subset(self, valid: Data) -> Data | None:
        episodes = valid["masks"].shape[1]
        keep = max(1, math.ceil(self.fvp_subsample * episodes))
        if keep >= episodes:
            return None
        idx = torch.randperm(episodes)[:keep].sort().values.to(self.device)
        return {k: v if k == "old_log_std" else v.index_select(1, idx) for k, v in valid.items()}

    def _probe(self, batch: MetaBatch, vectorize: bool) -> None:
        """What ``auto`` times per path: the objective, its gradient and one Fisher product."""
        leaves = self.meta_parameters()
        loss, kl = self.meta_objective(get_params(self.policy), batch, vectorize)
        grad = flat_grad(loss, leaves, retain_graph=True)
        fisher_vector_product(kl, leaves, self.trpo.cg_damping)(grad)

    def choose_path(self, batch: MetaBatch) -> tuple[bool, dict[str, float]]:
        """Whether the meta-update of ``batch`` vectorises, and the ``meta_update/*`` logs."""
        key = (batch.num_tasks, batch.samples_per_task)
        probed = self.paths.path == "auto" and self.paths.known(key) is None
        vectorize = self.paths.vectorize(key, lambda v: self._probe(batch, v))
        logs = {"meta_update/path": 0.0 if vectorize else 1.0,
                "meta_update/probed": float(probed)}
        for name, seconds in self.paths.choices.get(key, {}).items():
            if name.endswith("_s"):
                logs[f"meta_update/probe_{name}"] = seconds
        return vectorize, logs

    def meta_update(self, batch: MetaBatch, path: str | None = None) -> dict[str, float]:
        """One TRPO step on the meta-objective of ``batch`` (parameters updated in place).

        ``path`` forces ``batched`` or ``loop`` for this call; otherwise the learner's choice.
        """
        start = time.perf_counter()
        if path is None:
            vectorize, path_logs = self.choose_path(batch)
        else:
            vectorize, path_logs = path == "batched", {"meta_update/path": float(path == "loop")}
        params = get_params(self.policy)
        loss, kl = self.meta_objective(params, batch, vectorize)
        subset = self._fvp_subset(batch.valid)
        kl_fvp = kl if subset is None else self.meta_objective(params, batch, vectorize,
                                                               subset)[1]

        def loss_kl() -> tuple[torch.Tensor, torch.Tensor]:
            return self.meta_objective(params, batch, vectorize)

        logs = trpo_update(self.meta_parameters(), loss, kl_fvp, loss_kl, self.trpo)
        logs["time/meta_update_s"] = time.perf_counter() - start
        logs.update(path_logs)
        return logs

    def policy_distribution(self, params: Params,
                            valid: Data) -> torch.distributions.Distribution:
        """The policy ``params`` gives on one task's post-update observations (BMG's ``kl``)."""
        mean, log_std = self.policy.dist_params(params, valid["obs"])
        return torch.distributions.Normal(mean, torch.exp(log_std).expand_as(mean),
                                          validate_args=False)

    def bootstrap_gradients(self, batch: MetaBatch,
                            vectorize: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """BMG's matching loss over the meta-batch and its gradient w.r.t. the rates.

        Per task the adapted policy is the inner steps from the (constant) meta-parameters
        on the first inner step's episodes; the target takes ``L - 1`` more inner steps on
        them and one plain gradient step on the post-update surrogate (no gradient through
        it); the rates move the adapted policy toward it (``kl``: KL(target || adapted) on
        the post-update observations, unmasked).
        """
        assert self.bootstrap is not None
        match = bootstrapped_lr_loss(
            get_params(self.policy), self.collector.inner_loss, batch.train[0], batch.valid,
            steps=self.inner_steps, rule=self.rule, keys=self.keys, options=self.bootstrap,
            query_loss=self.surrogate, distribution=self.policy_distribution,
            vectorize=vectorize)
        grads = torch.autograd.grad(match, list(self.rule.parameters()))
        return match.detach(), list(grads)

    def _apply_rate_gradients(self, grads: list[torch.Tensor]) -> bool:
        """One Adam step of the rates on BMG's gradients; skipped (False) when non-finite."""
        assert self.rate_optimizer is not None
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            return False
        for p, g in zip(self.rule.parameters(), grads, strict=True):
            p.grad = g
        self.rate_optimizer.step()
        self.rate_optimizer.zero_grad(set_to_none=True)
        return True

    def step(self, sampler: Sampler, tasks: Sequence[Any]) -> dict[str, float]:
        """One meta-iteration: sample, adapt, sample, TRPO step. Returns namespaced logs.

        Episodes holding a non-finite observation or reward (``data/nonfinite_steps``) skip
        the TRPO step at once, as a non-finite loss or gradient does inside it. Under BMG the
        rates' gradient is taken at the same point as TRPO's, and applied after it.
        """
        batch = self.collect(sampler, tasks)
        bmg: dict[str, float] = {}
        if batch.logs["data/nonfinite_steps"] > 0:
            update = {**skipped_logs(math.nan), "time/meta_update_s": 0.0}
        else:
            rate_grads = None
            if self.bootstrap is not None:
                match, rate_grads = self.bootstrap_gradients(
                    batch, self._sampling_vectorize(batch.num_tasks, batch.samples_per_task))
                bmg["inner/bmg_match"] = float(match)
            update = self.meta_update(batch)
            if rate_grads is not None:
                bmg["inner/bmg_skipped"] = float(not self._apply_rate_gradients(rate_grads))
        update.update(bmg)
        logs = {**batch.logs, **update}
        logs["policy/entropy"] = float(entropy(self.policy.log_std.detach()))
        if self.rule.learned:
            logs["inner/lr_mean"] = float(self.rule.lrs.detach().mean())
        self.iterations += 1
        return logs

    # ----------------------------------------------------------------------------------------
    # Evaluation and state
    # ----------------------------------------------------------------------------------------

    def eval_rule(self, inner_lr: float | None) -> Rule:
        """The evaluation inner-lr rule: ``inner_lr``, else ``eval_inner_lr``, else training's."""
        lr = self.eval_inner_lr if inner_lr is None else inner_lr
        return self.rule if lr is None else float(lr)

    def adapt_and_evaluate(self, sampler: Sampler, tasks: Sequence[Any],
                           inner_steps: int, inner_lr: float | None = None,
                           seed: int | None = None) -> np.ndarray:
        """Mean episode return per task after 0..``inner_steps`` inner steps, ``[K+1, T]``
        (:meth:`adaptation`'s returns)."""
        return self.adaptation(sampler, tasks, inner_steps, inner_lr, seed).returns

    def adaptation(self, sampler: Sampler, tasks: Sequence[Any], inner_steps: int,
                   inner_lr: float | None = None, seed: int | None = None) -> Adaptation:
        """Mean return (and success rate, where the env reports one) per task after
        0..``inner_steps`` inner steps.

        Each step samples fresh episodes with the current adapted parameters and takes one
        inner step with :meth:`eval_rule`; 0 steps is NIL evaluation.
        """
        if inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps}")
        if inner_lr is not None:
            check_finite("inner_lr", inner_lr)
        rule = self.eval_rule(inner_lr)
        gen = torch.Generator().manual_seed(draw_seed() if seed is None else int(seed))
        params = self.stacked_params(len(tasks))
        vectorize = self._sampling_vectorize(len(tasks), sampler.episodes_per_task *
                                             sampler.horizon)
        returns, success = [], []
        for k in range(inner_steps + 1):
            episodes = sampler.sample(self.policy, params, tasks, draw_seed(gen))
            returns.append(episodes.returns_per_episode().mean(dim=1).cpu().double().numpy())
            if episodes.success is not None:
                success.append(episodes.success.mean(dim=1).cpu().double().numpy())
            if k < inner_steps:
                data = self.collector.process(episodes)[0]
                params = self.collector.adapt_step(params, data, k, rule, vectorize)
        return Adaptation(np.stack(returns), np.stack(success) if success else None)

    def state_dict(self) -> dict[str, Any]:
        """The policy, the inner-lr rule, the path choices and the iteration counter."""
        state = {"policy": self.policy.state_dict(),
                 "rule": self.rule.state_dict(), "paths": self.paths.state_dict(),
                 "iterations": self.iterations}
        if self.rate_optimizer is not None:
            state["rate_optimizer"] = self.rate_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; a checkpoint from before the meta-algorithm seam (format
        1: policy and iterations only) loads with the configured fixed rule."""
        self.policy.load_state_dict(state["policy"])
        if "rule" in state:
            self.rule.load_state_dict(state["rule"])
        elif self.rule.learned:
            raise ValueError("checkpoint is from an older metarl (format 1) and holds no "
                             "learned inner lrs; it cannot resume a learned-lr algorithm")
        if "paths" in state:
            self.paths.load_state_dict(state["paths"])
        if self.rate_optimizer is not None and "rate_optimizer" in state:
            self.rate_optimizer.load_state_dict(state["rate_optimizer"])
        self.iterations = int(state["iterations"])
