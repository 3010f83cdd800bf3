"""Parameter dictionaries, the head/body split, and validation helpers.

The core works on explicit ``dict[str, Tensor]`` parameters run through
``torch.func.functional_call`` (torch.func docs), so an inner loop never mutates a module.
ANIL (Raghu et al., 2020, "Rapid Learning or Feature Reuse?") adapts only the head, the
last linear layer; NIL adapts nothing.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

Params = dict[str, torch.Tensor]

ADAPT_MODES = ("all", "head", "none")


def check_finite(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` unless every entry of ``value`` is finite.

    Args:
        name: The field being checked, used in the error message.
        value: A Python number or a tensor.
    """
    if isinstance(value, torch.Tensor):
        finite = bool(torch.isfinite(value).all())
    else:
        finite = math.isfinite(float(value))
    if not finite:
        raise ValueError(f"{name} must be finite, got {value}")


def get_params(module: nn.Module) -> Params:
    """Return the module's parameters by name (the same tensor objects, not copies)."""
    return dict(module.named_parameters())


def _last_linear_keys(params: Params) -> tuple[str, ...]:
    """Keys of the last module prefix owning a 2-D ``weight``, plus its ``bias``."""
    prefixes = [k[: -len("weight")] for k, v in params.items()
                if k.rsplit(".", 1)[-1] == "weight" and v.dim() == 2]
    if not prefixes:
        return ()
    prefix = prefixes[-1]
    return tuple(k for k in (prefix + "weight", prefix + "bias") if k in params)


def head_keys(params: Params, selector: str | None = None) -> tuple[str, ...]:
    """Keys of the head: the parameters ANIL adapts (Raghu et al., 2020).

    Args:
        params: Parameter dict, in module registration order.
        selector: ``None`` for the last linear layer (the last prefix owning a 2-D
            ``weight``, plus its ``bias``), or a regex matched with ``re.search`` on keys.

    Returns:
        The matching keys, in the order of ``params``.

    Raises:
        ValueError: Naming ``head_selector`` when nothing matches or the regex is invalid.
    """
    if selector is None:
        keys = _last_linear_keys(params)
        what = "no parameter key owns a 2-D weight (no linear layer)"
    else:
        try:
            pattern = re.compile(selector)
        except re.error as err:
            raise ValueError(f"head_selector {selector!r} is not a valid regex: {err}") from err
        keys = tuple(k for k in params if pattern.search(k))
        what = f"regex {selector!r} matches no parameter key"
    if not keys:
        raise ValueError(f"head_selector: {what}; available keys: {list(params)}")
    return keys


def adapt_keys(params: Params, mode: str, head_selector: str | None = None) -> tuple[str, ...]:
    """Keys the inner loop adapts: ``all`` (MAML), ``head`` (ANIL) or ``none`` (NIL).

    Args:
        params: Parameter dict.
        mode: One of ``ADAPT_MODES``.
        head_selector: Passed to :func:`head_keys` when ``mode == "head"``.

    Raises:
        ValueError: Naming ``adapt`` and the choices for an unknown mode.
    """
    if mode == "all":
        return tuple(params)
    if mode == "head":
        return head_keys(params, head_selector)
    if mode == "none":
        return ()
    raise ValueError(f"adapt must be one of {ADAPT_MODES}, got {mode!r}")
