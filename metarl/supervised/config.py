"""Configs of ``metarl supervised`` and ``metarl supervised-evaluate`` (frozen, parsed by tyro).

Every field is validated in ``__post_init__``, before any work, with a ``ValueError`` naming
the field and its allowed values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tyro

from metarl.core import LR_KINDS, adapt_keys, get_params, resolve_device
from metarl.supervised.models import TASKS, build_model
from metarl.supervised.tasks import LinearTaskSpec
from metarl.supervised.trainer import ALGOS, algo_spec
from metarl.utils import check_run_dir


@dataclass(frozen=True)
class SupervisedConfig:
    """Meta-train a few-shot regression learner (defaults: Finn et al.'s 10-shot sinusoid MAML)."""

    task: str = "sinusoid"
    """Task distribution: sinusoid (Finn et al., 2017) or linear (Bernacchia, 2021)."""
    algo: str = "maml"
    """Meta-learner: maml, fomaml, anil or metasgd."""
    shots: int = 10
    """Sinusoid support points per task (K-shot: 5, 10, 20, ...)."""
    query: int = 10
    """Sinusoid query points per task during meta-training."""
    meta_batch: int = 25
    """Tasks per meta-iteration."""
    iterations: int = 70_000
    """Meta-iterations (on --resume: the total to reach)."""
    inner_steps: int = 1
    """Inner gradient steps during meta-training."""
    inner_lr: float = 0.01
    """Training inner lr, any finite sign (the initial value of learned lrs)."""
    eval_inner_lr: float | None = None
    """Evaluation inner lr, any finite sign; None uses the training rule (learned lrs too)."""
    eval_inner_steps: int = 10
    """Inner steps at evaluation: query MSE is reported after 0..this many steps."""
    lr_kind: str | None = None
    """Inner-lr rule: fixed, per_tensor (Meta-SGD) or per_step (MAML++ LSLR); None: the algo's."""
    lr: float = 1e-3
    """Outer (Adam) learning rate."""
    cosine: bool = False
    """Cosine-anneal the outer lr to 0 over the run (MAML++)."""
    clip_norm: float | None = None
    """Clip the meta-gradient's global norm to this value; None: no clipping."""
    msl: bool = False
    """MAML++ multi-step loss: weighted query losses after every inner step."""
    msl_anneal_epochs: int = 10
    """Epochs over which the MSL weights anneal toward the last step."""
    first_order_until: int = 0
    """MAML++ derivative-order annealing: first-order meta-gradients for this many epochs."""
    epoch_length: int = 500
    """Meta-iterations per epoch (the unit of the MAML++ schedules)."""
    head_selector: str | None = None
    """Regex selecting ANIL's head keys; None: the last linear layer."""
    seed: int = 0
    """Seed of the model initialisation and the training task sequence."""
    eval_seed: int = 1_000
    """Seed of the held-out evaluation tasks (the same set for every run)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    run_root: str = "runs"
    """Folder holding run folders."""
    resume: str | None = None
    """Run folder to resume from its latest checkpoint (its saved config is reused)."""
    eval_every: int = 0
    """Evaluate on the held-out tasks every this many iterations (0: only at the end)."""
    eval_tasks: int = 600
    """Held-out tasks per evaluation."""
    eval_query: int = 100
    """Sinusoid query points per held-out task."""
    checkpoint_every: int = 1_000
    """Save a checkpoint every this many iterations (and always at the end)."""
    log_every: int = 100
    """Write training scalars (averaged over this many iterations) to TensorBoard."""
    progress: bool = True
    """Show a tqdm progress bar with it/s and loss."""
    p: int = 10
    """Linear task: input dimension."""
    nu: float = 1.0
    """Linear task: task-weight spread, w ~ N(w0, (nu^2/p) I)."""
    sigma: float = 0.5
    """Linear task: label-noise standard deviation."""
    w0: float = 0.0
    """Linear task: every component of the mean task weight vector."""
    n_t: int = 10
    """Linear task: training (support) points per task."""
    n_v: int = 10
    """Linear task: validation (query) points per task."""
    m: int = 100
    """Linear task: size of the finite pool of training tasks."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_counts(self)
        _check_numbers(self)
        _check_head_and_device(self)
        _check_run_dir("resume", self.resume)

    @property
    def env_name(self) -> str:
        """Name of the task distribution in the run folder."""
        return f"sinusoid{self.shots}shot" if self.task == "sinusoid" else f"linear{self.p}d"

    @property
    def support_size(self) -> int:
        """Support points per task."""
        return self.shots if self.task == "sinusoid" else self.n_t

    @property
    def query_size(self) -> int:
        """Query points per training task."""
        return self.query if self.task == "sinusoid" else self.n_v

    @property
    def eval_query_size(self) -> int:
        """Query points per held-out task."""
        return self.eval_query if self.task == "sinusoid" else self.n_v

    @property
    def linear_spec(self) -> LinearTaskSpec:
        """The mixed linear regression distribution."""
        return LinearTaskSpec(p=self.p, nu=self.nu, sigma=self.sigma, w0=self.w0)


def _check_choices(cfg: SupervisedConfig) -> None:
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}")
    if cfg.algo not in ALGOS:
        raise ValueError(f"algo must be one of {ALGOS}, got {cfg.algo!r}")
    if cfg.lr_kind is not None and cfg.lr_kind not in LR_KINDS:
        raise ValueError(f"lr_kind must be None or one of {LR_KINDS}, got {cfg.lr_kind!r}")


