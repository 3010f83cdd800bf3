"""The supervised trainer's ``--inner-lr-meta bmg``: gradients, options, an end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metarl.cli import main as cli
from metarl.core import get_algorithm
from metarl.core.bootstrap import BootstrapOptions
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.models import build_model
from metarl.supervised.tasks import sample_sinusoid
from metarl.supervised.trainer import SupervisedMetaLearner


def make_learner(bootstrap: BootstrapOptions | None, algo: str = "metasgd",
                 steps: int = 1) -> SupervisedMetaLearner:
    torch.manual_seed(0)
    return SupervisedMetaLearner(
        build_model("sinusoid"), algorithm=get_algorithm(algo), inner_steps=steps,
        inner_lr=0.01, head_selector=None, outer_lr=1e-3, total_steps=10, cosine=False,
        clip_norm=None, msl=False, msl_anneal_epochs=5, first_order_until=0, epoch_length=10,
        device=torch.device("cpu"), bootstrap=bootstrap)


def grads(learner: SupervisedMetaLearner) -> tuple[torch.Tensor, list[torch.Tensor], float]:
    support, query = sample_sinusoid(6, 5, 7, torch.Generator().manual_seed(1))
    loss, _ = learner.meta_objective(support, query, 0)
    leaves = [learner.rule.lrs, *learner.params.values()]
    lr_grad, *param_grads = torch.autograd.grad(loss, leaves)
    return lr_grad, param_grads, float(loss.detach())


@pytest.mark.parametrize("algo,steps", [("metasgd", 1), ("lslr", 2)])
def test_bmg_l1_lr_gradient_is_step_times_maml_and_init_keeps_maml(algo: str,
                                                                   steps: int) -> None:
    torch.set_default_dtype(torch.float64)
    try:
        maml = grads(make_learner(None, algo, steps))
        bmg = grads(make_learner(BootstrapOptions(1, 0.3, "squared"), algo, steps))
    finally:
        torch.set_default_dtype(torch.float32)
    torch.testing.assert_close(bmg[0], 0.3 * maml[0], rtol=1e-9, atol=1e-14)
    for a, b in zip(bmg[1], maml[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert bmg[2] == pytest.approx(maml[2], rel=1e-12)  # the value is the query loss


@pytest.mark.parametrize("match", ["squared", "kl"])
def test_bmg_lookahead_moves_the_rates_differently(match: str) -> None:
    maml = grads(make_learner(None))
    bmg = grads(make_learner(BootstrapOptions(3, 0.01, match)))
    assert bmg[0].abs().min() > 0
    cosine = torch.nn.functional.cosine_similarity(bmg[0].flatten(), maml[0].flatten(), dim=0)
    assert float(cosine) < 0.999


def test_bmg_needs_learned_rates() -> None:
    with pytest.raises(ValueError, match="bootstrap needs learned inner lrs"):
        make_learner(BootstrapOptions(), algo="maml")


@pytest.mark.parametrize("args,field,allowed", [
    (["--inner-lr-meta", "adam"], "inner_lr_meta", "('gradient', 'bmg')"),
    (["--bmg-l", "0"], "bmg_l", ">= 1"),
    (["--bmg-step", "0"], "bmg_step", "> 0"),
    (["--bmg-step", "nan"], "bmg_step", "> 0"),
    (["--bmg-match", "cosine"], "bmg_match", "('squared', 'kl')"),
    (["--inner-lr-meta", "bmg"], "inner_lr_meta", "per_tensor"),
])
def test_bad_options_fail_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          args: list[str], field: str, allowed: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["supervised", "--run-root", str(tmp_path / "runs"), *args])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert field in err and allowed in err
    assert not (tmp_path / "runs").exists()


def test_cli_bmg_run_trains_the_rates_and_saves_the_options(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    assert cli(["supervised", "--run-root", str(root), "--algo", "metasgd", "--inner-lr-meta",
                "bmg", "--bmg-l", "2", "--bmg-match", "kl", "--iterations", "3",
                "--meta-batch", "4", "--eval-tasks", "10", "--eval-inner-steps", "1",
                "--no-progress", "--log-every", "1"]) == 0
    (run_dir,) = root.iterdir()
    saved = json.loads((run_dir / "config.json").read_text())
    assert (saved["inner_lr_meta"], saved["bmg_l"], saved["bmg_match"]) == ("bmg", 2, "kl")
    cfg = SupervisedConfig(algo="metasgd", inner_lr_meta="bmg", bmg_l=2)
    assert cfg.bootstrap == BootstrapOptions(2, 0.01, "squared")
    assert SupervisedConfig().bootstrap is None
    assert (run_dir / "eval.json").exists()
