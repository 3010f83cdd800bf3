"""The Omniglot run end to end on the real data: ``metarl supervised --task omniglot`` must
beat chance (20% on 5-way) by a wide margin on the test characters, and ``metarl evaluate``
must report accuracy with 95% CIs, NIL, eval.json, the plot and TensorBoard.

CI runs the short form (300 meta-iterations of 4 tasks, one thread: about a minute of CPU);
``METARL_SLOW=full`` runs MAML's own length (60,000 iterations of 32 tasks, hours on a CPU).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from metarl.cli import main as cli
from metarl.logging import read_scalars

REAL = Path("..") / "shared" / "data" / "omniglot"
FULL = os.environ.get("METARL_SLOW") == "full"
ITERATIONS, META_BATCH = (60_000, 32) if FULL else (300, 4)


@pytest.fixture
def one_thread() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.skipif(not (REAL / "images_background.zip").is_file(),
                    reason="the real Omniglot archives are not in ../shared/data/omniglot")
def test_omniglot_5way_1shot_maml_beats_chance_on_test_characters(
        tmp_path: Path, one_thread: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["supervised", "--task", "omniglot", "--ways", "5", "--shots", "1",
                "--data-root", str(REAL), "--iterations", str(ITERATIONS), "--meta-batch",
                str(META_BATCH), "--inner-lr", "0.4", "--eval-tasks", "200",
                "--eval-inner-steps", "3", "--no-progress", "--log-every", "100",
                "--checkpoint-every", str(ITERATIONS), "--run-root", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.startswith("omniglot5way1shot__maml__0__")
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["metric"] == "accuracy" and result["tasks"] == 200
    assert result["bn_eval"] == "batch"  # plain MAML: batch statistics, as MAML's code
    assert len(result["accuracy_mean"]) == 4
    accuracy, ci95 = result["final_accuracy"], result["final_ci95"]
    assert accuracy - ci95 > (0.9 if FULL else 0.5), result  # chance is 0.2
    assert result["accuracy_mean"][0] == pytest.approx(0.2, abs=0.06)  # labels are shuffled
    assert (run_dir / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    split = json.loads((run_dir / "split.json").read_text())
    assert (len(split["train"]), len(split["test"])) == (1200, 423)
    tb = read_scalars(run_dir, "eval/accuracy_step3")
    assert tb[ITERATIONS] == pytest.approx(result["accuracy_mean"][3], rel=1e-6)

    # metarl evaluate RUN_DIR: 600 test episodes by default; here fewer, with NIL.
    capsys.readouterr()
    assert cli(["evaluate", str(run_dir), "--num-tasks", "100", "--nil", "--out", "nil"]) == 0
    out = capsys.readouterr().out
    assert "query accuracy % (mean +- 95% CI)" in out and "NIL" in out
    evaluation = json.loads((run_dir / "evaluations" / "nil.json").read_text())
    assert evaluation["tasks"] == 100 and evaluation["nil_accuracy"] > 0.4
    assert read_scalars(run_dir / "evaluations" / "nil", "eval/nil_accuracy")
