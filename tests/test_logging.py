from __future__ import annotations

import io
import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from metarl.logging import Logger, read_scalars, write_json


def test_logger_writes_tensorboard_scalars_and_hparams(tmp_path) -> None:
    out = io.StringIO()
    log = Logger(tmp_path, stream=out)
    log.log_hparams({"inner_lr": 0.1, "algo": "maml"})
    for step in range(3):
        log.record("adapt/return_step0", -10.0 + step)
        log.record_dict({"kl": 0.01 * step}, prefix="trpo/")
        assert log.dump(step)["trpo/kl"] == 0.01 * step
    log.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"adapt/return_step0", "trpo/kl"}
    assert [e.value for e in acc.Scalars("adapt/return_step0")] == [-10.0, -9.0, -8.0]
    assert [e.step for e in acc.Scalars("trpo/kl")] == [0, 1, 2]
    assert "hyperparameters/text_summary" in acc.Tags()["tensors"]
    assert "[2] return_step0=-8 kl=0.02" in out.getvalue()


def test_dump_clears_and_console_only(tmp_path) -> None:
    log = Logger(None, console=False)
    log.record("a", 1.0)
    assert log.dump(0) == {"a": 1.0}
    assert log.dump(1) == {}


def test_write_json_atomic(tmp_path) -> None:
    import numpy as np

    write_json(tmp_path / "r.json", {"x": np.arange(3), "p": tmp_path})
    assert json.loads((tmp_path / "r.json").read_text())["x"] == [0, 1, 2]
    assert not list(tmp_path.glob("*.tmp"))


def test_console_skips_steps_without_console_keys() -> None:
    import io

    out = io.StringIO()
    log = Logger(None, console=True, console_keys=("adapt/return_step0",), stream=out)
    log.record("eval/return_step0", -3.0)  # not a console key
    log.dump(5)
    log.record("adapt/return_step0", -8.0)
    log.dump(6)
    assert out.getvalue() == "[6] return_step0=-8\n"


def test_read_scalars_gives_back_what_the_logger_wrote(tmp_path) -> None:
    logger = Logger(tmp_path, console=False)
    for step in (1, 2):
        logger.record("trpo/kl", 0.5 * step)
        logger.dump(step)
    logger.close()
    assert read_scalars(tmp_path, "trpo/kl") == {1: 0.5, 2: 1.0}
    assert read_scalars(tmp_path, "missing") == {}
