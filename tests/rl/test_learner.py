"""MAML-TRPO / ANIL-TRPO learner on the real Navigation2D vector env."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from metarl.core import ALGORITHMS, get_params
from metarl.envs.batched import make_batched
from metarl.rl.collect import MetaBatch
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler, Episodes
from metarl.rl.trpo import TrpoConfig, fisher_vector_product, flat_grad
from metarl.runs import load_checkpoint, save_checkpoint
from metarl.utils import seed_everything

T, E, H = 4, 5, 16


TRPO_FIELDS = ("max_kl", "cg_iters", "cg_damping", "ls_steps", "ls_ratio")


def _learner(seed: int = 0, algo: str = "maml", **kwargs: object) -> TrpoMetaLearner:
    torch.manual_seed(seed)
    policy = GaussianMLPPolicy(2, 2, hidden=(16, 16)).double()
    trpo = TrpoConfig(**{k: kwargs.pop(k) for k in TRPO_FIELDS if k in kwargs})  # type: ignore[arg-type]
    kwargs = {"inner_lr": 0.5, "meta_update_path": "batched", **kwargs}
    return TrpoMetaLearner(policy, algorithm=ALGORITHMS[algo], trpo=trpo,
                           **kwargs)  # type: ignore[arg-type]


def _sampler(tasks: int = T, episodes: int = E, horizon: int = H) -> BatchedSampler:
    return BatchedSampler(make_batched("Navigation2D", tasks * episodes, horizon=horizon,
                                       seed=0), episodes, "cpu")


def _batch(learner: TrpoMetaLearner, seed: int = 0) -> MetaBatch:
    sampler = _sampler()
    torch.manual_seed(seed)
    return learner.collect(sampler, sampler.env.sample_tasks(T))


def _flat(learner: TrpoMetaLearner) -> torch.Tensor:
    return parameters_to_vector(learner.policy.parameters()).detach().clone()


@pytest.mark.parametrize(("subsample", "inner_steps"), [(1.0, 1), (0.6, 2)])
def test_batched_and_loop_meta_updates_take_the_same_step(subsample: float,
                                                          inner_steps: int) -> None:
    # Damping 1e-2 keeps CG well conditioned, so float64 round-off (summation order differs
    # between the paths) is not amplified past 1e-8; the products themselves agree to 1e-10.
    learner = _learner(fvp_subsample=subsample, inner_steps=inner_steps, cg_damping=1e-2,
                       cg_iters=4)
    batch = _batch(learner)
    twin = copy.deepcopy(learner)
    before = _flat(learner)
    torch.manual_seed(1)
    logs_b = learner.meta_update(batch, path="batched")
    torch.manual_seed(1)
    logs_l = twin.meta_update(batch, path="loop")
    assert logs_b["meta_update/path"] == 0.0 and logs_l["meta_update/path"] == 1.0
    assert logs_b["trpo/accepted"] == 1.0
    step_b, step_l = _flat(learner) - before, _flat(twin) - before
    assert float(step_b.norm()) > 1e-4
    assert float((step_b - step_l).norm()) <= 1e-8 * float(step_b.norm())
    for key in ("trpo/surrogate_before", "trpo/surrogate_after", "trpo/kl", "trpo/ls_steps"):
        assert math.isclose(logs_b[key], logs_l[key], rel_tol=1e-6, abs_tol=1e-12)


def test_batched_and_loop_give_the_same_gradient_and_fisher_products() -> None:
    learner = _learner()
    batch = _batch(learner)
    params = get_params(learner.policy)
    leaves = list(params.values())
    v = torch.randn(sum(p.numel() for p in leaves), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(2))
    out = []
    for batched in (True, False):
        loss, kl = learner.meta_objective(params, batch, batched)
        out.append((loss.detach(), flat_grad(loss, leaves, retain_graph=True),
                    fisher_vector_product(kl, leaves, 0.0)(v)))
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _directional_fd(fn, params: dict[str, torch.Tensor], direction: dict[str, torch.Tensor],
                    eps: float = 1e-5) -> float:
    with torch.no_grad():
        plus = {k: v + eps * direction[k] for k, v in params.items()}
        minus = {k: v - eps * direction[k] for k, v in params.items()}
        return float((fn(plus) - fn(minus)) / (2 * eps))


def test_second_order_meta_gradient_matches_finite_differences() -> None:
    learner = _learner()
    batch = _batch(learner)
    params = {k: v.detach().clone().requires_grad_(True)
              for k, v in get_params(learner.policy).items()}
    loss, _ = learner.meta_objective(params, batch, vectorize=True)
    grads = torch.autograd.grad(loss, list(params.values()))
    gen = torch.Generator().manual_seed(0)
    direction = {k: torch.randn(v.shape, generator=gen, dtype=v.dtype) for k, v in params.items()}
    analytic = sum(float((g * direction[k]).sum()) for g, k in zip(grads, params, strict=True))
    numeric = _directional_fd(lambda p: learner.meta_objective(p, batch, True)[0], params,
                              direction)
    assert math.isclose(analytic, numeric, rel_tol=1e-6)
    # The first-order gradient differs: the test sees the second-order term.
    learner.algorithm = ALGORITHMS["fomaml"]
    loss_fo, _ = learner.meta_objective(params, batch, vectorize=True)
    grads_fo = torch.autograd.grad(loss_fo, list(params.values()))
    first = sum(float((g * direction[k]).sum()) for g, k in zip(grads_fo, params, strict=True))
    assert not math.isclose(first, numeric, rel_tol=1e-3)


def test_fvp_through_the_inner_step_matches_finite_differences_of_kl_gradient() -> None:
    learner = _learner()
    batch = _batch(learner)
    params = get_params(learner.policy)
    leaves = list(params.values())
    _, kl = learner.meta_objective(params, batch, vectorize=True)
    assert abs(float(kl.detach())) < 1e-12  # the old policy is the adapted current policy
    fvp = fisher_vector_product(kl, leaves, damping=0.0)
    v = torch.randn(sum(p.numel() for p in leaves), dtype=torch.float64,
                    generator=torch.Generator().manual_seed(1))
    eps, x0 = 1e-5, parameters_to_vector(leaves).detach().clone()

    def kl_grad_at(x: torch.Tensor) -> torch.Tensor:
        torch.nn.utils.vector_to_parameters(x, leaves)
        return flat_grad(learner.meta_objective(params, batch, True)[1], leaves)

    numeric = (kl_grad_at(x0 + eps * v) - kl_grad_at(x0 - eps * v)) / (2 * eps)
    torch.nn.utils.vector_to_parameters(x0, leaves)
    torch.testing.assert_close(fvp(v), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("adapt_log_std", [False, True])
def test_anil_adapts_only_head_keys(adapt_log_std: bool) -> None:
    learner = _learner(algo="anil", adapt_log_std=adapt_log_std)
    expected = ("head.weight", "head.bias") + (("log_std",) if adapt_log_std else ())
    assert set(learner.keys) == set(expected)
    batch = _batch(learner)
    params = learner.stacked_params(T)
    new = learner.collector.adapt_step(params, batch.train[0], 0, 0.5, vectorize=True)
    for k, v in params.items():
        if k in expected:
            assert not torch.equal(new[k], v), k
        else:
            assert torch.equal(new[k], v), k
    maml = _learner(adapt_log_std=False)
    assert "log_std" not in maml.keys and "body.0.weight" in maml.keys


class PoisonedSampler(BatchedSampler):
    """Real sampling, then one NaN reward in the post-update episodes (fault injection)."""

    def sample(self, policy, params_per_task, tasks, seed=None) -> Episodes:  # type: ignore[no-untyped-def]
        ep = super().sample(policy, params_per_task, tasks, seed)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 2:
            ep.rewards[1, 2, 3] = float("nan")
        return ep


def test_nonfinite_meta_update_is_skipped_and_parameters_stay_bit_identical() -> None:
    learner = _learner()
    before = {k: v.detach().clone() for k, v in learner.policy.state_dict().items()}
    sampler = PoisonedSampler(make_batched("Navigation2D", T * E, horizon=H, seed=0), E, "cpu")
    logs = learner.step(sampler, sampler.env.sample_tasks(T))
    assert logs["trpo/nonfinite_skipped"] == 1.0 and logs["trpo/accepted"] == 0.0
    for k, v in learner.policy.state_dict().items():
        assert torch.equal(v, before[k]), k


def _train(seed: int, iterations: int, **kwargs: object) -> tuple[TrpoMetaLearner, list[dict]]:
    seed_everything(seed)
    learner = _learner(seed, **kwargs)
    sampler = _sampler()
    tasks = sampler.env.sample_tasks(T)
    return learner, [learner.step(sampler, tasks) for _ in range(iterations)]


def test_training_is_deterministic_and_checkpoint_round_trips(tmp_path: Path) -> None:
    a, logs_a = _train(3, 2, cg_iters=3)
    b, logs_b = _train(3, 2, cg_iters=3)
    assert torch.equal(_flat(a), _flat(b))
    for la, lb in zip(logs_a, logs_b, strict=True):
        assert {k: v for k, v in la.items() if not k.startswith("time/")} == \
               {k: v for k, v in lb.items() if not k.startswith("time/")}
    path = save_checkpoint(tmp_path, 2, {"learner": a.state_dict()})
    fresh = _learner(99)
    fresh.load_state_dict(load_checkpoint(path)["learner"])
    assert torch.equal(_flat(fresh), _flat(a)) and fresh.iterations == 2


def test_adapt_and_evaluate_shape_nil_and_adaptation() -> None:
    learner = _learner(eval_inner_lr=0.5)
    sampler = _sampler()
    tasks = sampler.env.sample_tasks(T)
    curve = learner.adapt_and_evaluate(sampler, tasks, inner_steps=2, seed=5)
    assert curve.shape == (3, T) and np.isfinite(curve).all()
    again = learner.adapt_and_evaluate(sampler, tasks, inner_steps=2, seed=5)
    np.testing.assert_array_equal(curve, again)
    nil = learner.adapt_and_evaluate(sampler, tasks, inner_steps=0, seed=5)
    np.testing.assert_array_equal(nil[0], curve[0])
    frozen = learner.adapt_and_evaluate(sampler, tasks, inner_steps=2, inner_lr=0.0, seed=5)
    np.testing.assert_array_equal(frozen[0], curve[0])
    assert not np.array_equal(frozen[1], curve[1])  # the eval lr is the one given


class FakeClock:
    """A timer the test scripts: each probe run of the batched path takes ``batched_s``."""

    def __init__(self, batched_s: float, loop_s: float) -> None:
        self.now, self.costs = 0.0, {True: batched_s, False: loop_s}

    def __call__(self) -> float:
        return self.now


def test_auto_path_times_both_and_keeps_the_faster() -> None:
    clock = FakeClock(batched_s=2.0, loop_s=0.5)
    learner = _learner(meta_update_path="auto", timer=clock)
    probes: list[bool] = []

    def probe(batch: MetaBatch, vectorize: bool) -> None:  # the real probe, timed by the fake
        probes.append(vectorize)
        clock.now += clock.costs[vectorize]

    learner._probe = probe  # type: ignore[method-assign]
    batch = _batch(learner)
    logs = learner.meta_update(batch)
    assert probes == [True, True, False, False]  # two timed runs per path
    assert logs["meta_update/path"] == 1.0 and logs["meta_update/probed"] == 1.0
    assert logs["meta_update/probe_batched_s"] == 2.0 and logs["meta_update/probe_loop_s"] == 0.5
    again = learner.meta_update(batch)  # same size: no new probe
    assert probes == [True, True, False, False] and again["meta_update/probed"] == 0.0
    assert again["meta_update/path"] == 1.0
    clock.costs = {True: 0.1, False: 3.0}  # another batch size: re-checked
    small = _batch_of(learner, tasks=2)
    assert learner.meta_update(small)["meta_update/path"] == 0.0 and len(probes) == 8
    restored = _learner(meta_update_path="auto")
    restored.load_state_dict(learner.state_dict())  # the choices travel in checkpoints
    assert restored.paths.known((T, E * H)) is False and restored.paths.known((2, E * H))
    forced = _learner(meta_update_path="batched", timer=clock)
    forced._probe = probe  # type: ignore[method-assign]
    assert forced.meta_update(batch)["meta_update/path"] == 0.0 and len(probes) == 8


def _batch_of(learner: TrpoMetaLearner, tasks: int) -> MetaBatch:
    sampler = _sampler(tasks=tasks)
    return learner.collect(sampler, sampler.env.sample_tasks(tasks))


def test_bad_arguments_name_the_field() -> None:
    for kwargs, field in (({"meta_update_path": "x"}, "meta_update_path"),
                          ({"fvp_subsample": 0.0}, "fvp_subsample"),
                          ({"inner_lr": math.nan}, "inner_lr"), ({"max_kl": 0.0}, "max_kl"),
                          ({"inner_steps": -1}, "inner_steps"), ({"ls_ratio": 1.0}, "ls_ratio")):
        with pytest.raises(ValueError, match=field):
            _learner(**kwargs)


def test_maml_trpo_improves_the_meta_objective() -> None:
    learner, logs = _train(0, 8, max_kl=0.05)
    post = [log["adapt/return_step1"] for log in logs]
    assert all(log["trpo/nonfinite_skipped"] == 0.0 for log in logs)
    assert np.mean(post[-2:]) > np.mean(post[:2]) + 1.0, post


@pytest.mark.parametrize("algo", ["metasgd", "lslr"])
def test_learned_inner_lrs_are_meta_parameters_under_trpo(algo: str) -> None:
    learner = _learner(algo=algo, inner_steps=2, max_kl=0.05)
    assert learner.rule.learned and learner.rule.lrs.shape[0] == (2 if algo == "lslr" else 1)
    batch = _batch(learner)
    params = get_params(learner.policy)
    loss, _ = learner.meta_objective(params, batch, vectorize=True)
    (grad,) = torch.autograd.grad(loss, [learner.rule.lrs])
    # d loss / d lr[row, key] against central differences of the meta-objective
    row, col = grad.shape[0] - 1, 0
    eps = 1e-6
    with torch.no_grad():
        base = learner.rule.lrs[row, col].item()
        values = []
        for sign in (1.0, -1.0):
            learner.rule.lrs[row, col] = base + sign * eps
            values.append(float(learner.meta_objective(params, batch, vectorize=True)[0]))
        learner.rule.lrs[row, col] = base
    assert math.isclose(float(grad[row, col]), (values[0] - values[1]) / (2 * eps),
                        rel_tol=1e-5, abs_tol=1e-9)
    before = learner.rule.lrs.detach().clone()
    logs = learner.meta_update(batch)
    assert logs["trpo/accepted"] == 1.0
    assert not torch.equal(learner.rule.lrs.detach(), before)  # TRPO moved the rates
    restored = _learner(algo=algo, inner_steps=2)
    restored.load_state_dict(learner.state_dict())
    assert torch.equal(restored.rule.lrs, learner.rule.lrs)


def test_checkpoints_from_before_the_seam_load_or_say_why() -> None:
    old = {"policy": _learner(5).policy.state_dict(), "iterations": 7}  # format 1
    fresh = _learner()
    fresh.load_state_dict(old)
    assert fresh.iterations == 7 and torch.equal(_flat(fresh), _flat(_learner(5)))
    with pytest.raises(ValueError, match="older metarl"):
        _learner(algo="metasgd").load_state_dict(old)


def test_evaluation_uses_the_learned_rule_by_default() -> None:
    learner = _learner(algo="metasgd")
    sampler = _sampler()
    tasks = sampler.env.sample_tasks(T)
    for rate in (0.0, 0.3):
        with torch.no_grad():
            learner.rule.lrs.fill_(rate)  # the learned rates, as a trained run holds them
        by_rule = learner.adapt_and_evaluate(sampler, tasks, inner_steps=1, seed=3)
        by_value = learner.adapt_and_evaluate(sampler, tasks, inner_steps=1, inner_lr=rate,
                                              seed=3)
        np.testing.assert_allclose(by_rule, by_value, rtol=1e-10)
    frozen = learner.adapt_and_evaluate(sampler, tasks, inner_steps=1, inner_lr=0.0, seed=3)
    assert not np.allclose(by_rule[1], frozen[1])  # the rule's 0.3 was used, not 0
