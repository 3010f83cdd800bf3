"""Hyper-parameter presets of the MAML-TRPO / ANIL-TRPO learners, per task distribution.

``paper`` is the standard setting of Finn et al. (2017), "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", as used by Raghu et al. (2020, ANIL) and pytorch-maml-rl: a 2x64
tanh Gaussian MLP, one inner VPG step with lr 0.1 on 20 episodes per task, gamma 0.99, GAE
lambda 1.0, and an outer TRPO step on a meta-batch of 40 tasks (20 for Navigation2D) with max
KL 0.01, 10 conjugate-gradient iterations, damping 1e-5 and 15 line-search steps of ratio 0.8,
for 500 iterations. ``fast`` keeps the algorithm and shrinks the run (horizon 100, fewer tasks,
episodes and iterations) so that it finishes on a laptop; ``fast`` for Navigation2D is the
default agent of ``metarl train``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metarl.envs.registration import DISTRIBUTIONS, HORIZONS, PRESET_NAMES
from metarl.rl.trpo import TrpoConfig

ENV_NAMES = DISTRIBUTIONS  # the suite's task distributions (metarl.envs.registration)
# Meta-World benchmarks (the metaworld extra, its own venv): ML1-<class> (e.g. ML1-reach-v3),
# ML10 and ML45 (Yu et al., 2019).
METAWORLD_ENVS = ("ML1-<task>", "ML10", "ML45")
__all__ = ["ENV_NAMES", "METAWORLD_ENVS", "PRESET_NAMES", "Preset", "get_preset",
           "is_metaworld", "override"]

_TRPO = TrpoConfig()


@dataclass(frozen=True)
class Preset:
    """Every hyper-parameter of one MAML-TRPO run (the fields ``TrainConfig`` can override)."""

    horizon: int
    meta_batch: int
    episodes_per_task: int
    iterations: int
    hidden: tuple[int, ...] = (64, 64)
    inner_steps: int = 1
    inner_lr: float = 0.1
    eval_inner_lr: float | None = None  # None: the training rule (learned rates included)
    gamma: float = 0.99
    gae_lambda: float = 1.0
    max_kl: float = _TRPO.max_kl
    cg_iters: int = _TRPO.cg_iters
    cg_damping: float = _TRPO.cg_damping
    ls_steps: int = _TRPO.ls_steps
    ls_ratio: float = _TRPO.ls_ratio
    fvp_subsample: float = 1.0
    eval_every: int = 50
    eval_tasks: int = 40
    eval_inner_steps: int = 3
    eval_seeds: int = 3

    @property
    def trpo(self) -> TrpoConfig:
        """The TRPO constants (validated)."""
        return TrpoConfig(self.max_kl, self.cg_iters, self.cg_damping, self.ls_steps,
                          self.ls_ratio)


def _paper(env: str) -> Preset:
    horizon = HORIZONS[env]["paper"]
    if env == "Navigation2D":
        return Preset(horizon=horizon, meta_batch=20, episodes_per_task=20, iterations=500,
                      eval_every=50, eval_tasks=40)
    return Preset(horizon=horizon, meta_batch=40, episodes_per_task=20, iterations=500)


def _fast(env: str) -> Preset:
    horizon = HORIZONS[env]["fast"]
    if env == "Navigation2D":
        # The default agent: about 4 minutes on 2 CPU cores including the final evaluation.
        return Preset(horizon=horizon, meta_batch=20, episodes_per_task=20, iterations=60,
                      eval_every=20, eval_tasks=20, eval_seeds=2)
    return Preset(horizon=horizon, meta_batch=20, episodes_per_task=10, iterations=100,
                  eval_every=25, eval_tasks=20, eval_seeds=2)


def is_metaworld(env: str) -> bool:
    """Whether ``env`` names a Meta-World benchmark (``ML1-<class>``, ``ML10``, ``ML45``)."""
    return env in ("ML10", "ML45") or env.startswith("ML1-")


def _metaworld(env: str, preset: str) -> Preset:
    # paper: garage's MAML-TRPO on Meta-World (Yu et al., 2019, sec. 5): 20 tasks x 10
    # episodes of Meta-World's 500 steps; fast: 150 steps (the v1 max_path_length), 10 x 5.
    if preset == "paper":
        return Preset(horizon=500, meta_batch=20, episodes_per_task=10, iterations=300,
                      eval_every=25, eval_tasks=20, eval_seeds=2)
    return Preset(horizon=150, meta_batch=10, episodes_per_task=5, iterations=50,
                  eval_every=10, eval_tasks=10, eval_seeds=1)


def get_preset(env: str, preset: str) -> Preset:
    """The ``preset`` (``paper`` or ``fast``) hyper-parameters of distribution ``env``.

    Raises:
        ValueError: Naming ``env`` or ``preset`` and the allowed values.
    """
    if env not in ENV_NAMES and not is_metaworld(env):
        raise ValueError(f"env must be one of {ENV_NAMES + METAWORLD_ENVS}, got {env!r}")
    if preset not in PRESET_NAMES:
        raise ValueError(f"preset must be one of {PRESET_NAMES}, got {preset!r}")
    if is_metaworld(env):
        return _metaworld(env, preset)
    return _paper(env) if preset == "paper" else _fast(env)


def override(base: Preset, **changes: Any) -> Preset:
    """``base`` with every non-``None`` entry of ``changes`` replaced."""
    return dataclasses.replace(base, **{k: v for k, v in changes.items() if v is not None})
