"""``metarl train``: meta-train MAML-TRPO / ANIL-TRPO / first-order MAML on a task distribution.

One iteration samples a meta-batch of training tasks from the distribution's own generator,
then runs :meth:`MetaLearner.step` (pre-update episodes, inner step per task, post-update
episodes, outer TRPO step; Finn et al., 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks"; Raghu et al., 2020, "Rapid Learning or Feature Reuse?" for
ANIL). Runs live in ``runs/<env>__<algo>__<seed>__<time>/`` with ``config.json``, TensorBoard
events, atomic checkpoints holding every RNG state (a resumed run continues the same
trajectory), periodic held-out evaluations, and a final ``eval.json`` + ``eval.png``.
With no options it trains the default agent: Navigation2D MAML, a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from metarl.core import resolve_device
from metarl.logging import Logger, write_json
from metarl.rl.presets import (
    ALGOS,
    ENV_NAMES,
    PRESET_NAMES,
    AlgoSpec,
    Preset,
    algo_spec,
    get_preset,
    override,
)
from metarl.utils import check_run_dir

META_UPDATE_PATHS = ("auto", "batched", "loop")
CONSOLE_KEYS = ("adapt/return_step0", "adapt/return_step1", "trpo/kl", "time/env_steps_per_s")


@dataclass(frozen=True)
class TrainConfig:
    """Meta-train a MAML-TRPO learner (no options: Navigation2D MAML, the fast preset)."""

    env: str = "Navigation2D"
    """Task distribution (see `metarl envs`)."""
    algo: str = "maml"
    """Meta-learner: maml (Finn et al., 2017), anil (Raghu et al., 2020) or fomaml."""
    preset: str = "fast"
    """Hyper-parameter preset: paper (Finn et al.'s standard setting) or fast (laptop-sized)."""
    iterations: int | None = None
    """Meta-iterations (on --resume: the total to reach); None: the preset's."""
    meta_batch: int | None = None
    """Tasks per meta-iteration; None: the preset's (40, or 20 for Navigation2D, in paper)."""
    episodes_per_task: int | None = None
    """Episodes per task before and after adaptation; None: the preset's."""
    horizon: int | None = None
    """Steps per episode; None: the preset's (paper 200 / fast 100; Navigation2D 100)."""
    inner_steps: int | None = None
    """Inner policy-gradient steps during meta-training (0: no adaptation); None: preset's."""
    inner_lr: float | None = None
    """Training inner lr, any finite sign; None: the preset's (0.1)."""
    eval_inner_lr: float | None = None
    """Evaluation inner lr, any finite sign; None: the preset's (0.1)."""
    gamma: float | None = None
    """Discount factor in [0, 1]; None: the preset's (0.99)."""
    gae_lambda: float | None = None
    """GAE lambda in [0, 1]; None: the preset's (1.0)."""
    max_kl: float | None = None
    """TRPO trust region: maximum mean KL, > 0; None: the preset's (0.01)."""
    cg_iters: int | None = None
    """Conjugate-gradient iterations, >= 1; None: the preset's (10)."""
    cg_damping: float | None = None
    """Damping added to the Fisher-vector product, >= 0; None: the preset's (1e-5)."""
    ls_steps: int | None = None
    """Backtracking line-search steps, >= 1; None: the preset's (15)."""
    ls_ratio: float | None = None
    """Line-search step shrink ratio in (0, 1); None: the preset's (0.8)."""
    fvp_subsample: float | None = None
    """Fraction of samples in the Fisher-vector products, in (0, 1]; None: the preset's (1)."""
    hidden: tuple[int, ...] | None = None
    """Hidden layer sizes of the Gaussian MLP policy; None: the preset's (64 64)."""
    adapt_log_std: bool = True
    """Adapt the policy's log-std in the inner loop too."""
    meta_update_path: str = "auto"
    """Meta-update over tasks: auto (the learner picks), batched (vmap) or loop (per task)."""
    eval_every: int | None = None
    """Held-out evaluation every this many iterations (0: only at the end); None: preset's."""
    eval_tasks: int | None = None
    """Held-out tasks per evaluation (from the test split); None: the preset's."""
    eval_inner_steps: int | None = None
    """Inner steps at evaluation (returns after 0..K steps); None: the preset's (3)."""
    eval_seeds: int | None = None
    """Seeds per evaluation (mean and 95% CI over tasks and seeds); None: the preset's."""
    seed: int = 0
    """Seed of the policy initialisation, the training task sequence and the sampler."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    threads: int = 0
    """Torch CPU threads (0: torch's default; 1 is fastest on a busy machine)."""
    run_root: str = "runs"
    """Folder holding run folders."""
    resume: str | None = None
    """Run folder to continue from its latest checkpoint (its saved config is reused)."""
    checkpoint_every: int = 10
    """Save a checkpoint every this many iterations (and always at the end and on Ctrl-C)."""
    progress: bool = True
    """Show a tqdm progress bar (iteration, env steps/s, return)."""

    def __post_init__(self) -> None:
        _check_choices(self)
        hp = self.hp
        _check_counts(hp, self.checkpoint_every)
        if self.threads < 0:
            raise ValueError(f"threads must be an int >= 0 (0: torch's default), got "
                             f"{self.threads}")
        _check_numbers(hp)
        _check_run_dir("resume", self.resume)

    @property
    def hp(self) -> Preset:
        """The preset with every given override applied."""
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(Preset)}
        return override(get_preset(self.env, self.preset), **changes)

    @property
    def spec(self) -> AlgoSpec:
        """Adapted keys and derivative order of ``algo``."""
        return algo_spec(self.algo)

    @property
    def num_envs(self) -> int:
        """Environments stepped in lock-step per sampling phase (tasks x episodes)."""
        return self.hp.meta_batch * self.hp.episodes_per_task

    @property
    def env_steps_per_iteration(self) -> int:
        """Env steps of one iteration: pre- and post-update episodes of every task."""
        return 2 * self.num_envs * self.hp.horizon


def _check_choices(cfg: TrainConfig) -> None:
    for name, allowed in (("env", ENV_NAMES), ("algo", ALGOS), ("preset", PRESET_NAMES),
                          ("meta_update_path", META_UPDATE_PATHS)):
        value = getattr(cfg, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    resolve_device(cfg.device)


def _check_counts(hp: Preset, checkpoint_every: int) -> None:
    at_least_one = {name: getattr(hp, name) for name in (
        "iterations", "meta_batch", "episodes_per_task", "horizon", "cg_iters", "ls_steps",
        "eval_tasks", "eval_seeds")}
    at_least_one["checkpoint_every"] = checkpoint_every
    for name, value in at_least_one.items():
        if isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value}")
    for name in ("inner_steps", "eval_inner_steps", "eval_every"):
        value = getattr(hp, name)
        if value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value}")
    if not hp.hidden or any(h < 1 for h in hp.hidden):
        raise ValueError(f"hidden must be one or more layer sizes >= 1, got {hp.hidden}")


