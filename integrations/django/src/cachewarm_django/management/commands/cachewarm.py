"""``manage.py cachewarm --manifest M``: warms a cache alias with the project's own loaders,
through the warmer. The exit code is the warmer's."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachewarm_django.backends import Unsupported
from cachewarm_django.runner import Options, WarmerNotFound, command


class Command(BaseCommand):
    help = (
        "Warm a cache alias from a hot-key manifest (analyzer rank) with the loaders in the "
        "apps' cachewarm.py. Off in development and test unless turned on (see the warmer's "
        "environment profiles)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--manifest", required=True, help="manifest.json[.zst] from analyzer rank"
        )
        parser.add_argument("--alias", default="default", help="cache alias in settings.CACHES")
        parser.add_argument("--dry-run", action="store_true", help="count, write nothing")
        parser.add_argument(
            "--detach",
            action="store_true",
            help="run in the background; prints the run directory (poll: warmer status DIR)",
        )
        parser.add_argument("--timeout", help="stop cleanly after this long (90s, 5m) [5m]")
        parser.add_argument(
            "--category", action="append", default=[], help="only this manifest category (repeat)"
        )
        parser.add_argument(
            "--key", help="only manifest keys this regular expression finds (others: source_miss)"
        )
        parser.add_argument(
            "--resume", action="store_true", help="continue the latest unfinished run"
        )
        parser.add_argument(
            "--strict", action="store_true", help="exit 1 when a store or the loader failed"
        )
        parser.add_argument("--runs-dir", help="where run directories go [cachewarm-runs]")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            argv, env = command(
                options["manifest"],
                options["alias"],
                Options(
                    dry_run=options["dry_run"],
                    timeout=options["timeout"],
                    categories=options["category"],
                    key=options["key"],
                    resume=options["resume"],
                    strict=options["strict"],
                    runs_dir=options["runs_dir"],
                ),
                detach=options["detach"],
            )
        except (Unsupported, WarmerNotFound) as error:
            raise CommandError(str(error), returncode=2) from error
        sys.stdout.flush()
        sys.stderr.flush()
        # The warmer prints its progress and summary (and with --detach the run directory)
        # straight to this command's stdout and stderr.
        code = subprocess.run(argv, env=env, check=False).returncode
        if code:
            sys.exit(code)
