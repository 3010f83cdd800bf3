"""Configs of ``metarl supervised`` and ``metarl evaluate`` on supervised runs (frozen, parsed
by tyro).

Every field is validated in ``__post_init__``, before any work, with a ``ValueError`` naming
the field and its allowed values. The device belongs to the call, not to the run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro
from torch import nn

from metarl.core import (
    ALGO_NAMES,
    LR_KINDS,
    OUTER_RULES,
    MetaAlgorithm,
    adapt_keys,
    get_algorithm,
    get_params,
    resolve_device,
    with_fd_delta,
)
from metarl.core.bootstrap import LR_META, MATCHES, BootstrapOptions, check_bootstrap_options
from metarl.core.outer import check_outer_rule
from metarl.options import Device, EvalName, OptFloat, OptInt, RunDir, choices
from metarl.runs import check_run_dir, evaluation_paths, saved_options
from metarl.supervised.conv4 import Conv4
from metarl.supervised.fewshot_data import (
    CLASSIFICATION_TASKS,
    DATASETS,
    DatasetSpec,
    check_data_present,
)
from metarl.supervised.models import TASKS, build_model
from metarl.supervised.tasks import LinearTaskSpec
from metarl.utils import check_seed

# Every task of ``metarl supervised``: regression (models.TASKS) and few-shot classification.
ALL_TASKS = (*TASKS, *CLASSIFICATION_TASKS)
# ``--algo mamlpp`` (MAML++, Antoniou et al., 2019) is LSLR with every other fix turned on;
# ``--mamlpp-off`` leaves fixes out one by one, for the ablation.
SUPERVISED_ALGOS = (*ALGO_NAMES, "mamlpp")
MAMLPP_FLAGS = ("msl", "da", "bnrs", "bnwb", "lslr", "ca")
BN_EVAL = ("auto", "running", "batch")


@dataclass(frozen=True)
class SupervisedConfig:
    """Meta-train a few-shot regression learner (defaults: Finn et al.'s 10-shot sinusoid MAML)."""

    task: Annotated[str, tyro.conf.arg(metavar=choices(ALL_TASKS))] = "sinusoid"
    """Task distribution: sinusoid (Finn et al., 2017), linear (Bernacchia, 2021), or few-shot
    classification: omniglot (Lake et al., 2015), miniimagenet (Vinyals et al., 2016)."""
    algo: Annotated[str, tyro.conf.arg(metavar=choices(SUPERVISED_ALGOS))] = "maml"
    """Meta-algorithm (docs/architecture.md); mamlpp: MAML++ with all its fixes
    (docs/fewshot.md)."""
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
    eval_inner_lr: OptFloat = None
    """Evaluation inner lr, any finite sign (default: the training rule, learned lrs too)."""
    eval_inner_steps: int = 10
    """Inner steps at evaluation: query MSE is reported after 0..this many steps."""
    lr_kind: Annotated[str | None, tyro.conf.arg(metavar=choices(LR_KINDS))] = None
    """Inner-lr rule: fixed, per_tensor (Meta-SGD) or per_step (MAML++ LSLR); default: the
    algorithm's."""
    lr: float = 1e-3
    """Outer (Adam) learning rate."""
    cosine: bool = False
    """Cosine-anneal the outer lr to 0 over the run (MAML++)."""
    clip_norm: OptFloat = None
    """Clip the meta-gradient's global norm to this value (default: no clipping)."""
    msl: bool = False
    """MAML++ multi-step loss: weighted query losses after every inner step."""
    msl_anneal_epochs: int = 10
    """Epochs over which the MSL weights anneal toward the last step."""
    first_order_until: int = 0
    """MAML++ derivative-order annealing: first-order meta-gradients for this many epochs."""
    epoch_length: int = 500
    """Meta-iterations per epoch (the unit of the MAML++ schedules)."""
    head_selector: Annotated[str | None, tyro.conf.arg(metavar="REGEX")] = None
    """Regex selecting ANIL's head keys (default: the last linear layer)."""
    inner_lr_meta: Annotated[str, tyro.conf.arg(metavar=choices(LR_META))] = "gradient"
    """How learned inner lrs learn: gradient (the MAML meta-gradient) or bmg (bootstrapped
    meta-gradients, Flennerhag et al., 2022; needs a learned --lr-kind)."""
    bmg_l: int = 1
    """BMG target: L - 1 more inner steps on the support, then one gradient step on the
    query loss (L >= 1)."""
    bmg_step: float = 0.01
    """BMG target: the step size of its query-loss gradient step (> 0)."""
    bmg_match: Annotated[str, tyro.conf.arg(metavar=choices(MATCHES))] = "squared"
    """BMG matching function: squared (adapted-parameter distance) or kl (between
    unit-variance Gaussian predictions on the query inputs)."""
    seed: int = 0
    """Seed of the model initialisation and the training task sequence."""
    eval_seed: int = 1_000
    """Seed of the held-out evaluation tasks (the same set for every run)."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto (this call's: a run resumes on any device)."""
    run_root: str = "runs"
    """Folder holding run folders."""
    resume: Annotated[str | None, tyro.conf.arg(metavar="RUN_DIR")] = None
    """Run folder to resume from its latest checkpoint (its saved config is reused)."""
    eval_every: int = 0
    """Evaluate on the held-out tasks every this many iterations (0: only at the end)."""
    eval_tasks: int = 600
    """Held-out tasks per evaluation."""
    eval_query: int = 100
    """Sinusoid query points per held-out task."""
    checkpoint_every: int = 1_000
    """Checkpoint after the first iteration, then every this many iterations..."""
    checkpoint_minutes: float = 2.0
    """...or this many minutes, whichever comes first (and always at the end)."""
    log_every: int = 100
    """Write training scalars (averaged over this many iterations) to TensorBoard and, with
    --no-progress, print them as one line."""
    progress: bool = True
    """Show a progress bar with it/s and loss; --no-progress prints a line per log window."""
    max_nonfinite_updates: int = 5
    """Stop after this many consecutive outer steps skipped as non-finite (NaN/inf loss or
    gradient), >= 1."""
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
    fd_delta: float = 1e-3
    """Finite-difference step of fdmaml / fdmaml-sym, a length in parameter space, > 0
    (Chayti & Jaggi, 2024)."""
    outer: Annotated[str, tyro.conf.arg(metavar=choices(OUTER_RULES))] = "default"
    """Outer rule: default (Adam), nsgdm (normalised SGD with momentum, step length --lr) or
    clipped_sgd (SGD on the gradient clipped to --clip-norm)."""
    outer_momentum: float = 0.9
    """Momentum of --outer nsgdm, in [0, 1)."""
    ways: int = 5
    """Classification: classes per task (N-way)."""
    queries: OptInt = None
    """Classification: query images per class (default: shots for Omniglot, as MAML's code;
    15 for mini-ImageNet)."""
    data_root: Annotated[str | None, tyro.conf.arg(metavar="PATH")] = None
    """Classification: folder of the dataset (default: $METARL_DATA/<name>, else
    ../shared/data/<name> if it exists, else ~/.cache/metarl/<name>)."""
    split_seed: int = 0
    """Omniglot: seed of the 1,200 / 423 character split."""
    test_rotations: bool = False
    """Omniglot: count the rotations of the test characters as classes too (MAML's code)."""
    bnrs: bool = False
    """MAML++ BNRS: batch-norm running statistics per inner step."""
    bnwb: bool = False
    """MAML++ BNWB: batch-norm weights and biases per inner step."""
    bn_eval: Annotated[str, tyro.conf.arg(metavar=choices(BN_EVAL))] = "auto"
    """Normalisation at evaluation: running statistics (MAML++ paper), batch statistics (MAML's
    and MAML++'s code); auto: running with BNRS, else batch."""
    mamlpp_off: Annotated[tuple[str, ...], tyro.conf.arg(metavar=choices(MAMLPP_FLAGS))] = ()
    """With --algo mamlpp: MAML++ fixes to leave out (the ablation), any of msl da bnrs bnwb
    lslr ca."""
    compile: bool = False
    """Compile the meta-iteration's inner steps, meta-loss and meta-gradient with torch.compile
    (CUDA graphs on CUDA); the eager default is faster on small CPUs (docs/speed.md)."""

    def __post_init__(self) -> None:
        _check_choices(self)
        _check_counts(self)
        _check_numbers(self)
        _check_head_and_device(self)
        _check_bootstrap(self)
        check_seed("seed", self.seed)
        check_seed("eval_seed", self.eval_seed)
        check_seed("split_seed", self.split_seed)
        _check_classification(self)
        if self.resume is not None:
            check_run_dir("resume", self.resume)

    @property
    def algorithm(self) -> MetaAlgorithm:
        """The meta-algorithm ``algo`` names, with ``lr_kind`` when given (mamlpp: LSLR's,
        or MAML's with ``lslr`` left out), ``fd_delta`` and the ``outer`` rule."""
        if self.algo == "mamlpp":
            base = "maml" if "lslr" in self.mamlpp_off else "lslr"
            algorithm = get_algorithm(base).replace(name="mamlpp")
        else:
            algorithm = get_algorithm(self.algo)
        algorithm = algorithm if self.lr_kind is None else algorithm.replace(lr_kind=self.lr_kind)
        algorithm = with_fd_delta(algorithm, self.fd_delta)
        return algorithm if self.outer == "default" else algorithm.replace(outer=self.outer)

    @property
    def bootstrap(self) -> BootstrapOptions | None:
        """The BMG target of the inner lrs, or ``None`` when they learn by the meta-gradient."""
        if self.inner_lr_meta != "bmg":
            return None
        return BootstrapOptions(lookahead=self.bmg_l, step=self.bmg_step, match=self.bmg_match)

    def _mamlpp_on(self, flag: str) -> bool:
        return self.algo == "mamlpp" and flag not in self.mamlpp_off

    @property
    def use_msl(self) -> bool:
        """Multi-step loss: --msl, or mamlpp."""
        return self.msl or self._mamlpp_on("msl")

    @property
    def use_cosine(self) -> bool:
        """Cosine outer lr: --cosine, or mamlpp."""
        return self.cosine or self._mamlpp_on("ca")

    @property
    def use_bnrs(self) -> bool:
        """Per-step batch-norm running statistics: --bnrs, or mamlpp."""
        return self.bnrs or (self.is_classification and self._mamlpp_on("bnrs"))

    @property
    def use_bnwb(self) -> bool:
        """Per-step batch-norm weights and biases: --bnwb, or mamlpp."""
        return self.bnwb or (self.is_classification and self._mamlpp_on("bnwb"))

    @property
    def da_epochs(self) -> int:
        """Epochs of first-order training: --first-order-until, or with mamlpp (when not
        given) the first third of the run's epochs (MAML++: 50 of 150)."""
        if self.first_order_until > 0 or not self._mamlpp_on("da"):
            return self.first_order_until
        epochs = math.ceil(self.iterations / self.epoch_length)
        return max(1, epochs // 3)

    @property
    def eval_running_stats(self) -> bool:
        """Whether evaluation normalises with running statistics (``bn_eval``)."""
        return self.bn_eval == "running" or (self.bn_eval == "auto" and self.use_bnrs)

    @property
    def is_classification(self) -> bool:
        """Whether the task is few-shot classification."""
        return self.task in CLASSIFICATION_TASKS

    @property
    def dataset(self) -> DatasetSpec:
        """The classification dataset's shapes and sizes."""
        return DATASETS[self.task]

    @property
    def queries_per_class(self) -> int:
        """Query images per class of a classification task."""
        default = self.dataset.default_queries
        return self.queries if self.queries is not None else (default or self.shots)

    @property
    def env_name(self) -> str:
        """Name of the task distribution in the run folder."""
        if self.is_classification:
            return f"{self.task}{self.ways}way{self.shots}shot"
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
    if cfg.task not in ALL_TASKS:
        raise ValueError(f"task must be one of {ALL_TASKS}, got {cfg.task!r}")
    if cfg.algo not in SUPERVISED_ALGOS:
        raise ValueError(f"algo must be one of {SUPERVISED_ALGOS}, got {cfg.algo!r}")
    if cfg.bn_eval not in BN_EVAL:
        raise ValueError(f"bn_eval must be one of {BN_EVAL}, got {cfg.bn_eval!r}")
    bad = [f for f in cfg.mamlpp_off if f not in MAMLPP_FLAGS]
    if bad or not isinstance(cfg.mamlpp_off, tuple):
        raise ValueError(f"mamlpp_off must hold values among {MAMLPP_FLAGS}, got "
                         f"{bad or repr(cfg.mamlpp_off)}")
    if cfg.mamlpp_off and cfg.algo != "mamlpp":
        raise ValueError(f"mamlpp_off needs --algo mamlpp, got algo {cfg.algo!r}")
    if cfg.lr_kind is not None and cfg.lr_kind not in LR_KINDS:
        raise ValueError(f"lr_kind must be None or one of {LR_KINDS}, got {cfg.lr_kind!r}")
    check_outer_rule(cfg.outer, cfg.outer_momentum, cfg.clip_norm)
    cfg.algorithm  # noqa: B018  (validates fd_delta for the fdmaml rows)


def _check_counts(cfg: SupervisedConfig) -> None:
    if not cfg.checkpoint_minutes > 0:
        raise ValueError(f"checkpoint_minutes must be a number > 0, got "
                         f"{cfg.checkpoint_minutes}")
    at_least_one = ("shots", "query", "meta_batch", "iterations", "inner_steps", "eval_tasks",
                    "eval_query", "checkpoint_every", "log_every", "epoch_length",
                    "msl_anneal_epochs", "p", "n_t", "n_v", "m", "max_nonfinite_updates")
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
    if cfg.algorithm.adapt == "head" or cfg.head_selector is not None:
        if cfg.is_classification:
            model: nn.Module = Conv4(cfg.ways, steps=cfg.inner_steps,
                                     per_step_bn_weights=cfg.use_bnwb)
        else:
            model = build_model(cfg.task, cfg.p)
        adapt_keys(get_params(model), "head", cfg.head_selector)


def _check_classification(cfg: SupervisedConfig) -> None:
    """Ways, shots and queries against the dataset's sizes, and its files, before any work."""
    if cfg.queries is not None and cfg.queries < 1:
        raise ValueError(f"queries must be None or an int >= 1, got {cfg.queries}")
    if cfg.ways < 1:
        raise ValueError(f"ways must be an int >= 1, got {cfg.ways}")
    if not cfg.is_classification:
        used = [n for n in ("bnrs", "bnwb") if getattr(cfg, n)]
        if used or cfg.bn_eval != "auto":
            raise ValueError(f"{(used or ['bn_eval'])[0]} needs a classification task "
                             f"{CLASSIFICATION_TASKS}, got task {cfg.task!r}")
        return
    spec = cfg.dataset
    for part in ("train", "test"):
        classes = spec.classes(part, cfg.test_rotations)
        if cfg.ways > classes:
            raise ValueError(f"ways must be <= {classes}, the classes of the {cfg.task} "
                             f"{part} split, got {cfg.ways}")
    if cfg.shots + cfg.queries_per_class > spec.per_class:
        raise ValueError(f"shots + queries must be <= {spec.per_class}, the images per class "
                         f"of {cfg.task}, got {cfg.shots} + {cfg.queries_per_class}")
    check_data_present(cfg.task, cfg.data_root)


def _check_bootstrap(cfg: SupervisedConfig) -> None:
    if cfg.inner_lr_meta not in LR_META:
        raise ValueError(f"inner_lr_meta must be one of {LR_META}, got {cfg.inner_lr_meta!r}")
    check_bootstrap_options(cfg.bmg_l, cfg.bmg_step, cfg.bmg_match,
                            ("bmg_l", "bmg_step", "bmg_match"))
    if cfg.inner_lr_meta == "bmg" and cfg.algorithm.lr_kind == "fixed":
        raise ValueError("inner_lr_meta 'bmg' needs learned inner lrs: lr_kind must be one of "
                         "('per_tensor', 'per_step') (e.g. --algo metasgd or --lr-kind "
                         "per_tensor), got 'fixed'")


def load_config(run_dir: str | Path, **call: Any) -> SupervisedConfig:
    """The config saved in ``run_dir/config.json`` with this call's options (``device``,
    ``progress``, ...) in place of the saved ones; the saved device is never validated."""
    names = {f.name for f in dataclasses.fields(SupervisedConfig)}
    kwargs = saved_options(run_dir, "supervised", names)
    if isinstance(kwargs.get("mamlpp_off"), list):  # JSON has no tuples
        kwargs["mamlpp_off"] = tuple(kwargs["mamlpp_off"])
    return SupervisedConfig(**{**kwargs, "device": "cpu", "resume": None, **call})


def config_to_json(cfg: SupervisedConfig) -> dict[str, Any]:
    """``config.json``: every field and the run kind."""
    return {"kind": "supervised", **dataclasses.asdict(cfg)}


@dataclass(frozen=True)
class SupervisedEvalConfig:
    """Evaluate a supervised run on fresh held-out tasks (writes RUN_DIR/evaluations/<name>.*)."""

    run_dir: RunDir
    """The run folder (its latest checkpoint is evaluated)."""
    num_tasks: int = 600
    """Held-out tasks."""
    inner_steps: OptInt = None
    """Inner steps (default: the run's eval_inner_steps)."""
    inner_lr: OptFloat = None
    """Inner lr, any finite sign (default: the run's eval_inner_lr or training rule)."""
    seed: OptInt = None
    """Seed of the held-out tasks (default: the run's eval_seed)."""
    device: Device = "cpu"
    """cpu, cuda, cuda:N or auto (this call's, whatever the run was trained on)."""
    out: EvalName = None
    """Name of this evaluation's outputs in RUN_DIR/evaluations/ (default: iter<N>-<time>);
    an existing name is refused, never overwritten."""
    bn_eval: Annotated[str | None, tyro.conf.arg(metavar=choices(BN_EVAL))] = None
    """Classification: batch-norm statistics at evaluation (default: the run's bn_eval)."""
    nil: bool = False
    """Classification: also report NIL (Raghu et al., 2020): no inner loop, no head; each
    query is labelled by cosine similarity of its body features to the support examples."""

    def __post_init__(self) -> None:
        check_run_dir("run_dir", self.run_dir)
        load_config(self.run_dir)  # raises for a run of another kind
        if self.num_tasks < 1:
            raise ValueError(f"num_tasks must be an int >= 1, got {self.num_tasks}")
        if self.inner_steps is not None and self.inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {self.inner_steps}")
        if self.inner_lr is not None and not math.isfinite(self.inner_lr):
            raise ValueError(f"inner_lr must be a finite number (any sign), got "
                             f"{self.inner_lr}")
        if self.seed is not None:
            check_seed("seed", self.seed)
        resolve_device(self.device)
        if self.bn_eval is not None:
            load_config(self.run_dir, bn_eval=self.bn_eval)  # names bn_eval if it is bad
        if self.out is not None:
            evaluation_paths(self.run_dir, self.out, 0)  # a taken name fails now
