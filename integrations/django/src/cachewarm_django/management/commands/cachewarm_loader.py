"""``manage.py cachewarm_loader --alias A``: the loader process the warmer starts (protocol v1
on stdin/stdout). Not meant to be run by hand."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cachewarm_django.backends import Unsupported
from cachewarm_django.keys import Irreversible
from cachewarm_django.protocol import serve


class Command(BaseCommand):
    help = "Computes cache values for the warmer (cachewarm loader protocol v1 on stdin/stdout)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--alias", default="default", help="the cache alias to compute for")

    def handle(self, *args: Any, **options: Any) -> None:
        protocol_out = sys.stdout
        # Anything an app prints goes to stderr (the run's log), not into the protocol stream.
        sys.stdout = sys.stderr
        try:
            code = serve(options["alias"], sys.stdin, protocol_out)
        except (Unsupported, Irreversible) as error:
            raise CommandError(str(error), returncode=2) from error
        finally:
            sys.stdout = protocol_out
        if code:
            sys.exit(code)