def _check_counts(cfg: SupervisedConfig) -> None:
    at_least_one = ("shots", "query", "meta_batch", "iterations", "inner_steps", "eval_tasks",
                    "eval_query", "checkpoint_every", "log_every", "epoch_length",
                    "msl_anneal_epochs", "p", "n_t", "n_v", "m")
    for name in at_least_one:
        value = getattr(cfg, name)
        if value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value}")
    for name in ("eval_inner_steps", "eval_every", "first_order_until"):
        value = getattr(cfg, name)
        if value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value}")


def _check_numbers(cfg: SupervisedConfig) -> None:
    for name in ("inner_lr", "eval_inner_lr"):
        value = getattr(cfg, name)
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number (any sign), got {value}")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {cfg.lr}")
    if cfg.clip_norm is not None and not (math.isfinite(cfg.clip_norm) and cfg.clip_norm > 0):
        raise ValueError(f"clip_norm must be None or a finite number > 0, got {cfg.clip_norm}")
    cfg.linear_spec  # noqa: B018  (validates p, nu, sigma, w0)


def _check_head_and_device(cfg: SupervisedConfig) -> None:
    resolve_device(cfg.device)
    if algo_spec(cfg.algo).adapt == "head" or cfg.head_selector is not None:
        adapt_keys(get_params(build_model(cfg.task, cfg.p)), "head", cfg.head_selector)


def _check_run_dir(name: str, path: str | None) -> None:
    if path is not None:
        check_run_dir(name, path)


@dataclass(frozen=True)
class SupervisedEvalConfig:
    """Evaluate a supervised run on fresh held-out tasks (writes eval.json and a plot)."""

    run_dir: tyro.conf.Positional[str]
    """The run folder (its latest checkpoint is evaluated)."""
    tasks: int = 600
    """Held-out tasks."""
    inner_steps: int | None = None
    """Inner steps; None: the run's eval_inner_steps."""
    inner_lr: float | None = None
    """Inner lr (any finite sign); None: the run's eval_inner_lr or training rule."""
    seed: int | None = None
    """Seed of the held-out tasks; None: the run's eval_seed."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""

    def __post_init__(self) -> None:
        _check_run_dir("run_dir", self.run_dir)
        if self.tasks < 1:
            raise ValueError(f"tasks must be an int >= 1, got {self.tasks}")
        if self.inner_steps is not None and self.inner_steps < 0:
            raise ValueError(f"inner_steps must be None or an int >= 0, got {self.inner_steps}")
        if self.inner_lr is not None and not math.isfinite(self.inner_lr):
            raise ValueError(f"inner_lr must be a finite number (any sign), got "
                             f"{self.inner_lr}")
        resolve_device(self.device)
