"""The shape of ``envs/``: modules small enough to read, and no torch anywhere in them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import metarl.envs

MAX_LINES = 350
ENVS_DIR = Path(metarl.envs.__file__).parent


def test_every_module_is_at_most_350_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in ENVS_DIR.glob("*.py")}
    assert {"batched.py", "engine.py", "physics.py", "gym_vector.py", "interface.py",
            "metaworld.py", "metaworld_tasks.py"} <= set(sizes)
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"split these modules by job: {too_long}"


def test_metaworld_names_still_import_from_metaworld() -> None:
    from metarl.envs import metaworld, metaworld_tasks

    for name in ("BENCHMARKS", "GOALS_PER_CLASS", "MetaWorldTask", "class_names", "goal_set",
                 "sample_metaworld_tasks", "check_benchmark"):
        assert getattr(metaworld, name) is getattr(metaworld_tasks, name), name
    assert set(metaworld.__all__) <= set(dir(metaworld))


def test_importing_every_env_module_never_imports_torch(tmp_path: Path) -> None:
    modules = ", ".join(f"metarl.envs.{p.stem}" for p in sorted(ENVS_DIR.glob("*.py"))
                        if p.stem != "__init__")
    code = f"import sys, {modules}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.strip() == "False"