def _check_numbers(hp: Preset) -> None:
    checks = (("max_kl", hp.max_kl > 0, "a finite number > 0"),
              ("cg_damping", hp.cg_damping >= 0, "a finite number >= 0"),
              ("ls_ratio", 0 < hp.ls_ratio < 1, "a number in (0, 1)"),
              ("gamma", 0 <= hp.gamma <= 1, "a number in [0, 1]"),
              ("gae_lambda", 0 <= hp.gae_lambda <= 1, "a number in [0, 1]"),
              ("fvp_subsample", 0 < hp.fvp_subsample <= 1, "a number in (0, 1]"),
              ("inner_lr", True, "a finite number (any sign)"),
              ("eval_inner_lr", True, "a finite number (any sign)"))
    for name, ok, allowed in checks:
        value = getattr(hp, name)
        if not (ok and math.isfinite(value)):
            raise ValueError(f"{name} must be {allowed}, got {value}")


def _check_run_dir(name: str, path: str | None) -> None:
    if path is not None:
        check_run_dir(name, path)


# --------------------------------------------------------------------------------------------
# config.json round trip
# --------------------------------------------------------------------------------------------


def config_to_json(cfg: TrainConfig) -> dict[str, Any]:
    """``config.json``: every field, the resolved hyper-parameters and the run kind."""
    return {"kind": "rl", **dataclasses.asdict(cfg), "resolved": dataclasses.asdict(cfg.hp)}


def load_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json``."""
    saved = json.loads((Path(run_dir) / "config.json").read_text())
    if saved.get("kind") != "rl":
        raise ValueError(f"run_dir must be a metarl RL run (config.json kind 'rl'), got "
                         f"kind {saved.get('kind')!r} in {run_dir}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    kwargs = {k: v for k, v in saved.items() if k in names}
    if kwargs.get("hidden") is not None:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    return TrainConfig(**kwargs)


def resume_config(cfg: TrainConfig) -> TrainConfig:
    """The saved config of ``cfg.resume``, with this call's iterations, device and progress."""
    assert cfg.resume is not None
    saved = load_config(cfg.resume)
    iterations = cfg.iterations if cfg.iterations is not None else saved.iterations
    return dataclasses.replace(saved, iterations=iterations, device=cfg.device,
                               threads=cfg.threads, progress=cfg.progress, resume=cfg.resume)


