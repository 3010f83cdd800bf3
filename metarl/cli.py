"""The ``metarl`` command: ``metarl <subcommand> [options]``.

Each subcommand is a frozen dataclass config parsed by tyro plus a ``main(cfg)`` function in
its own module; this file only dispatches, importing the module lazily so ``--help`` is fast.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    module: str
    config: str
    help: str


COMMANDS: dict[str, Command] = {
    "train": Command("metarl.rl.train", "TrainConfig",
                     "meta-train a meta-algorithm (--algo: maml, anil, fomaml, fdmaml, ...) "
                     "with a TRPO outer step on a task distribution (no options: the default "
                     "agent, Navigation2D MAML, a few minutes on a laptop)"),
    "evaluate": Command("metarl.rl.evaluate_cmd", "EvalConfig",
                        "evaluate a run's adaptation on held-out tasks: RUN_DIR [--tasks FILE] "
                        "[--inner-steps K] [--seeds S] (supervised runs too)"),
    "baseline": Command("metarl.rl.baselines_sb3", "BaselineConfig",
                        "stable-baselines3 PPO baselines: multi-task pre-training, then "
                        "fine-tuning on held-out tasks (--baseline finetune) or the task in "
                        "the observation (--baseline oracle), evaluated as the meta-learners"),
    "supervised": Command("metarl.supervised.train", "SupervisedConfig",
                          "few-shot regression (sinusoid, mixed linear regression) and "
                          "classification (omniglot, miniimagenet) with any meta-algorithm "
                          "(maml, fomaml, anil, metasgd, lslr, mamlpp, ...)"),
    "supervised-evaluate": Command("metarl.supervised.evaluate_cmd", "SupervisedEvalConfig",
                                   "evaluate a supervised run on fresh held-out tasks"),
}


def usage() -> str:
    lines = ["usage: metarl <command> [options]   (metarl <command> --help for its options)", "",
             "commands:"]
    lines += [f"  {name:<20} {cmd.help}" for name, cmd in COMMANDS.items()]
    lines += ["  envs                 list the task distributions and their horizons"]
    return "\n".join(lines)


def _list_envs() -> int:
    from metarl.envs.registration import DISTRIBUTIONS, HORIZONS, gym_id

    print(f"{'distribution':<22} {'gymnasium id':<32} paper  fast")
    for name in DISTRIBUTIONS:
        h = HORIZONS[name]
        print(f"{name:<22} {gym_id(name):<32} {h['paper']:>5} {h['fast']:>5}")
    return 0


def _is_supervised_run(run_dir: str) -> bool:
    cfg = Path(run_dir) / "config.json"
    return cfg.exists() and json.loads(cfg.read_text()).get("kind") == "supervised"


def main(argv: Sequence[str] | None = None) -> int:
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name == "envs":
        return _list_envs()
    if name not in COMMANDS:
        print(f"metarl: unknown command {name!r}; choose one of {sorted(COMMANDS) + ['envs']}",
              file=sys.stderr)
        return 2
    if name == "evaluate" and rest and not rest[0].startswith("-") and _is_supervised_run(rest[0]):
        name = "supervised-evaluate"
    cmd = COMMANDS[name]
    module = importlib.import_module(cmd.module)
    config_cls = getattr(module, cmd.config)
    try:
        cfg = tyro.cli(config_cls, args=rest, prog=f"metarl {args[0]}", description=cmd.help)
    except ValueError as e:  # config validation runs in __post_init__, before any work
        print(f"metarl {args[0]}: error: {e}", file=sys.stderr)
        return 2
    from metarl.runs import RunError

    try:
        module.main(cfg)
    except RunError as e:
        print(f"metarl {args[0]}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
