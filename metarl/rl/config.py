"""``TrainConfig``: every option of ``metarl train``, validated before any work, and its
``config.json`` round trip.

The device and the thread count belong to the call, not to the run: a run trained on CUDA
resumes and evaluates on a CPU machine (its saved device is recorded, never re-validated).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro

from metarl.core import (
    ALGO_NAMES,
    PATH_CHOICES,
    MetaAlgorithm,
    get_algorithm,
    resolve_device,
    with_fd_delta,
)
from metarl.core.bootstrap import LR_META, MATCHES, BootstrapOptions, check_bootstrap_options
from metarl.options import Device, OptFloat, OptInt, choices
from metarl.rl.presets import (
    ENV_NAMES,
    METAWORLD_ENVS,
    PRESET_NAMES,
    Preset,
    get_preset,
    is_metaworld,
    override,
)
from metarl.rl.ray_sampler import SAMPLERS, check_sampler_options
from metarl.runs import RunError, check_run_dir, saved_options
from metarl.utils import check_seed

MAX_THREADS = 1024  # torch.set_num_threads overflows past 2**31 - 1 (found by the config fuzzer)


@dataclass(frozen=True)
class TrainConfig:
    """Meta-train a MAML-TRPO learner (no options: Navigation2D MAML, the fast preset).

    Options left unset take the preset's value (see `metarl envs` and docs/rl.md).
    """

    env: Annotated[str, tyro.conf.arg(metavar=choices(ENV_NAMES + METAWORLD_ENVS))] = \
        "Navigation2D"
    """Task distribution, or a Meta-World benchmark (ML1-<task> such as ML1-reach-v3, ML10,
    ML45; the metaworld extra, in its own venv: make .venv-mw/.installed)."""
    algo: Annotated[str, tyro.conf.arg(metavar=choices(ALGO_NAMES))] = "maml"
    """Meta-algorithm (docs/architecture.md): maml (Finn et al., 2017), fomaml, anil (Raghu et
    al., 2020), metasgd (learned per-tensor inner lrs), lslr (learned per-step inner lrs)."""
    preset: Annotated[str, tyro.conf.arg(metavar=choices(PRESET_NAMES))] = "fast"
    """Hyper-parameter preset: paper (Finn et al.'s standard setting) or fast (laptop-sized)."""
    iterations: OptInt = None
    """Meta-iterations (on --resume: the total to reach)."""
    meta_batch: OptInt = None
    """Tasks per meta-iteration (paper: 40, or 20 for Navigation2D)."""
    episodes_per_task: OptInt = None
    """Episodes per task before and after adaptation (paper: 20)."""
    horizon: OptInt = None
    """Steps per episode (paper 200 / fast 100; Navigation2D 100)."""
    inner_steps: OptInt = None
    """Inner policy-gradient steps during meta-training (0: no adaptation; paper: 1)."""
    inner_lr: OptFloat = None
    """Training inner lr, any finite sign; the initial value of learned lrs (paper: 0.1)."""
    eval_inner_lr: OptFloat = None
    """Evaluation inner lr, any finite sign (default: the training rule, learned lrs too)."""
    gamma: OptFloat = None
    """Discount factor in [0, 1] (paper: 0.99)."""
    gae_lambda: OptFloat = None
    """GAE lambda in [0, 1] (paper: 1.0)."""
    max_kl: OptFloat = None
    """TRPO trust region: maximum mean KL, > 0 (paper: 0.01)."""
    cg_iters: OptInt = None
    """Conjugate-gradient iterations, >= 1 (paper: 10)."""
    cg_damping: OptFloat = None
    """Damping added to the Fisher-vector product, >= 0 (paper: 1e-5)."""
    ls_steps: OptInt = None
    """Backtracking line-search steps, >= 1 (paper: 15)."""
    ls_ratio: OptFloat = None
    """Line-search step shrink ratio in (0, 1) (paper: 0.8)."""
    fvp_subsample: OptFloat = None
    """Fraction of samples in the Fisher-vector products, in (0, 1] (paper: 1)."""
    hidden: Annotated[tuple[int, ...] | None, tyro.conf.arg(metavar="INT [INT ...]")] = None
    """Hidden layer sizes of the Gaussian MLP policy (paper: 64 64)."""
    adapt_log_std: bool = True
    """Adapt the policy's log-std in the inner loop too."""
    meta_update_path: Annotated[str, tyro.conf.arg(metavar=choices(PATH_CHOICES))] = "auto"
    """Meta-update over tasks: auto (time both on the first update, keep the faster),
    batched (vmap) or loop (per task)."""
    eval_every: OptInt = None
    """Held-out evaluation every this many iterations (0: only at the end)."""
    eval_tasks: OptInt = None
    """Held-out tasks per evaluation (from the test split)."""
    eval_inner_steps: OptInt = None
    """Inner steps at evaluation: returns after 0..K steps (paper: 3)."""
    eval_seeds: OptInt = None
    """Seeds per evaluation (mean and 95% CI over tasks and seeds)."""
    seed: int = 0
    """Seed of the policy initialisation, the training task sequence and the sampler."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto (this call's: a run resumes on any device)."""
    threads: int = 0
    """Torch CPU threads (0: torch's default; 1 is fastest on a busy machine)."""
    run_root: str = "runs"
    """Folder holding run folders."""
    resume: Annotated[str | None, tyro.conf.arg(metavar="RUN_DIR")] = None
    """Run folder to continue from its latest checkpoint (its saved config is reused)."""
    checkpoint_every: int = 10
    """Checkpoint after the first iteration, then every this many iterations..."""
    checkpoint_minutes: float = 2.0
    """...or this many minutes, whichever comes first (and always at the end and on Ctrl-C)."""
    progress: bool = True
    """Show a progress bar (iteration, env steps/s, return); --no-progress prints a line per
    iteration instead."""
    sampler: Annotated[str, tyro.conf.arg(metavar=choices(SAMPLERS))] = "local"
    """Where episodes are sampled: local (one batched env here) or ray (Ray actors, whole
    tasks each; the optional extra metarl[ray]); the same episodes either way (docs/ray.md)."""
    ray_address: Annotated[str | None, tyro.conf.arg(metavar="ADDR")] = None
    """Ray cluster to join with --sampler ray (auto, HOST:PORT); default: a local Ray runtime."""
    ray_actors: int = 2
    """Ray sampler actors, in [1, meta_batch]; each samples a slice of whole tasks."""
    max_nonfinite_updates: int = 5
    """Stop after this many consecutive meta-updates skipped as non-finite (NaN/inf loss,
    gradient, step, observation or reward), >= 1."""
    fd_delta: float = 1e-3
    """Finite-difference step of fdmaml / fdmaml-sym, a length in parameter space, > 0
    (Chayti & Jaggi, 2024). The outer step stays TRPO."""
    inner_lr_meta: Annotated[str, tyro.conf.arg(metavar=choices(LR_META))] = "gradient"
    """How learned inner lrs (--algo metasgd, lslr) learn: gradient (moved by TRPO with the
    policy) or bmg (bootstrapped meta-gradients toward a target policy, Flennerhag et al.,
    2022, by Adam with --bmg-lr; TRPO then moves the policy only)."""
    bmg_l: int = 1
    """BMG target: inner steps ahead of the adapted policy (L >= 1; the last is a plain
    gradient step on the post-update surrogate)."""
    bmg_step: float = 0.1
    """BMG target: size of its final gradient step on the post-update surrogate, > 0."""
    bmg_match: Annotated[str, tyro.conf.arg(metavar=choices(MATCHES))] = "kl"
    """BMG matching function: kl (KL(target policy || adapted policy) on the post-update
    observations) or squared (half the squared parameter distance)."""
    bmg_lr: float = 1e-3
    """Adam lr of the inner lrs under --inner-lr-meta bmg, > 0."""

    def __post_init__(self) -> None:
        _check_choices(self)
        hp = self.hp
        _check_counts(hp)
        _check_run_options(self)
        _check_numbers(hp)
        check_sampler_options(self.sampler, self.ray_address, self.ray_actors, hp.meta_batch)
        if hp.inner_steps == 0 and self.algorithm.lr_kind != "fixed":
            raise ValueError(f"inner_steps must be >= 1 for algo {self.algo!r} (it learns "
                             f"inner lrs), got 0")
        _check_bootstrap(self)
        if self.resume is not None:
            check_run_dir("resume", self.resume)

    @property
    def bootstrap(self) -> BootstrapOptions | None:
        """The BMG target of the learned inner lrs, or ``None`` when TRPO moves them."""
        if self.inner_lr_meta != "bmg":
            return None
        return BootstrapOptions(lookahead=self.bmg_l, step=self.bmg_step, match=self.bmg_match)

    @property
    def hp(self) -> Preset:
        """The preset with every given override applied."""
        changes = {f.name: getattr(self, f.name) for f in dataclasses.fields(Preset)}
        return override(get_preset(self.env, self.preset), **changes)

    @property
    def algorithm(self) -> MetaAlgorithm:
        """The meta-algorithm ``algo`` names (with ``fd_delta`` for fdmaml*)."""
        return with_fd_delta(get_algorithm(self.algo), self.fd_delta)

    @property
    def num_envs(self) -> int:
        """Environments stepped in lock-step per sampling phase (tasks x episodes)."""
        return self.hp.meta_batch * self.hp.episodes_per_task


def _check_metaworld(env: str) -> None:
    from metarl.envs.metaworld import parse_name

    try:
        parse_name(env)
    except ImportError as err:
        raise ValueError(f"env {env!r} needs Meta-World: {err}") from err
    except ValueError as err:
        raise ValueError(f"env must be one of {ENV_NAMES} or a Meta-World benchmark: {err}") \
            from err


def _check_choices(cfg: TrainConfig) -> None:
    if is_metaworld(cfg.env):
        _check_metaworld(cfg.env)
    for name, allowed in (("env", ENV_NAMES + METAWORLD_ENVS), ("algo", ALGO_NAMES),
                          ("preset", PRESET_NAMES), ("meta_update_path", PATH_CHOICES)):
        if name == "env" and is_metaworld(cfg.env):
            continue
        value = getattr(cfg, name)
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    resolve_device(cfg.device)
    with_fd_delta(get_algorithm(cfg.algo), cfg.fd_delta)


def _check_bootstrap(cfg: TrainConfig) -> None:
    if cfg.inner_lr_meta not in LR_META:
        raise ValueError(f"inner_lr_meta must be one of {LR_META}, got {cfg.inner_lr_meta!r}")
    check_bootstrap_options(cfg.bmg_l, cfg.bmg_step, cfg.bmg_match,
                            ("bmg_l", "bmg_step", "bmg_match"))
    if not (math.isfinite(cfg.bmg_lr) and cfg.bmg_lr > 0):
        raise ValueError(f"bmg_lr must be a finite number > 0, got {cfg.bmg_lr}")
    if cfg.inner_lr_meta == "bmg" and cfg.algorithm.lr_kind == "fixed":
        raise ValueError(f"inner_lr_meta 'bmg' needs learned inner lrs (algo metasgd or "
                         f"lslr), got algo {cfg.algo!r}")


def _check_counts(hp: Preset) -> None:
    for name in ("iterations", "meta_batch", "episodes_per_task", "horizon", "cg_iters",
                 "ls_steps", "eval_tasks", "eval_seeds"):
        value = getattr(hp, name)
        if isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value}")
    for name in ("inner_steps", "eval_inner_steps", "eval_every"):
        value = getattr(hp, name)
        if value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value}")
    if not hp.hidden or any(h < 1 for h in hp.hidden):
        raise ValueError(f"hidden must be one or more layer sizes >= 1, got {hp.hidden}")


