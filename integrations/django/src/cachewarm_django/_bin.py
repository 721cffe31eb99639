"""The ``warmer`` and ``analyzer`` commands the wheel installs: they run the bundled binaries."""

from __future__ import annotations

import os
import sys

from .runner import binary


def _exec(name: str) -> None:
    path = binary(name)
    os.execv(path, [path, *sys.argv[1:]])


def warmer() -> None:
    _exec("warmer")


def analyzer() -> None:
    _exec("analyzer")
