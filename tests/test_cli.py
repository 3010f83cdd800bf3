from __future__ import annotations

import subprocess
import sys

from metarl.cli import COMMANDS, main


def test_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in [*COMMANDS, "envs"]:
        assert name in out


def test_unknown_command_fails_naming_choices(capsys) -> None:
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "train" in err


def test_console_script_help() -> None:
    r = subprocess.run([sys.executable, "-m", "metarl.cli", "--help"], capture_output=True,
                       text=True, check=True)
    assert "metarl <command>" in r.stdout
