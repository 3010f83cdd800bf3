"""Few-shot classification on held-out classes: query accuracy after 0..K inner steps, and NIL.

The protocol of Finn et al. (2017, sec. 5.2): episodes from the meta-test classes (Omniglot's
423 test characters), the meta-learned parameters adapted to each support set, the accuracy
on its query set after every inner step; the mean over episodes (600 by default) with its
95% confidence interval.

Batch-norm at evaluation (``running``): with running statistics, each task normalises with
its own copy of the trained per-step rows, folding in its support set's statistics at each
inner step (momentum 0.1), as MAML++'s code updates them during an evaluation task before
restoring them; the copies are discarded, so the trained buffers are untouched by any task.
Without (``running=False``, MAML's and MAML++'s code), every forward normalises with the
batch's own statistics.

NIL (Raghu et al., 2020, "Rapid Learning or Feature Reuse?", sec. 5): no inner loop and no
head; a query is labelled by the support labels weighted by the softmax of the cosine
similarities of its body features to each support example's (Matching Networks' attention,
Vinyals et al., 2016). It takes no gradient.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from metarl.core import Params, PerStepLoss, Rule, detached, inner_step
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.conv4 import (
    BN_MOMENTUM,
    Conv4,
    accuracy_fn,
    cross_entropy_fn,
    forward_with_stats,
)
from metarl.supervised.data import classification_sampler, to_device
from metarl.supervised.episodes import EpisodeSampler
from metarl.supervised.fewshot import ClassificationMetaLearner
from metarl.supervised.tasks import Batch
from metarl.utils import mean_ci95

EVAL_CHUNK = 100  # episodes drawn and adapted at a time (fixes the episode sequence too)


def heldout_episodes(sampler: EpisodeSampler, tasks: int, seed: int,
                     chunk: int = EVAL_CHUNK) -> Iterator[tuple[Batch, Batch]]:
    """``tasks`` episodes from ``sampler``, ``chunk`` at a time, from one generator seeded
    ``seed`` (the same episodes whatever the device)."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, tasks, chunk):
        yield sampler.sample(min(chunk, tasks - start), generator)


def fold_row(old: torch.Tensor, stat: torch.Tensor, step: int,
             momentum: float = BN_MOMENTUM) -> torch.Tensor:
    """Row ``min(step, rows - 1)`` of ``old`` ``[rows, C]`` moved toward ``stat`` ``[C]``;
    functional (no in-place write), so it runs per task under vmap."""
    row = min(step, old.shape[0] - 1)
    mask = (torch.arange(old.shape[0], device=old.device) == row).to(old.dtype)[:, None]
    return old + mask * momentum * (stat - old)


def accuracy_curves(model: Conv4, params: Params, buffers: Params, support: Batch,
                    query: Batch, *, steps: int, rule: Rule, keys: Sequence[str],
                    running: bool) -> torch.Tensor:
    """Per-task query accuracy after 0..``steps`` inner steps, ``[T, steps + 1]``.

    Args:
        model: The Conv-4 (run functionally).
        params: Meta-parameters.
        buffers: Running statistics (used when ``running``).
        support: Support sets with a leading task dimension.
        query: Query sets likewise.
        steps: Inner steps.
        rule: Inner-lr rule or a scalar lr.
        keys: Adapted keys.
        running: Normalise with (per-task copies of) the running statistics.
    """
    start = {**detached(params), **(detached(buffers) if running else {})}
    loss = PerStepLoss(cross_entropy_fn(model, running_stats=running))
    accuracy = accuracy_fn(model, running_stats=running)

    def fold(p: Params, data: Batch, step: int) -> Params:
        if not running:
            return p
        _, stats = forward_with_stats(model, p, data["x"], step, False)
        return {**p, **{k: fold_row(p[k], v, step) for k, v in stats.items()}}

    def one_task(sup: Batch, qry: Batch) -> torch.Tensor:
        p, out = start, []
        for step in range(steps + 1):
            if step < steps:
                p = fold(p, sup, step)
            out.append(accuracy(p, qry, step))
            if step < steps:
                p = inner_step(p, loss, sup, step=step, rule=rule, keys=keys,
                               first_order=True)
        return torch.stack(out)

    with torch.no_grad():  # torch.func.grad inside inner_step ignores the outer no_grad
        result: torch.Tensor = torch.func.vmap(one_task)(support, query)
    return result


