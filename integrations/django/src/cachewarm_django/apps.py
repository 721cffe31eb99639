"""The Django app ``cachewarm_django``: turns the access log on when ``CACHEWARM_ACCESS_LOG`` is
set (except in the loader processes the warmer starts)."""

from __future__ import annotations

import os

from django.apps import AppConfig


class CachewarmConfig(AppConfig):
    name = "cachewarm_django"
    verbose_name = "cachewarm"

    def ready(self) -> None:
        from django.conf import settings

        from .runner import LOADER_VARIABLE

        path = getattr(settings, "CACHEWARM_ACCESS_LOG", None)
        if path and not os.environ.get(LOADER_VARIABLE):
            from . import access_log

            access_log.install(str(path))
