"""Few-shot classification on the core: vmap == loop, LSLR gradients, the DA switch, per-step
BN buffers, NIL, the MAML++ flags and bad input (the Omniglot run itself: test_fewshot_run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from metarl.core import FirstOrder, SecondOrder, get_algorithm, meta_loss
from metarl.supervised.config import MAMLPP_FLAGS, SupervisedConfig
from metarl.supervised.conv4 import Conv4, forward_with_stats
from metarl.supervised.fewshot import ClassificationMetaLearner, build_conv4
from metarl.supervised.fewshot_eval import accuracy_curves, fold_row, nil_accuracy

Batch = dict[str, torch.Tensor]
WAYS = 3


def episodes(tasks: int, shots: int = 2, seed: int = 0, dtype: torch.dtype = torch.float64,
             size: int = 16) -> tuple[Batch, Batch]:
    """Synthetic 3-way episodes whose classes differ by brightness, so they can be learned."""
    gen = torch.Generator().manual_seed(seed)

    def part(per_class: int) -> Batch:
        y = torch.arange(WAYS).repeat_interleave(per_class).expand(tasks, -1).clone()
        x = torch.rand((tasks, y.shape[1], 1, size, size), generator=gen, dtype=dtype)
        return {"x": x + 0.5 * y[..., None, None, None].to(dtype), "y": y}

    return part(shots), part(shots)


def learner(algo: str = "maml", *, steps: int = 2, bnrs: bool = False, bnwb: bool = False,
            collect: bool = False, **kw: Any) -> ClassificationMetaLearner:
    torch.manual_seed(0)
    model = build_conv4(ways=WAYS, channels=1, image_size=16, filters=4, steps=steps,
                        bnrs=bnrs, bnwb=bnwb).double()
    options: dict[str, Any] = dict(algorithm=get_algorithm(algo), inner_steps=steps,
                                   inner_lr=0.1, head_selector=None, outer_lr=1e-2,
                                   total_steps=100, cosine=False, clip_norm=None, msl=False,
                                   msl_anneal_epochs=5, first_order_until=0, epoch_length=10,
                                   device=torch.device("cpu"))
    lrn = ClassificationMetaLearner(model, collect_stats=collect, **{**options, **kw})
    lrn.rule.double()  # the rates too (in place: the optimiser keeps its references)
    return lrn


def grads_of(lrn: ClassificationMetaLearner, loss: torch.Tensor) -> list[torch.Tensor]:
    leaves = [*lrn.params.values(), *lrn.rule.parameters()]
    return list(torch.autograd.grad(loss, leaves))


@pytest.mark.parametrize("algo", ["maml", "lslr", "anil"])
def test_vmap_path_equals_the_per_task_loop(algo: str) -> None:
    lrn = learner(algo, bnwb=True)
    support, query = episodes(4)
    results = [meta_loss(lrn.params, lrn.loss_fn, support, query, steps=2, rule=lrn.rule,
                         keys=lrn.keys, estimator=SecondOrder(),
                         step_weights=torch.tensor([0.3, 0.7], dtype=torch.float64),
                         vectorize=v) for v in (True, False)]
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-12)
    for a, b in zip(*(grads_of(lrn, r[0]) for r in results), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_lslr_rates_get_gradients_at_every_step_and_layer() -> None:
    lrn = learner("lslr", steps=3, bnwb=True)
    support, query = episodes(2)
    lrn.step(support, query, iteration=0)
    grad = lrn.rule.lrs.grad
    assert grad is not None and grad.shape == (3, len(lrn.keys))
    assert not any(".norm." in k for k in lrn.keys)  # BNWB rows: outer loop only
    # Every rate at every step is trained, except those of the conv biases, whose gradient
    # batch-norm cancels exactly.
    for i, key in enumerate(lrn.keys):
        if key.endswith("conv.bias"):
            assert float(grad[:, i].abs().max()) < 1e-20, key
        else:
            assert bool((grad[:, i] != 0).all()), key


def test_derivative_order_switch_flips_exactly_at_the_da_epoch() -> None:
    support, query = episodes(3)
    ref = learner()
    want = {}
    for name, est in (("first", FirstOrder()), ("second", SecondOrder())):
        loss, _ = meta_loss(ref.params, ref.loss_fn, support, query, steps=2, rule=ref.rule,
                            keys=ref.keys, estimator=est)
        want[name] = grads_of(ref, loss)[0]
    assert not torch.allclose(want["first"], want["second"])
    for iteration, order in ((19, "first"), (20, "second")):  # DA: 2 epochs of 10 iterations
        lrn = learner(first_order_until=2)
        assert isinstance(lrn.estimator(iteration), FirstOrder if order == "first"
                          else SecondOrder)
        lrn.step(support, query, iteration)
        got = next(iter(lrn.params.values())).grad
        assert got is not None
        torch.testing.assert_close(got, want[order], rtol=1e-8, atol=1e-12)


def test_per_step_bn_buffers_differ_after_training_and_evaluation_restores_them() -> None:
    lrn = learner(steps=2, bnrs=True, collect=True)
    assert lrn.buffers["blocks.0.norm.running_mean"].shape == (3, 4)
    for i in range(3):
        lrn.step(*episodes(4, seed=i), iteration=i)
    trained = lrn.buffers
    for key in ("blocks.0.norm.running_mean", "blocks.3.norm.running_var"):
        rows = trained[key]
        assert not torch.allclose(rows[0], rows[1]) and not torch.allclose(rows[1], rows[2])
    support, query = episodes(3, seed=9)
    both = accuracy_curves(lrn.conv4, lrn.params, trained, support, query, steps=2,
                           rule=lrn.rule, keys=lrn.keys, running=True)
    alone = [accuracy_curves(lrn.conv4, lrn.params, trained,
                             {k: v[t:t + 1] for k, v in support.items()},
                             {k: v[t:t + 1] for k, v in query.items()}, steps=2,
                             rule=lrn.rule, keys=lrn.keys, running=True) for t in range(3)]
    # Each task starts from the trained statistics: no task sees another's fold-in ...
    torch.testing.assert_close(both, torch.cat(alone), rtol=0, atol=0)
    # ... and the trained buffers are what they were.
    for key, value in lrn.buffers.items():
        assert torch.equal(value, trained[key]), key


def test_evaluation_folds_the_support_statistics_into_its_copy() -> None:
    old = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    torch.testing.assert_close(fold_row(old, torch.tensor([2.0, 4.0]), 5),
                               torch.tensor([[0.0, 0.0], [1.1, 1.3]]))
    batched = torch.func.vmap(fold_row, in_dims=(None, 0, None))(
        old, torch.tensor([[2.0, 4.0], [0.0, 0.0]]), 0)
    torch.testing.assert_close(batched[:, 0], torch.tensor([[0.2, 0.4], [0.0, 0.0]]))


def test_training_statistics_are_the_inner_loops_batch_statistics() -> None:
    lrn = learner(steps=1, bnrs=True, collect=True)
    support, query = episodes(2)
    stats = lrn.step_statistics(support, query)
    assert len(stats) == 2  # support at step 0, query after one step
    x0 = {k: v[0] for k, v in support.items()}
    _, want = forward_with_stats(lrn.conv4, lrn.params, x0["x"], 0, False)
    torch.testing.assert_close(stats[0]["blocks.2.norm.running_mean"][0],
                               want["blocks.2.norm.running_mean"])


def test_nil_is_cosine_attention_over_support_features_without_gradients(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = Conv4(WAYS, filters=32, image_size=16).double()  # 32 features: no ties
    params = dict(model.named_parameters())
    support, query = episodes(3, shots=2)

    def no_gradient(*args: object, **kwargs: object) -> None:
        raise AssertionError("NIL took a gradient")

    monkeypatch.setattr(torch.func, "grad", no_gradient)
    monkeypatch.setattr(torch.autograd, "grad", no_gradient)
    got = nil_accuracy(model, params, {}, support, query, ways=WAYS, running=False)
    monkeypatch.undo()
    for t in range(3):
        with torch.no_grad():
            fs = model(support["x"][t], body_only=True)[0]
            fq = model(query["x"][t], body_only=True)[0]
        similarity = F.cosine_similarity(fq[:, None], fs[None], dim=-1)
        scores = torch.stack([similarity.softmax(-1)[:, support["y"][t] == c].sum(-1)
                              for c in range(WAYS)], dim=-1)
        want = (scores.argmax(-1) == query["y"][t]).double().mean()
        torch.testing.assert_close(got[t], want)
    assert 0 < float(got.mean()) < 1  # neither trivially right nor wrong


def test_conv4_body_only_is_the_head_input() -> None:
    model = Conv4(5, filters=8)
    x = torch.rand(4, 1, 28, 28)
    features, _ = model(x, body_only=True)
    logits, _ = model(x)
    torch.testing.assert_close(model.head(features), logits)


def omniglot(**kw: Any) -> SupervisedConfig:
    return SupervisedConfig(**{"task": "omniglot", "shots": 1, **kw})


def test_mamlpp_turns_every_fix_on_and_mamlpp_off_leaves_each_out() -> None:
    cfg = omniglot(algo="mamlpp", iterations=3000, epoch_length=100)
    flags = {"msl": cfg.use_msl, "da": cfg.da_epochs == 10, "bnrs": cfg.use_bnrs,
             "bnwb": cfg.use_bnwb, "lslr": cfg.algorithm.lr_kind == "per_step",
             "ca": cfg.use_cosine}
    assert all(flags.values()) and set(flags) == set(MAMLPP_FLAGS)
    assert cfg.eval_running_stats
    assert not omniglot(algo="mamlpp", bn_eval="batch").eval_running_stats
    for flag in MAMLPP_FLAGS:
        off = omniglot(algo="mamlpp", iterations=3000, epoch_length=100, mamlpp_off=(flag,))
        now = {"msl": off.use_msl, "da": off.da_epochs == 10, "bnrs": off.use_bnrs,
               "bnwb": off.use_bnwb, "lslr": off.algorithm.lr_kind == "per_step",
               "ca": off.use_cosine}
        assert [f for f, on in now.items() if not on] == [flag]
    plain = omniglot()
    assert not (plain.use_msl or plain.use_bnrs or plain.use_bnwb or plain.use_cosine)
    assert plain.da_epochs == 0 and not plain.eval_running_stats
    assert omniglot(bnrs=True).eval_running_stats and omniglot(bnwb=True).use_bnwb


@pytest.mark.parametrize("kw,message", [
    ({"ways": 424}, "ways must be <= 423, the classes of the omniglot test split"),
    ({"ways": 1700, "test_rotations": True}, "ways must be <= 1692"),
    ({"shots": 10, "queries": 11}, r"shots \+ queries must be <= 20.*got 10 \+ 11"),
    ({"shots": 15}, r"shots \+ queries must be <= 20.*got 15 \+ 15"),
    ({"mamlpp_off": ("msl",)}, "mamlpp_off needs --algo mamlpp"),
    ({"algo": "mamlpp", "mamlpp_off": ("bn",)}, "mamlpp_off must hold values among"),
    ({"bn_eval": "sometimes"}, "bn_eval must be one of"),
])
def test_bad_classification_options(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        omniglot(**kw)


def test_bn_options_need_a_classification_task() -> None:
    with pytest.raises(ValueError, match="bnrs needs a classification task"):
        SupervisedConfig(bnrs=True)


def test_missing_data_fails_before_any_work(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from metarl.cli import main as cli

    with pytest.raises(SystemExit) as exit_info:  # tyro reports __post_init__ errors, exit 2
        cli(["supervised", "--task", "omniglot", "--shots", "1", "--data-root",
             str(tmp_path / "nowhere"), "--run-root", str(tmp_path / "runs")])
    err = " ".join(capsys.readouterr().err.split())
    assert exit_info.value.code == 2 and "data_root: Omniglot not found" in err
    assert "images_background.zip" in err and "images_evaluation.zip" in err
    assert "github.com/brendenlake/omniglot" in err
    assert not (tmp_path / "runs").exists()  # nothing was started
