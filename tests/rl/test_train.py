"""End-to-end tests of ``metarl train``: run folder, TensorBoard, checkpoints, resume, Ctrl-C,
presets and config validation."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metarl.core import ALGO_NAMES
from metarl.rl.config import config_to_json, load_config
from metarl.rl.presets import ENV_NAMES, PRESET_NAMES, get_preset
from metarl.rl.train import TrainConfig, main
from metarl.runs import latest_checkpoint, load_checkpoint

REPO = Path(__file__).resolve().parents[2]
FULL = os.environ.get("METARL_SLOW") == "full"

# A tiny Navigation2D run: 2 tasks x 2 episodes x 10 steps per phase.
TINY = dict(env="Navigation2D", meta_batch=2, episodes_per_task=2, horizon=10, eval_tasks=2,
            eval_seeds=2, eval_inner_steps=1, eval_every=0, threads=1, progress=False)


def tiny(tmp_path: Path, **kw: object) -> TrainConfig:
    return TrainConfig(**{**TINY, "run_root": str(tmp_path), **kw})  # type: ignore[arg-type]


def scalars(run_dir: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, dict[int, float]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, {}).update({e.step: e.value for e in acc.Scalars(tag)})
    return out


def learner_params(run_dir: Path) -> dict[str, torch.Tensor]:
    path = latest_checkpoint(run_dir)
    assert path is not None
    state = load_checkpoint(path)["learner"]
    flat: dict[str, torch.Tensor] = {}

    def walk(prefix: str, obj: object) -> None:
        if isinstance(obj, torch.Tensor):
            flat[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)

    walk("", state)
    assert flat, "the learner's state_dict holds no tensors"
    return flat


# --------------------------------------------------------------------------------------------
# Config validation and presets (no training)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kw", "field"), [
    ({"meta_batch": 0}, "meta_batch"), ({"meta_batch": -3}, "meta_batch"),
    ({"max_kl": 0.0}, "max_kl"), ({"max_kl": -0.01}, "max_kl"),
    ({"max_kl": float("nan")}, "max_kl"), ({"env": "HalfCheetahVelocity"}, "env"),
    ({"algo": "ppo"}, "algo"), ({"inner_steps": -1}, "inner_steps"),
    ({"eval_inner_steps": -1}, "eval_inner_steps"), ({"preset": "slow"}, "preset"),
    ({"iterations": 0}, "iterations"), ({"episodes_per_task": 0}, "episodes_per_task"),
    ({"ls_ratio": 1.0}, "ls_ratio"), ({"gamma": 1.5}, "gamma"), ({"cg_iters": 0}, "cg_iters"),
    ({"hidden": (64, 0)}, "hidden"), ({"inner_lr": float("inf")}, "inner_lr"),
    ({"meta_update_path": "fast"}, "meta_update_path"), ({"device": "tpu"}, "device"),
    ({"resume": "/nonexistent/run"}, "resume"), ({"fvp_subsample": 0.0}, "fvp_subsample"),
])
def test_bad_config_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_bad_choice_lists_the_allowed_values() -> None:
    with pytest.raises(ValueError, match="HalfCheetahVel.*Navigation2D"):
        TrainConfig(env="Cheetah")
    with pytest.raises(ValueError, match="maml.*fomaml.*anil"):
        TrainConfig(algo="reptile")


def test_cli_rejects_bad_config_before_any_work(tmp_path: Path) -> None:
    for args, field in ((["--meta-batch", "0"], "meta_batch"), (["--max-kl", "0"], "max_kl"),
                        (["--env", "Nope"], "env"), (["--inner-steps", "-2"], "inner_steps")):
        r = subprocess.run([sys.executable, "-m", "metarl.cli", "train", "--run-root",
                            str(tmp_path), *args], capture_output=True, text=True, cwd=REPO,
                           timeout=120)
        assert r.returncode == 2, r.stderr
        assert field in r.stderr.replace("\n", " ").replace("│", " ")
    assert not any(tmp_path.iterdir()), "a run folder was created for a bad config"


def test_paper_presets_are_the_standard_hyperparameters() -> None:
    for env in ENV_NAMES:
        p = get_preset(env, "paper")
        assert (p.inner_steps, p.inner_lr, p.episodes_per_task) == (1, 0.1, 20)
        assert (p.gamma, p.gae_lambda, p.max_kl, p.cg_iters) == (0.99, 1.0, 0.01, 10)
        assert (p.cg_damping, p.ls_steps, p.ls_ratio, p.iterations) == (1e-5, 15, 0.8, 500)
        assert p.hidden == (64, 64)
        assert p.meta_batch == (20 if env == "Navigation2D" else 40)
        assert p.horizon == (100 if env == "Navigation2D" else 200)
        fast = get_preset(env, "fast")
        assert fast.horizon == 100
        assert fast.iterations < p.iterations
        assert fast.meta_batch * fast.episodes_per_task <= p.meta_batch * p.episodes_per_task


def test_presets_cover_every_registered_distribution() -> None:
    registration = pytest.importorskip("metarl.envs.registration")
    assert set(ENV_NAMES) == set(registration.DISTRIBUTIONS)
    for env in ENV_NAMES:
        for preset in PRESET_NAMES:
            assert get_preset(env, preset).horizon == registration.HORIZONS[env][preset]


def test_overrides_and_derived_values() -> None:
    cfg = TrainConfig(env="HalfCheetahVel", preset="paper", meta_batch=8, max_kl=0.02)
    assert (cfg.hp.meta_batch, cfg.hp.max_kl, cfg.hp.horizon) == (8, 0.02, 200)
    assert cfg.num_envs == 8 * 20
    assert TrainConfig(algo="anil").algorithm.adapt == "head"
    assert TrainConfig(algo="fomaml").algorithm.first_order
    assert TrainConfig(algo="metasgd").algorithm.lr_kind == "per_tensor"


def test_config_json_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(env="AntGoal", algo="anil", hidden=(32, 16), inner_lr=-0.05, seed=7)
    (tmp_path / "config.json").write_text(json.dumps(config_to_json(cfg)))
    assert load_config(tmp_path) == cfg
    assert json.loads((tmp_path / "config.json").read_text())["resolved"]["horizon"] == 100


# --------------------------------------------------------------------------------------------
# End-to-end runs (need the learner and Navigation2D)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_iteration_run_writes_everything(tmp_path: Path) -> None:
    from metarl.cli import main as cli

    argv = ["train", "--run-root", str(tmp_path), "--iterations", "2", "--no-progress"]
    for k, v in TINY.items():
        if k != "progress":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    assert cli(argv) == 0
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("Navigation2D__maml__0__")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["kind"] == "rl" and saved["meta_batch"] == 2 and saved["iterations"] == 2
    assert latest_checkpoint(run_dir) == run_dir / "checkpoints" / "ckpt_00000002.pt"
    ev = json.loads((run_dir / "eval.json").read_text())
    assert ev["iteration"] == 2 and ev["num_tasks"] == 2 and len(ev["overall"]["mean"]) == 2
    assert (run_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tb = scalars(run_dir)
    for tag in ("adapt/return_step0", "adapt/return_step1", "time/sampling_s",
                "time/adaptation_s", "time/meta_update_s", "time/env_steps_per_s",
                "time/iteration_s", "baseline/fit_error", "policy/entropy"):
        assert set(tb[tag]) == {1, 2}, tag
    assert any(t.startswith("trpo/") for t in tb)
    assert tb["eval/return_step0"][2] == pytest.approx(ev["overall"]["mean"][0], rel=1e-6)
    assert tb["eval/return_step1"][2] == pytest.approx(ev["overall"]["mean"][1], rel=1e-6)
    assert "time/evaluation_s" in tb
    assert tb["time/total_env_steps"][2] == 2 * 2 * (2 * 2) * 10  # its x phases x envs x h


def _hparams_text(run_dir: Path) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for events in run_dir.glob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags().get("tensors", []):
            if tag.startswith("hyperparameters"):
                return acc.Tensors(tag)[0].tensor_proto.string_val[0].decode()
    return ""


@pytest.mark.slow
def test_resume_continues_the_same_trajectory(tmp_path: Path) -> None:
    """4 iterations == 2 iterations + resume + 2 more, on exact parameters and returns.

    The path is forced: under ``auto`` the two fresh runs time their own probes and, on a
    loaded machine, may pick different paths, which agree only to rounding (docs/rl.md)."""
    straight = main(tiny(tmp_path / "a", iterations=4, checkpoint_every=1,
                         meta_update_path="batched"))
    half = main(tiny(tmp_path / "b", iterations=2, checkpoint_every=1,
                     meta_update_path="batched"))
    mid = learner_params(half)
    resumed = main(TrainConfig(resume=str(half), iterations=4, progress=False))
    assert resumed == half
    a, b = learner_params(straight), learner_params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ta, tb = scalars(straight), scalars(resumed)
    for step in (1, 2, 3, 4):
        assert ta["adapt/return_step1"][step] == tb["adapt/return_step1"][step]
    # iterations 3 and 4 moved the parameters (the comparison above is not vacuous)
    assert not all(torch.equal(mid[k], a[k]) for k in a)
    assert "|meta_batch|2|" in _hparams_text(straight)


@pytest.mark.slow
def test_training_changes_parameters_and_is_deterministic(tmp_path: Path) -> None:
    # auto may time the two paths differently in each run (rounding-level differences).
    fixed = {"iterations": 1, "meta_update_path": "batched"}
    one = main(tiny(tmp_path / "a", **fixed))
    two = main(tiny(tmp_path / "b", **fixed))
    other = main(tiny(tmp_path / "c", seed=1, **fixed))
    p1, p2, p3 = learner_params(one), learner_params(two), learner_params(other)
    assert all(torch.equal(p1[k], p2[k]) for k in p1)
    assert not all(torch.equal(p1[k], p3[k]) for k in p1)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_then_exits(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "metarl.cli", "train", "--run-root", str(tmp_path),
            "--iterations", "100000", "--checkpoint-every", "100000", "--no-progress"]
    for k, v in TINY.items():
        if k != "progress":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    line = proc.stdout.readline()
    while not line.startswith("[") and time.monotonic() < deadline:  # first logged iteration
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = tmp_path.iterdir()
    ckpt = latest_checkpoint(run_dir)
    assert ckpt is not None and load_checkpoint(ckpt)["iteration"] >= 1
    assert "metarl train --resume" in err


@pytest.mark.slow
def test_default_agent(tmp_path: Path) -> None:
    """`metarl train` with no options; short form: the default config for 3 iterations."""
    default = TrainConfig()
    assert (default.env, default.algo, default.preset) == ("Navigation2D", "maml", "fast")
    cfg = dataclasses.replace(default, run_root=str(tmp_path), progress=False)
    if not FULL:
        cfg = dataclasses.replace(cfg, iterations=3, eval_tasks=4, eval_seeds=1)
    run_dir = main(cfg)
    ev = json.loads((run_dir / "eval.json").read_text())
    assert (run_dir / "eval.png").is_file()
    assert len(ev["overall"]["mean"]) == default.hp.eval_inner_steps + 1
    if FULL:  # the default agent learns: adaptation helps (its time: scripts/rl_results.py)
        mean = ev["overall"]["mean"]
        assert mean[1] > mean[0]


# --------------------------------------------------------------------------------------------
# What a new user hit: early checkpoints, resume messages, the device, the console
# --------------------------------------------------------------------------------------------


def _cli_argv(tmp_path: Path, *extra: str) -> list[str]:
    argv = [sys.executable, "-m", "metarl.cli", "train", "--run-root", str(tmp_path)]
    for k, v in TINY.items():
        if k != "progress":
            argv += [f"--{k.replace('_', '-')}", str(v)]
    return [*argv, *extra]  # the last occurrence of an option wins


@pytest.mark.slow
def test_first_checkpoint_after_iteration_one_and_resume_says_from_where(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = main(tiny(tmp_path, iterations=3, checkpoint_every=100))
    names = [p.name for p in sorted((run_dir / "checkpoints").glob("*.pt"))]
    assert names == ["ckpt_00000001.pt", "ckpt_00000003.pt"]  # first iteration, then the end
    capsys.readouterr()
    main(TrainConfig(resume=str(run_dir), iterations=4, progress=False))
    out = capsys.readouterr().out
    assert f"resuming {run_dir} from iteration 3 (ckpt_00000003.pt)" in out


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config_to_json(tiny(tmp_path))))
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ValueError, match="has no checkpoint yet.*start a new run"):
        TrainConfig(resume=str(tmp_path))


@pytest.mark.slow
def test_a_cuda_run_resumes_and_evaluates_on_the_cpu(tmp_path: Path) -> None:
    """The device belongs to the call: a config.json saying cuda loads without CUDA."""
    from metarl.rl.evaluate_cmd import EvalConfig
    from metarl.rl.evaluate_cmd import main as evaluate

    run_dir = main(tiny(tmp_path, iterations=1))
    saved = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**saved, "device": "cuda:0"}))
    assert load_config(run_dir).device == "cpu"
    main(TrainConfig(resume=str(run_dir), iterations=2, device="cpu", progress=False))
    assert evaluate(EvalConfig(str(run_dir), device="cpu", seeds=1)).is_file()


@pytest.mark.slow
def test_console_convention(tmp_path: Path) -> None:
    """--no-progress: a line per iteration on stdout; table and run folder on stdout; the
    bar (with --progress) and errors on stderr."""
    quiet = subprocess.run(_cli_argv(tmp_path / "a", "--iterations", "2", "--no-progress"),
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    lines = quiet.stdout.splitlines()
    assert [ln.split()[0] for ln in lines if ln.startswith("[")] == ["[1]", "[2]"]
    assert "| inner steps | return (mean +- 95% CI) |" in quiet.stdout
    assert lines[-1].startswith("run folder: ") and "run folder" not in quiet.stderr
    bar = subprocess.run(_cli_argv(tmp_path / "b", "--iterations", "2"), capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert bar.returncode == 0, bar.stderr
    assert not any(ln.startswith("[") for ln in bar.stdout.splitlines())
    assert "2/2" in bar.stderr and bar.stdout.splitlines()[-1].startswith("run folder: ")
    bad = subprocess.run(_cli_argv(tmp_path / "c", "--meta-batch", "0"), capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "meta_batch" in bad.stderr and not bad.stdout


def test_help_lists_choices_and_names_positionals() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    train = subprocess.run([sys.executable, "-m", "metarl.cli", "train", "--help"],
                           capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert "--env {HalfCheetahVel,HalfCheetahDir," in train.stdout
    assert "--algo {" + ",".join(ALGO_NAMES) + "}" in train.stdout
    assert "{None}" not in train.stdout
    ev = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", "--help"],
                        capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert "usage: metarl evaluate [-h] [OPTIONS] RUN_DIR" in ev.stdout
    assert "{None}" not in ev.stdout and "--device {cpu,cuda,cuda:N,auto}" in ev.stdout
