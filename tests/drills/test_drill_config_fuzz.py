"""Fault drill: a config fuzzer over every option of ``metarl train``, ``metarl supervised`` and
``metarl evaluate`` (meta-RL and supervised runs).

The options are read from the configs' own dataclass fields and type hints, so a new option
is fuzzed without touching this file: ints out of range (negative), NaN and -inf floats, layer
sizes < 1, and unknown strings for choice options (``{a,b,...}`` metavars) must be rejected
with a ``ValueError`` naming the option; any other value of the option's type is either
accepted or rejected that way (never another exception). The config constructors run
directly for speed, ``metarl.cli.main`` in-process for a second sample (exit code 2, the
option named on stderr, no run folder), and a handful of real CLI subprocesses.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metarl.cli import main as cli
from metarl.rl.config import TrainConfig
from metarl.rl.config import config_to_json as rl_json
from metarl.rl.evaluate_cmd import EvalConfig
from metarl.supervised.config import SupervisedConfig, SupervisedEvalConfig
from metarl.supervised.config import config_to_json as supervised_json

REPO = Path(__file__).resolve().parents[2]
FUZZ = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Option:
    """One CLI option, as its dataclass field describes it."""

    name: str
    kind: str  # int | float | ints | choice | text
    choices: tuple[str, ...] = ()
    positional: bool = False

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _kind(tp: Any) -> str | None:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = args[0]
    if tp is bool:
        return None  # a flag: no bad value
    if typing.get_origin(tp) is tuple:
        return "ints"
    return {int: "int", float: "float", str: "text"}[tp]


def options(config: type) -> list[Option]:
    """Every non-flag option of ``config``, from its fields and type hints."""
    hints = typing.get_type_hints(config, include_extras=True)
    out = []
    for field in dataclasses.fields(config):
        tp, meta = hints[field.name], ()
        if typing.get_origin(tp) is typing.Annotated:
            tp, *meta = typing.get_args(tp)
        kind = _kind(tp)
        if kind is None:
            continue
        metavar = next((m.metavar for m in meta if getattr(m, "metavar", None)), "")
        choices = tuple(metavar[1:-1].split(",")) if metavar.startswith("{") else ()
        out.append(Option(field.name, "choice" if choices else kind, choices,
                          any("Positional" in repr(m) for m in meta)))
    return out


def bad_values(opt: Option) -> st.SearchStrategy[Any] | None:
    """Values no option of this kind accepts (None: the kind has none)."""
    if opt.kind == "int":
        return st.integers(max_value=-1)
    if opt.kind == "float":
        return st.sampled_from([math.nan, -math.inf])
    if opt.kind == "ints":
        return st.just(()) | st.lists(st.integers(max_value=0), min_size=1, max_size=3).map(
            lambda sizes: (64, *sizes))
    if opt.kind == "choice":
        return st.text(max_size=12).filter(lambda s: s not in opt.choices)
    return None


def any_values(opt: Option) -> st.SearchStrategy[Any]:
    """Any value of the option's type: accepted, or rejected naming the option."""
    if opt.kind == "int":
        return st.integers(min_value=-2**70, max_value=2**70)
    if opt.kind == "float":
        return st.floats(allow_nan=True, allow_infinity=True)
    if opt.kind == "ints":
        return st.lists(st.integers(-3, 2**20), max_size=3).map(tuple)
    return st.text(max_size=16) | st.sampled_from([*opt.choices, "", "..", "/", "a/b", "("])


def names(err: BaseException | str, name: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(name)}(?!\w)", str(err)) is not None


# --------------------------------------------------------------------------------------------
# The configs and the runs their evaluate commands need
# --------------------------------------------------------------------------------------------