def _check_run_options(cfg: TrainConfig) -> None:
    if cfg.checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an int >= 1, got {cfg.checkpoint_every}")
    if not cfg.checkpoint_minutes > 0:
        raise ValueError(f"checkpoint_minutes must be a number > 0, got "
                         f"{cfg.checkpoint_minutes}")
    if not 0 <= cfg.threads <= MAX_THREADS:
        raise ValueError(f"threads must be an int in [0, {MAX_THREADS}] (0: torch's default), "
                         f"got {cfg.threads}")
    if isinstance(cfg.max_nonfinite_updates, bool) or cfg.max_nonfinite_updates < 1:
        raise ValueError(f"max_nonfinite_updates must be an int >= 1, got "
                         f"{cfg.max_nonfinite_updates}")
    check_seed("seed", cfg.seed)


def _check_numbers(hp: Preset) -> None:
    checks = (("gamma", 0 <= hp.gamma <= 1, "a number in [0, 1]"),
              ("gae_lambda", 0 <= hp.gae_lambda <= 1, "a number in [0, 1]"),
              ("fvp_subsample", 0 < hp.fvp_subsample <= 1, "a number in (0, 1]"),
              ("inner_lr", True, "a finite number (any sign)"))
    for name, ok, allowed in checks:
        value = getattr(hp, name)
        if not (ok and math.isfinite(value)):
            raise ValueError(f"{name} must be {allowed}, got {value}")
    if hp.eval_inner_lr is not None and not math.isfinite(hp.eval_inner_lr):
        raise ValueError(f"eval_inner_lr must be a finite number (any sign), got "
                         f"{hp.eval_inner_lr}")
    hp.trpo  # noqa: B018  (TrpoConfig validates max_kl, cg_*, ls_*)


