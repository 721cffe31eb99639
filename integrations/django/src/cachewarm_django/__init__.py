"""cachewarm for Django: warm a cache alias after a deploy with the project's own code.

``from cachewarm_django import loader, fragment, Skip, Value, warm`` — see the README's
"Django" section.
"""

from __future__ import annotations

from typing import Any

from .registry import Skip, Value, fragment, loader

__version__ = "0.1.0"
__all__ = ["Skip", "Value", "fragment", "loader", "warm"]


def warm(manifest: Any, alias: str = "default", background: bool = False, **options: Any) -> Any:
    """Warms ``alias`` from ``manifest``; see :func:`cachewarm_django.runner.warm`."""
    from .runner import warm as run

    return run(manifest, alias=alias, background=background, **options)