def fake_run(root: Path, config: dict[str, Any]) -> str:
    """A run folder with ``config.json`` and a checkpoint file (enough for validation)."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps(config))
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "ckpt_00000001.pt").write_bytes(b"")
    return str(root)


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> dict[type, dict[str, Any]]:
    """Per config: the keyword arguments of a valid instance (run folders in a temp dir)."""
    root = tmp_path_factory.mktemp("fuzz")
    runs = root / "runs"
    runs.mkdir()
    rl_run = fake_run(root / "rl", rl_json(TrainConfig(run_root=str(runs))))
    sup_run = fake_run(root / "sup", supervised_json(SupervisedConfig(run_root=str(runs))))
    return {TrainConfig: {"run_root": str(runs)}, SupervisedConfig: {"run_root": str(runs)},
            EvalConfig: {"run_dir": rl_run}, SupervisedEvalConfig: {"run_dir": sup_run}}


CONFIGS = [TrainConfig, SupervisedConfig, EvalConfig, SupervisedEvalConfig]


def test_every_config_has_fuzzable_options() -> None:
    found = {c.__name__: {o.name: o.kind for o in options(c)} for c in CONFIGS}
    assert found["TrainConfig"]["meta_batch"] == "int"
    assert found["TrainConfig"]["max_kl"] == "float"
    assert found["TrainConfig"]["sampler"] == "choice" and found["TrainConfig"]["hidden"] == "ints"
    assert found["SupervisedConfig"]["lr_kind"] == "choice"
    assert found["EvalConfig"]["run_dir"] == "text"
    assert "progress" not in found["TrainConfig"]  # flags have no bad value


# Every option of every config is a case of its own, so none is left out by chance.
CASES = [pytest.param(c, o, id=f"{c.__name__}.{o.name}") for c in CONFIGS for o in options(c)]
BAD_CASES = [case for case in CASES if bad_values(case.values[1]) is not None]


@pytest.mark.parametrize(("config", "opt"), BAD_CASES)
@settings(FUZZ, max_examples=8)
@given(data=st.data())
def test_bad_values_are_rejected_naming_the_option(config: type, opt: Option,
                                                   data: st.DataObject,
                                                   bases: dict[type, dict[str, Any]]) -> None:
    value = data.draw(bad_values(opt), label="value")  # type: ignore[arg-type]
    with pytest.raises(ValueError) as err:
        config(**{**bases[config], opt.name: value})
    assert names(err.value, opt.name), f"{opt.name}={value!r}: {err.value}"


@pytest.mark.parametrize(("config", "opt"), CASES)
@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_any_value_is_accepted_or_rejected_naming_the_option(
        config: type, opt: Option, data: st.DataObject,
        bases: dict[type, dict[str, Any]]) -> None:
    value = data.draw(any_values(opt), label="value")
    try:
        config(**{**bases[config], opt.name: value})
    except ValueError as err:
        assert names(err, opt.name), f"{opt.name}={value!r}: {err}"


# --------------------------------------------------------------------------------------------
# Through the command line
# --------------------------------------------------------------------------------------------


def argv_for(opt: Option, value: Any) -> list[str]:
    if opt.kind == "ints":
        return [opt.flag, *map(str, value)] if value else [opt.flag]
    return [f"{opt.flag}={value}"]  # "=": a value starting with "-" stays a value


COMMANDS = {"train": TrainConfig, "supervised": SupervisedConfig}


@pytest.mark.parametrize("command", [*COMMANDS, "evaluate", "evaluate-supervised"])
@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_the_cli_exits_2_naming_the_option_before_any_work(
        command: str, data: st.DataObject, bases: dict[type, dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    if command in COMMANDS:
        config = COMMANDS[command]
        head = [command, "--run-root", bases[config]["run_root"]]
    else:
        config = EvalConfig if command == "evaluate" else SupervisedEvalConfig
        head = ["evaluate", bases[config]["run_dir"]]
    fuzzable = [o for o in options(config) if bad_values(o) is not None and not o.positional]
    opt = data.draw(st.sampled_from(fuzzable), label="option")
    value = data.draw(bad_values(opt).filter(  # type: ignore[union-attr]
        lambda v: "\x00" not in str(v)), label="value")  # argv cannot carry NUL
    capsys.readouterr()
    try:
        code = cli([*head, *argv_for(opt, value)])
    except SystemExit as exit_:  # tyro reports a __post_init__ ValueError and exits itself
        code = exit_.code  # type: ignore[assignment]
    err = capsys.readouterr().err.replace("\n", " ").replace("│", " ")
    assert code == 2 and names(err, opt.name), f"{opt.flag} {value!r}: {err}"
    assert not any(Path(bases[TrainConfig]["run_root"]).iterdir()), "a run folder was made"


@pytest.mark.parametrize(("args", "option"), [
    (["train", "--ray-actors=0"], "ray_actors"),
    (["train", "--gamma=nan"], "gamma"),
    (["train", "--sampler=spark"], "sampler"),
    (["supervised", "--max-nonfinite-updates=0"], "max_nonfinite_updates"),
])
def test_the_real_cli_rejects_bad_options(args: list[str], option: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "metarl.cli", *args, "--run-root", str(tmp_path)],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and names(r.stderr, option), r.stderr
    assert not any(tmp_path.iterdir())


def test_the_real_cli_rejects_bad_evaluate_options(bases: dict[type, dict[str, Any]]) -> None:
    run_dir = bases[EvalConfig]["run_dir"]
    r = subprocess.run([sys.executable, "-m", "metarl.cli", "evaluate", run_dir, "--seeds=-1"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 2 and names(r.stderr, "seeds"), r.stderr
    assert not (Path(run_dir) / "evaluations").exists()


def test_found_by_the_fuzzer_threads_past_int32_is_rejected_before_the_run_starts() -> None:
    # torch.set_num_threads(2**31) raised only after the run folder had been made.
    with pytest.raises(ValueError, match=r"threads must be an int in \[0, 1024\]"):
        TrainConfig(threads=2**31)