# --------------------------------------------------------------------------------------------
# Building the pieces
# --------------------------------------------------------------------------------------------


def make_env(cfg: TrainConfig, num_envs: int, seed: int | None) -> Any:
    """``num_envs`` environments of ``cfg.env`` at the run's horizon, as one batched env."""
    from metarl.envs.batched import make_batched

    return make_batched(cfg.env, num_envs, horizon=cfg.hp.horizon, preset=cfg.preset, seed=seed)


def build_learner(cfg: TrainConfig, env: Any) -> Any:
    """The Gaussian MLP policy and the MAML/ANIL-TRPO learner ``cfg`` describes."""
    from metarl.rl.learner import MetaLearner
    from metarl.rl.policy import GaussianMLPPolicy

    hp, spec = cfg.hp, cfg.spec
    obs_dim = int(env.single_observation_space.shape[0])
    act_dim = int(env.single_action_space.shape[0])
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden=hp.hidden)
    return MetaLearner(
        policy, adapt=spec.adapt, adapt_log_std=cfg.adapt_log_std, inner_lr=hp.inner_lr,
        eval_inner_lr=hp.eval_inner_lr, inner_steps=hp.inner_steps,
        first_order=spec.first_order, gamma=hp.gamma, gae_lambda=hp.gae_lambda,
        max_kl=hp.max_kl, cg_iters=hp.cg_iters, cg_damping=hp.cg_damping,
        ls_steps=hp.ls_steps, ls_ratio=hp.ls_ratio, fvp_subsample=hp.fvp_subsample,
        meta_update_path=cfg.meta_update_path, device=resolve_device(cfg.device))


def make_sampler(env: Any, episodes_per_task: int, device: str) -> Any:
    from metarl.rl.sampler import BatchedSampler

    return BatchedSampler(env, episodes_per_task, resolve_device(device))


@dataclass
class Run:
    """The live objects of one training run."""

    cfg: TrainConfig
    run_dir: Path
    learner: Any
    env: Any
    sampler: Any
    task_env: Any
    logger: Logger
    iteration: int = 0
    env_steps: int = 0
    wall_s: float = 0.0


def start_run(cfg: TrainConfig) -> Run:
    """A fresh run folder (with ``config.json``) or the resumed one, its pieces seeded/restored."""
    from metarl.utils import make_run_dir, seed_everything

    if cfg.resume is not None:
        run_dir = Path(cfg.resume)
    else:
        run_dir = make_run_dir(cfg.run_root, cfg.env, cfg.algo, cfg.seed)
        write_json(run_dir / "config.json", config_to_json(cfg))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    env = make_env(cfg, cfg.num_envs, cfg.seed)
    # Tasks come from a distribution's own generator, never a global RNG: a one-env copy
    # whose ``np_random`` is seeded by ``reset(seed=)`` and saved in every checkpoint.
    task_env = make_env(cfg, 1, cfg.seed)
    task_env.reset(seed=cfg.seed)
    learner = build_learner(cfg, env)
    sampler = make_sampler(env, cfg.hp.episodes_per_task, cfg.device)
    run = Run(cfg, run_dir, learner, env, sampler, task_env, logger=None)  # type: ignore[arg-type]
    if cfg.resume is not None:
        restore(run)
    run.logger = Logger(run_dir, console=not cfg.progress, console_keys=CONSOLE_KEYS,
                        purge_step=run.iteration + 1 if cfg.resume is not None else None)
    if cfg.resume is None:
        run.logger.log_hparams({**config_to_json(cfg), **dataclasses.asdict(cfg.hp)})
    return run


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def checkpoint_state(run: Run) -> dict[str, Any]:
    """Everything a resumed run needs to continue the same trajectory."""
    from metarl.utils import rng_state

    return {"iteration": run.iteration, "env_steps": run.env_steps, "wall_s": run.wall_s,
            "learner": run.learner.state_dict(), "rng": rng_state(),
            "task_rng": run.task_env.np_random.bit_generator.state,
            "config": dataclasses.asdict(run.cfg)}


def save(run: Run) -> Path:
    from metarl.utils import save_checkpoint

    return save_checkpoint(run.run_dir, run.iteration, checkpoint_state(run))


def restore(run: Run) -> None:
    """Load the latest checkpoint of ``run.run_dir`` into ``run`` (learner, RNGs, counters)."""
    from metarl.utils import latest_checkpoint, load_checkpoint, set_rng_state

    path = latest_checkpoint(run.run_dir)
    assert path is not None  # TrainConfig checked that a checkpoint exists
    state = load_checkpoint(path)
    run.learner.load_state_dict(state["learner"])
    set_rng_state(state["rng"])
    run.task_env.np_random.bit_generator.state = state["task_rng"]
    run.iteration, run.env_steps = int(state["iteration"]), int(state["env_steps"])
    run.wall_s = float(state["wall_s"])


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