# --------------------------------------------------------------------------------------------
# config.json round trip
# --------------------------------------------------------------------------------------------


def config_to_json(cfg: TrainConfig) -> dict[str, Any]:
    """``config.json``: every field, the resolved hyper-parameters and the run kind."""
    return {"kind": "rl", **dataclasses.asdict(cfg), "resolved": dataclasses.asdict(cfg.hp)}


def load_config(run_dir: str | Path, **call: Any) -> TrainConfig:
    """The :class:`TrainConfig` saved in ``run_dir/config.json``, with this call's options.

    Args:
        run_dir: A run folder.
        call: Options of the present call that replace the saved ones (``device``,
            ``threads``, ``progress``, ...); the saved device is never validated, so a run
            trained on CUDA loads on a machine without it.
    """
    kwargs = saved_options(run_dir, "rl", {f.name for f in dataclasses.fields(TrainConfig)})
    if kwargs.get("hidden") is not None:
        kwargs["hidden"] = tuple(kwargs["hidden"])
    kwargs.update({"device": "cpu", "resume": None, **call})
    return TrainConfig(**kwargs)


def resume_config(cfg: TrainConfig) -> TrainConfig:
    """The saved config of ``cfg.resume``, with this call's iterations, device, sampler and
    output.

    Raises:
        RunError: When this call's options do not fit the saved run (``--ray-actors`` over
            its meta-batch).
    """
    assert cfg.resume is not None
    try:
        saved = load_config(cfg.resume, device=cfg.device, threads=cfg.threads,
                            progress=cfg.progress, sampler=cfg.sampler,
                            ray_address=cfg.ray_address, ray_actors=cfg.ray_actors)
    except ValueError as err:
        raise RunError(str(err)) from err
    iterations = cfg.iterations if cfg.iterations is not None else saved.iterations
    return dataclasses.replace(saved, iterations=iterations, resume=cfg.resume)
