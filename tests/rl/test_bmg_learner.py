"""Bootstrapped meta-gradients for the RL learner's learned inner lrs (--inner-lr-meta bmg):
the K = L = 1 identity on real Navigation2D episodes, TRPO leaving the rates alone, Adam
moving them, checkpoints, and the options validated before any work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from metarl.core import ALGORITHMS, get_params
from metarl.core.bootstrap import BootstrapOptions
from metarl.envs.batched import make_batched
from metarl.rl.config import TrainConfig
from metarl.rl.learner import TrpoMetaLearner
from metarl.rl.policy import GaussianMLPPolicy
from metarl.rl.sampler import BatchedSampler

T, E, H = 3, 4, 12


def _learner(algo: str = "metasgd", **kwargs: object) -> TrpoMetaLearner:
    torch.manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(16,)).double()
    return TrpoMetaLearner(policy, algorithm=ALGORITHMS[algo], inner_lr=0.3,
                           meta_update_path="batched", **kwargs)  # type: ignore[arg-type]


def _sampler() -> BatchedSampler:
    return BatchedSampler(make_batched("Navigation2D", T * E, horizon=H, seed=0), E, "cpu")


@pytest.mark.parametrize("algo", ["metasgd", "lslr"])
def test_squared_k1_l1_rate_gradient_is_step_times_the_meta_gradient(algo: str) -> None:
    step = 0.37
    bmg = _learner(algo, bootstrap=BootstrapOptions(1, step, "squared"))
    plain = _learner(algo)
    sampler = _sampler()
    torch.manual_seed(1)
    batch = bmg.collect(sampler, sampler.env.sample_tasks(T))
    _, grads = bmg.bootstrap_gradients(batch, vectorize=True)
    loss, _ = plain.meta_objective(get_params(plain.policy), batch, vectorize=True)
    reference = torch.autograd.grad(loss, list(plain.rule.parameters()))
    for g, r in zip(grads, reference, strict=True):
        assert float(r.abs().max()) > 1e-6
        torch.testing.assert_close(g, step * r, rtol=1e-9, atol=1e-12)
    _, loop = bmg.bootstrap_gradients(batch, vectorize=False)  # the per-task loop agrees
    for g, l_ in zip(grads, loop, strict=True):
        torch.testing.assert_close(g, l_, rtol=1e-9, atol=1e-12)


def test_trpo_moves_the_policy_and_adam_the_rates_under_bmg(tmp_path: Path) -> None:
    learner = _learner(bootstrap=BootstrapOptions(2, 0.1, "kl"), bmg_lr=0.05)
    assert not any(p is learner.rule.lrs for p in learner.meta_parameters())
    rates = learner.rule.lrs.detach().clone()
    policy = torch.cat([p.detach().flatten().clone() for p in learner.policy.parameters()])
    sampler = _sampler()
    torch.manual_seed(2)
    logs = learner.step(sampler, sampler.env.sample_tasks(T))
    assert logs["inner/bmg_skipped"] == 0.0 and logs["inner/bmg_match"] > 0
    # Adam's first step moves every rate by about its lr
    moved = (learner.rule.lrs.detach() - rates).abs()
    assert torch.allclose(moved, torch.full_like(moved, 0.05), rtol=0.05)
    after = torch.cat([p.detach().flatten() for p in learner.policy.parameters()])
    assert float((after - policy).norm()) > 0 and logs["trpo/accepted"] == 1.0
    # the rates' Adam state is checkpointed: a restored twin takes the same next step
    twin = _learner(bootstrap=BootstrapOptions(2, 0.1, "kl"), bmg_lr=0.05)
    twin.load_state_dict(copy.deepcopy(learner.state_dict()))
    tasks = sampler.env.sample_tasks(T)
    for who in (learner, twin):
        torch.manual_seed(3)
        who.step(sampler, tasks)
    torch.testing.assert_close(learner.rule.lrs, twin.rule.lrs, rtol=0, atol=0)


def test_nonfinite_bmg_gradient_leaves_the_rates_untouched() -> None:
    learner = _learner(bootstrap=BootstrapOptions(1, 0.1, "squared"))
    rates = learner.rule.lrs.detach().clone()
    assert not learner._apply_rate_gradients([torch.full_like(rates, float("nan"))])
    assert torch.equal(learner.rule.lrs.detach(), rates)


@pytest.mark.parametrize(("kw", "field"), [
    ({"inner_lr_meta": "bootstrap"}, "inner_lr_meta"),
    ({"inner_lr_meta": "bmg", "algo": "maml"}, "inner_lr_meta"),
    ({"inner_lr_meta": "bmg", "algo": "metasgd", "bmg_l": 0}, "bmg_l"),
    ({"inner_lr_meta": "bmg", "algo": "metasgd", "bmg_step": 0.0}, "bmg_step"),
    ({"inner_lr_meta": "bmg", "algo": "metasgd", "bmg_match": "l1"}, "bmg_match"),
    ({"inner_lr_meta": "bmg", "algo": "metasgd", "bmg_lr": float("nan")}, "bmg_lr"),
])
def test_bad_bmg_options_name_the_option(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_learner_refuses_bmg_without_learned_rates() -> None:
    with pytest.raises(ValueError, match="learned inner lrs"):
        _learner("maml", bootstrap=BootstrapOptions())


def test_metarl_train_with_bmg_runs_and_resumes_the_same_trajectory(tmp_path: Path) -> None:
    from metarl.rl.train import main
    from metarl.runs import latest_checkpoint, load_checkpoint

    common = dict(env="Navigation2D", algo="metasgd", inner_lr_meta="bmg", bmg_l=2,
                  meta_batch=2, episodes_per_task=2, horizon=8, eval_tasks=2, eval_seeds=1,
                  eval_inner_steps=1, eval_every=0, threads=1, meta_update_path="batched",
                  progress=False)
    whole = main(TrainConfig(**common, iterations=3, run_root=str(tmp_path / "a")))
    part = main(TrainConfig(**common, iterations=2, run_root=str(tmp_path / "b")))
    resumed = main(TrainConfig(iterations=3, resume=str(part), progress=False))

    def state(run: Path) -> dict:
        path = latest_checkpoint(run)
        assert path is not None
        return load_checkpoint(path)["learner"]

    a, b = state(whole), state(resumed)
    assert a["iterations"] == b["iterations"] == 3
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    assert torch.equal(a["rule"]["lrs"], b["rule"]["lrs"])
    assert not torch.equal(a["rule"]["lrs"], torch.full_like(a["rule"]["lrs"], 0.1))