class StopFlag:
    """Ctrl-C (SIGINT) sets ``requested``; the loop then checkpoints at the end of the
    iteration and exits. A second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("\nCtrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to "
              "abort at once)", file=sys.stderr, flush=True)


@contextmanager
def sigint_flag() -> Iterator[StopFlag]:
    """Install :class:`StopFlag` as the SIGINT handler (main thread only) for the block."""
    flag = StopFlag()
    try:
        previous = signal.signal(signal.SIGINT, flag)
    except ValueError:  # not the main thread: Ctrl-C keeps its default behaviour
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def train_iteration(run: Run) -> dict[str, float]:
    """Sample training tasks, take one learner step, and return its logs (plus timings)."""
    start = time.perf_counter()
    tasks = run.task_env.sample_tasks(run.cfg.hp.meta_batch, "train")
    logs = dict(run.learner.step(run.sampler, tasks))
    seconds = time.perf_counter() - start
    run.iteration += 1
    run.env_steps += int(logs.get("env_steps", run.cfg.env_steps_per_iteration))
    run.wall_s += seconds
    logs["time/iteration_s"] = seconds
    logs["time/total_env_steps"] = run.env_steps
    logs["time/total_s"] = run.wall_s
    return logs


def periodic_eval(run: Run) -> dict[str, float]:
    """Held-out evaluation logs (``eval/return_step{k}``, ``time/evaluation_s``) when due."""
    every, last = run.cfg.hp.eval_every, run.iteration >= run.cfg.hp.iterations
    if every == 0 or run.iteration % every != 0 or last:
        return {}
    from metarl.rl.evaluate import evaluate_run

    start = time.perf_counter()
    result = evaluate_run(run.cfg, run.learner)
    logs = result.scalars()
    logs["time/evaluation_s"] = time.perf_counter() - start
    return logs


def _postfix(logs: dict[str, float], inner_steps: int) -> dict[str, str]:
    ret = logs.get(f"adapt/return_step{inner_steps}", logs.get("adapt/return_step0", math.nan))
    return {"env_steps/s": f"{logs.get('time/env_steps_per_s', math.nan):.3g}",
            "return": f"{ret:.2f}"}


def train_loop(run: Run) -> bool:
    """Iterate to ``cfg.hp.iterations``; returns False when stopped by Ctrl-C."""
    from tqdm import tqdm

    hp = run.cfg.hp
    bar = tqdm(total=hp.iterations, initial=run.iteration, disable=not run.cfg.progress,
               desc=f"{run.cfg.env} {run.cfg.algo}", unit="it", dynamic_ncols=True)
    with sigint_flag() as stop, bar:
        while run.iteration < hp.iterations:
            logs = train_iteration(run)
            logs.update(periodic_eval(run))
            run.logger.record_dict(logs)
            run.logger.dump(run.iteration)
            bar.update(1)
            bar.set_postfix(_postfix(logs, hp.inner_steps))
            done = run.iteration >= hp.iterations
            if done or stop.requested or run.iteration % run.cfg.checkpoint_every == 0:
                save(run)
            if stop.requested and not done:
                return False
    return True


def final_eval(run: Run) -> Path:
    """Evaluate on held-out tasks; write ``eval.json``, ``eval.png`` and ``eval/*`` scalars."""
    from metarl.rl.evaluate import evaluate_run, format_table, write_eval

    start = time.perf_counter()
    result = evaluate_run(run.cfg, run.learner)
    run.logger.record("time/evaluation_s", time.perf_counter() - start)
    path = write_eval(result, run.run_dir, logger=run.logger, step=run.iteration)
    print(f"held-out evaluation ({len(result.tasks)} test tasks x {len(result.seeds)} seeds):\n"
          f"{format_table(result)}", file=sys.stderr)
    return path


def main(cfg: TrainConfig) -> Path:
    """Train (or resume) a run, evaluate it on held-out tasks, and return its folder."""
    if cfg.resume is not None:
        cfg = resume_config(cfg)
    run = start_run(cfg)
    try:
        finished = train_loop(run)
        if not finished:
            print(f"stopped at iteration {run.iteration}; checkpoint saved in {run.run_dir}; "
                  f"continue with: metarl train --resume {run.run_dir}", file=sys.stderr)
            raise SystemExit(130)
        final_eval(run)
    finally:
        run.logger.close()
        run.env.close()
        run.task_env.close()
    print(f"run folder: {run.run_dir}", file=sys.stderr)
    return run.run_dir
