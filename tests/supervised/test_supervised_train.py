"""End-to-end ``metarl supervised``: TensorBoard events, checkpoints, eval.json, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metarl.cli import main as cli
from metarl.runs import RunError, latest_checkpoint, load_checkpoint
from metarl.supervised.config import SupervisedConfig
from metarl.supervised.evaluate_cmd import evaluate_run
from metarl.supervised.train import main

FAST = ["--meta-batch", "4", "--eval-tasks", "20", "--eval-inner-steps", "3", "--no-progress",
        "--log-every", "5", "--checkpoint-every", "5"]


def run(root: Path, *args: str) -> Path:
    before = set(root.glob("*")) if root.exists() else set()
    assert cli(["supervised", "--run-root", str(root), *FAST, *args]) == 0
    (new,) = set(root.glob("*")) - before
    return new


def final_params(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None
    return load_checkpoint(ckpt)["learner"]["params"]


def test_cli_run_writes_events_checkpoint_eval_and_resumes_bit_equal(tmp_path: Path) -> None:
    straight = run(tmp_path / "a", "--iterations", "20", "--eval-every", "10")
    assert list(straight.glob("events.out.tfevents.*"))
    assert latest_checkpoint(straight) == straight / "checkpoints" / "ckpt_00000020.pt"
    result = json.loads((straight / "eval.json").read_text())
    assert len(result["mse_mean"]) == len(result["mse_ci95"]) == 4
    assert result["iteration"] == 20 and result["tasks"] == 20
    assert (straight / "eval.png").stat().st_size > 0
    config = json.loads((straight / "config.json").read_text())
    assert config["kind"] == "supervised" and config["iterations"] == 20

    half = run(tmp_path / "b", "--iterations", "10", "--eval-every", "10")
    assert cli(["supervised", "--resume", str(half), "--iterations", "20", "--no-progress"]) == 0
    resumed, reference = final_params(half), final_params(straight)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    resumed_eval = json.loads((half / "eval.json").read_text())
    assert resumed_eval["mse_mean"] == result["mse_mean"]
    # Training moved the parameters away from the initialisation.
    assert result["mse_mean"][-1] < result["mse_mean"][0]


def test_same_seed_same_result_other_seed_differs(tmp_path: Path) -> None:
    a = run(tmp_path, "--iterations", "6", "--algo", "anil", "--seed", "3")
    b = run(tmp_path, "--iterations", "6", "--algo", "anil", "--seed", "3")
    c = run(tmp_path, "--iterations", "6", "--algo", "anil", "--seed", "4")
    pa, pb, pc = final_params(a), final_params(b), final_params(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_linear_metasgd_run_and_evaluate_command(tmp_path: Path) -> None:
    run_dir = run(tmp_path, "--task", "linear", "--algo", "metasgd", "--iterations", "10",
                  "--p", "4", "--m", "6", "--n-t", "5", "--n-v", "7", "--inner-lr", "0.1",
                  "--eval-inner-lr", "-0.05")
    assert run_dir.name.startswith("linear4d__metasgd__0__")
    state = load_checkpoint(latest_checkpoint(run_dir))  # type: ignore[arg-type]
    assert not torch.equal(state["learner"]["rule"]["lrs"], torch.full((1, 1), 0.1))
    own = (run_dir / "eval.json").read_bytes()
    assert cli(["evaluate", str(run_dir), "--num-tasks", "30", "--inner-steps", "2",
                "--out", "first"]) == 0
    result = json.loads((run_dir / "evaluations" / "first.json").read_text())
    assert result["tasks"] == 30 and len(result["mse_mean"]) == 3
    assert result["inner_lr"] == -0.05
    again = evaluate_run(run_dir, num_tasks=30, inner_steps=2)
    assert again["mse_mean"] == result["mse_mean"] and again["path"] != str(
        run_dir / "evaluations" / "first.json")
    assert (run_dir / "eval.json").read_bytes() == own  # never overwritten
    assert list((run_dir / "evaluations" / "first").glob("events.out.tfevents.*"))


@pytest.mark.parametrize("args,field,allowed", [
    (["--shots", "0"], "shots", ">= 1"),
    (["--algo", "reptile"], "algo", "maml"),
    (["--algo", "anil", "--head-selector", "nomatch"], "head_selector", "available keys"),
    (["--inner-lr", "nan"], "inner_lr", "finite"),
    (["--eval-inner-lr", "inf"], "eval_inner_lr", "finite"),
    (["--lr", "-1"], "lr", "> 0"),
    (["--device", "tpu"], "device", "cuda"),
    (["--task", "mnist"], "task", "sinusoid"),
    (["--lr-kind", "adam"], "lr_kind", "per_tensor"),
    (["--resume", "/nonexistent"], "resume", "run folder"),
    (["--seed", "-1"], "seed", "[0,"),
    (["--checkpoint-minutes", "0"], "checkpoint_minutes", "> 0"),
])
def test_bad_input_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         args: list[str], field: str, allowed: str) -> None:
    with pytest.raises(SystemExit) as exit_info:  # tyro reports __post_init__ errors, exit 2
        cli(["supervised", "--run-root", str(tmp_path / "runs"), *args])
    assert exit_info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert field in err and allowed in err
    assert not (tmp_path / "runs").exists()


def test_config_derived_values_and_direct_main(tmp_path: Path) -> None:
    cfg = SupervisedConfig(shots=5, iterations=3, meta_batch=2, eval_tasks=5,
                           eval_inner_steps=1, progress=False, run_root=str(tmp_path))
    assert (cfg.support_size, cfg.query_size, cfg.env_name) == (5, 10, "sinusoid5shot")
    run_dir = main(cfg)
    assert run_dir.parent == tmp_path and (run_dir / "eval.json").exists()
    with pytest.raises(RunError, match="iterations must be >= the checkpoint's iteration"):
        main(SupervisedConfig(resume=str(run_dir), iterations=2, progress=False))


def test_console_convention_and_device_of_the_call(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--no-progress prints a line per log window, the table and the run folder on stdout;
    a run whose config says cuda resumes and evaluates on the CPU."""
    run_dir = run(tmp_path, "--iterations", "10")
    out = capsys.readouterr().out
    assert [ln.split()[0] for ln in out.splitlines() if ln.startswith("[")] == ["[5]", "[10]"]
    assert "| inner steps | query MSE (mean +- 95% CI) | median | diverged |" in out
    assert out.splitlines()[-1] == f"run folder: {run_dir}"
    saved = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**saved, "device": "cuda"}))
    assert cli(["supervised", "--resume", str(run_dir), "--iterations", "12", "--no-progress",
                "--device", "cpu"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "ckpt_00000012.pt"
    assert evaluate_run(run_dir, num_tasks=5, device="cpu")["iteration"] == 12