def nil_accuracy(model: Conv4, params: Params, buffers: Params, support: Batch,
                 query: Batch, *, ways: int, running: bool) -> torch.Tensor:
    """Per-task NIL query accuracy ``[T]`` (Raghu et al., 2020): cosine-similarity attention
    over the support examples' body features, no head, no inner loop, no gradient."""
    p = {**detached(params), **(detached(buffers) if running else {})}

    def body(x: torch.Tensor) -> torch.Tensor:
        features, _ = forward_with_stats(model, p, x, 0, running, body_only=True)
        return F.normalize(features, dim=-1)

    def one_task(sup: Batch, qry: Batch) -> torch.Tensor:
        similarity = body(qry["x"]) @ body(sup["x"]).T  # [Q, S] cosine similarities
        attention = similarity.softmax(dim=-1)
        scores = attention @ F.one_hot(sup["y"], ways).to(attention.dtype)  # [Q, N]
        return (scores.argmax(dim=-1) == qry["y"]).to(attention.dtype).mean()

    with torch.no_grad():
        result: torch.Tensor = torch.func.vmap(one_task)(support, query)
    return result


def summarize_accuracy(curves: torch.Tensor) -> dict[str, list[float]]:
    """Mean and 95% CI half-width over tasks of ``[T, K + 1]`` accuracies, per step."""
    values = curves.double().cpu().numpy()
    stats = [mean_ci95(values[:, k]) for k in range(values.shape[1])]
    return {"accuracy_mean": [m for m, _ in stats], "accuracy_ci95": [c for _, c in stats]}


def evaluate_classifier(cfg: SupervisedConfig, learner: ClassificationMetaLearner, *,
                        tasks: int, steps: int, inner_lr: float | None, seed: int,
                        iteration: int, nil: bool = False) -> dict[str, Any]:
    """Query accuracy after 0..``steps`` inner steps on ``tasks`` episodes of the test classes
    (mean and 95% CI per step); with ``nil``, NIL's accuracy too."""
    sampler = classification_sampler(cfg, "test")
    rule = learner.rule if inner_lr is None else inner_lr
    running, buffers = cfg.eval_running_stats, learner.buffers
    curves, nil_rows = [], []
    for support, query in heldout_episodes(sampler, tasks, seed):
        support, query = to_device(support, learner.device), to_device(query, learner.device)
        curves.append(accuracy_curves(learner.conv4, learner.params, buffers, support, query,
                                      steps=steps, rule=rule, keys=learner.keys,
                                      running=running))
        if nil:
            nil_rows.append(nil_accuracy(learner.conv4, learner.params, buffers, support,
                                         query, ways=cfg.ways, running=running))
    result: dict[str, Any] = {
        "metric": "accuracy", "iteration": iteration, "task": cfg.env_name, "algo": cfg.algo,
        "tasks": tasks, "ways": cfg.ways, "shots": cfg.shots,
        "queries": cfg.queries_per_class, "inner_steps": steps, "eval_seed": seed,
        "inner_lr": "training rule" if inner_lr is None else inner_lr,
        "bn_eval": "running" if running else "batch"}
    result.update(summarize_accuracy(torch.cat(curves)))
    result["final_accuracy"] = result["accuracy_mean"][-1]
    result["final_ci95"] = result["accuracy_ci95"][-1]
    if nil:
        result["nil_accuracy"], result["nil_ci95"] = mean_ci95(
            torch.cat(nil_rows).double().cpu().numpy())
    return result
