from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from metarl.runs import latest_checkpoint, load_checkpoint, make_run_dir, save_checkpoint
from metarl.utils import mean_ci95, plot_adaptation, rng_state, seed_everything, set_rng_state


def test_mean_ci95_matches_hand_computation() -> None:
    # values 1, 2, 3: mean 2, sd 1, df 2 -> t = 4.303; half width = 4.303 / sqrt(3)
    mean, hw = mean_ci95([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert hw == pytest.approx(4.303 / np.sqrt(3))
    # large n uses the normal quantile
    x = np.arange(100.0)
    assert mean_ci95(x)[1] == pytest.approx(1.96 * x.std(ddof=1) / 10)
    assert mean_ci95([5.0]) == (5.0, 0.0)
    with pytest.raises(ValueError):
        mean_ci95([])


def test_run_dir_layout(tmp_path) -> None:
    a = make_run_dir(tmp_path, "Navigation2D", "maml", 3)
    b = make_run_dir(tmp_path, "Navigation2D", "maml", 3)
    assert a != b and (a / "checkpoints").is_dir()
    env, algo, seed, stamp = a.name.split("__")
    assert (env, algo, seed) == ("Navigation2D", "maml", "3") and len(stamp) >= 15


def test_checkpoints_atomic_keep_latest(tmp_path) -> None:
    for it in (1, 2, 3):
        save_checkpoint(tmp_path, it, {"it": it, "w": torch.full((2,), float(it))}, keep=2)
    files = sorted((tmp_path / "checkpoints").glob("*"))
    assert [f.name for f in files] == ["ckpt_00000002.pt", "ckpt_00000002.pt.sha256",
                                       "ckpt_00000003.pt", "ckpt_00000003.pt.sha256"]  # no .tmp
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and load_checkpoint(latest)["it"] == 3
    assert latest_checkpoint(tmp_path / "nothing") is None


def test_rng_state_round_trip_and_seeding() -> None:
    seed_everything(7)
    s = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(s)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b
    seed_everything(7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_plot_adaptation_writes_png(tmp_path) -> None:
    path = plot_adaptation({"maml": ([-30, -20, -15], [1, 1, 1])}, tmp_path / "a.png",
                           title="t", ylabel="return")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_says_the_band_is_a_95_ci_and_keeps_the_title(tmp_path, monkeypatch) -> None:
    import matplotlib.figure

    seen = {}
    original = matplotlib.figure.Figure.savefig

    def capture(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen["legend"] = [t.get_text() for t in self.axes[0].get_legend().get_texts()]
        seen["title"] = self.axes[0].get_title()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", capture)
    plot_adaptation({"maml": ([1, 2], [0.5, 0.5])}, tmp_path / "p.png",
                    title="Navigation2D, iteration 60: 20 held-out tasks x 2 seeds",
                    ylabel="return")
    assert "95% CI" in seen["legend"] and "maml (mean)" in seen["legend"]
    assert seen["title"] == "Navigation2D, iteration 60: 20 held-out tasks x 2 seeds"


def test_machine_description_names_cpu_cores_and_torch() -> None:
    import torch

    from metarl.utils import machine_description

    line = machine_description()
    assert line.endswith(f"torch {torch.__version__}") and " cores" in line
    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                     None)
    if model is not None:
        assert line.startswith(model)
