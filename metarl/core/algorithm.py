"""A meta-algorithm is one value: what adapts, the inner-lr rule, the estimator, the outer rule.

Both trainers (the supervised meta-learner and the MAML-TRPO learner) take a
:class:`MetaAlgorithm`; :data:`ALGORITHMS` maps every ``--algo`` name to one, for both sides.
A new method is one estimator module in ``metarl/core`` plus one row here; the trainers do
not change (docs/architecture.md).

| name | adapts | inner lr | estimator | source |
|---|---|---|---|---|
| maml | all | fixed | second order | Finn et al., 2017 |
| fomaml | all | fixed | first order | Finn et al., 2017, sec. 5.2 |
| anil | head | fixed | second order | Raghu et al., 2020 |
| metasgd | all | learned per tensor | second order | Li et al., 2017 |
| lslr | all | learned per layer and step | second order | Antoniou et al., 2019 (MAML++) |
| fdmaml | all | fixed | finite differences, forward | Chayti & Jaggi, 2024 |
| fdmaml-sym | all | fixed | finite differences, symmetric | Chayti & Jaggi, 2024 |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metarl.core.estimators import ESTIMATORS, Estimator, FirstOrder, SecondOrder
from metarl.core.finite_difference import FiniteDifference, check_delta
from metarl.core.inner import LR_KINDS
from metarl.core.outer import OUTER_RULES
from metarl.core.params import ADAPT_MODES

# Outer step rules (OUTER_RULES, defined with them in metarl.core.outer). ``default`` is
# the trainer's own: Adam for supervised meta-learning, TRPO for meta-RL (which consumes
# whatever gradient and Fisher products the estimator gives). ``nsgdm`` (normalised SGD
# with momentum) and ``clipped_sgd`` suit objectives whose smoothness grows with the
# gradient norm, as MAML's does (Chayti & Jaggi, 2024); the supervised trainer takes them,
# RL keeps TRPO.


@dataclass(frozen=True)
class MetaAlgorithm:
    """One meta-learning algorithm, as both trainers take it.

    Attributes:
        name: The ``--algo`` name.
        adapt: What the inner loop adapts: ``all`` (MAML), ``head`` (ANIL) or ``none`` (NIL).
        lr_kind: The inner-lr rule (:data:`metarl.core.inner.LR_KINDS`): ``fixed`` (any sign),
            ``per_tensor`` (Meta-SGD) or ``per_step`` (MAML++ LSLR); the learned kinds make
            the rates meta-parameters.
        estimator: How the meta-gradient is formed (:mod:`metarl.core.estimators`).
        outer: The outer step rule (:data:`OUTER_RULES`).
        reference: The paper it comes from.
    """

    name: str
    adapt: str
    lr_kind: str
    estimator: Estimator
    outer: str = "default"
    reference: str = ""

    def __post_init__(self) -> None:
        for field, value, allowed in (("adapt", self.adapt, ADAPT_MODES),
                                      ("lr_kind", self.lr_kind, LR_KINDS),
                                      ("outer", self.outer, OUTER_RULES)):
            if value not in allowed:
                raise ValueError(f"{field} must be one of {allowed}, got {value!r}")
        if not isinstance(self.estimator, Estimator):
            raise ValueError(f"estimator must be one of {tuple(ESTIMATORS)}, got "
                             f"{self.estimator!r}")

    @property
    def first_order(self) -> bool:
        """Whether no second-order graph is built through the inner steps."""
        return not isinstance(self.estimator, SecondOrder)

    def replace(self, **changes: Any) -> MetaAlgorithm:
        """A copy with ``changes`` (e.g. another ``lr_kind`` or estimator option)."""
        return dataclasses.replace(self, **changes)


ALGORITHMS: dict[str, MetaAlgorithm] = {a.name: a for a in (
    MetaAlgorithm("maml", "all", "fixed", SecondOrder(), reference="Finn et al., 2017"),
    MetaAlgorithm("fomaml", "all", "fixed", FirstOrder(),
                  reference="Finn et al., 2017, sec. 5.2"),
    MetaAlgorithm("anil", "head", "fixed", SecondOrder(), reference="Raghu et al., 2020"),
    MetaAlgorithm("metasgd", "all", "per_tensor", SecondOrder(), reference="Li et al., 2017"),
    MetaAlgorithm("lslr", "all", "per_step", SecondOrder(),
                  reference="Antoniou et al., 2019 (MAML++ LSLR)"),
    MetaAlgorithm("fdmaml", "all", "fixed", FiniteDifference(scheme="forward"),
                  reference="Chayti & Jaggi, 2024 (arXiv 2409.03682), forward differences"),
    MetaAlgorithm("fdmaml-sym", "all", "fixed", FiniteDifference(scheme="symmetric"),
                  reference="Chayti & Jaggi, 2024 (arXiv 2409.03682), symmetric differences"),
)}

ALGO_NAMES: tuple[str, ...] = tuple(ALGORITHMS)


def with_fd_delta(algorithm: MetaAlgorithm, delta: float | None) -> MetaAlgorithm:
    """``algorithm`` with finite-difference step ``delta`` when its estimator takes one.

    Raises:
        ValueError: Naming ``fd_delta`` unless ``delta`` is ``None`` or a finite number > 0.
    """
    if delta is None:
        return algorithm
    check_delta(delta)
    if not isinstance(algorithm.estimator, FiniteDifference):
        return algorithm
    return algorithm.replace(estimator=dataclasses.replace(algorithm.estimator, delta=delta))


def get_algorithm(name: str) -> MetaAlgorithm:
    """The :class:`MetaAlgorithm` of ``--algo name``.

    Raises:
        ValueError: Naming ``algo`` and the allowed values.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"algo must be one of {ALGO_NAMES}, got {name!r}")
    return ALGORITHMS[name]
