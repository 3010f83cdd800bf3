"""Option types shared by the commands' configs: how tyro shows them in ``--help``.

``Annotated`` metavars list the allowed values of choice options (``{maml,anil,...}``) and
name optional numbers ``INT`` / ``FLOAT`` instead of tyro's ``{None}|INT``; validation stays
in each config's ``__post_init__``, which names the field and the allowed values.
"""

from __future__ import annotations

from typing import Annotated

import tyro

from metarl.core.device import DEVICE_CHOICES


def choices(values: tuple[str, ...]) -> str:
    """A metavar listing ``values``: ``{a,b,c}``."""
    return "{" + ",".join(values) + "}"


OptInt = Annotated[int | None, tyro.conf.arg(metavar="INT")]
OptFloat = Annotated[float | None, tyro.conf.arg(metavar="FLOAT")]
RunDir = Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
Device = Annotated[str, tyro.conf.arg(metavar="{" + ",".join(DEVICE_CHOICES) + "}")]
EvalName = Annotated[str | None, tyro.conf.arg(metavar="NAME")]
