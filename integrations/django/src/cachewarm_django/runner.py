"""Runs the warmer for a cache alias: ``manage.py cachewarm`` and :func:`warm` share this.

The target URLs, which may hold passwords, go to the warmer in ``CACHEWARM_TARGETS`` (an
environment variable the warmer reads), never on its command line. The value source is this
project's own ``cachewarm_loader`` command through the warmer's ``exec:`` loader source.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends import describe
from .protocol import KEY_PATTERN_VARIABLE

#: Overrides the warmer binary (a development build, say).
WARMER_VARIABLE = "CACHEWARM_WARMER"
#: Set for the loader processes, so they do not write the access log themselves.
LOADER_VARIABLE = "CACHEWARM_DJANGO_LOADER"


class WarmerNotFound(Exception):
    pass


def binary(name: str) -> str:
    """A bundled binary (``warmer``, ``analyzer``): ``$CACHEWARM_WARMER`` for the warmer, else
    the one the wheel ships, else one on ``PATH``."""
    if name == "warmer" and os.environ.get(WARMER_VARIABLE):
        return os.environ[WARMER_VARIABLE]
    bundled = Path(__file__).parent / "bin" / name
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    found = shutil.which(name)
    if found:
        return found
    raise WarmerNotFound(
        f"no `{name}` binary: install the cachewarm-django wheel for this platform, put "
        f"`{name}` on PATH" + (f", or set {WARMER_VARIABLE}" if name == "warmer" else "")
    )


def loader_command(alias: str) -> str:
    """The ``exec:`` command line that starts ``cachewarm_loader`` for ``alias`` in this project."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "manage.py" and script.is_file():
        words = [sys.executable, str(script.resolve()), "cachewarm_loader", "--alias", alias]
    else:
        # Not started through manage.py (warm() from a script or a worker): django-admin with
        # the same settings and import path.
        words = [sys.executable, "-m", "django", "cachewarm_loader", "--alias", alias]
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE")
        if settings_module:
            words += ["--settings", settings_module]
        words += ["--pythonpath", os.getcwd()]
    return shlex.join(words)


@dataclass
class Options:
    dry_run: bool = False
    timeout: str | None = None
    categories: Sequence[str] = ()
    key: str | None = None
    resume: bool = False
    strict: bool = False
    runs_dir: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)


def command(
    manifest: str, alias: str, options: Options, detach: bool
) -> tuple[list[str], dict[str, str]]:
    """The warmer's argv and environment for one run."""
    from django.conf import settings

    backend = describe(alias)
    argv = [
        binary("warmer"),
        "run",
        "--manifest",
        str(manifest),
        "--source",
        f"exec:{loader_command(alias)}",
    ]
    if options.dry_run:
        argv.append("--dry-run")
    if options.timeout:
        argv += ["--timeout", options.timeout]
    for category in options.categories:
        argv += ["--category", category]
    if options.resume:
        argv.append("--resume")
    if options.strict:
        argv.append("--strict")
    runs_dir = options.runs_dir or getattr(settings, "CACHEWARM_RUNS_DIR", None)
    if runs_dir:
        argv += ["--runs-dir", str(runs_dir)]
    environment = getattr(settings, "CACHEWARM_ENV", None)
    if environment:
        argv += ["--env", str(environment)]
    enabled = getattr(settings, "CACHEWARM_ENABLED", None)
    if enabled is not None:
        argv += ["--enabled", "true" if enabled else "false"]
    if detach:
        argv.append("--detach")
    argv += list(options.extra_args)
    env = dict(os.environ)
    env["CACHEWARM_TARGETS"] = " ".join(backend.target_urls)
    env[LOADER_VARIABLE] = "1"
    if options.key:
        env[KEY_PATTERN_VARIABLE] = options.key
    else:
        env.pop(KEY_PATTERN_VARIABLE, None)
    return argv, env


@dataclass
class Background:
    """A detached run: its directory, and its status on demand."""

    run_dir: str

    def status(self) -> dict[str, Any]:
        """``warmer status RUN_DIR --json``: running, finished, interrupted or killed, with its
        progress per target."""
        done = subprocess.run(
            [binary("warmer"), "status", self.run_dir, "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"warmer status {self.run_dir} failed: {done.stderr.strip()}")
        parsed: dict[str, Any] = json.loads(done.stdout)
        return parsed


def warm(
    manifest: str | os.PathLike[str],
    alias: str = "default",
    background: bool = False,
    **options: Any,
) -> int | Background:
    """Warms cache ``alias`` from ``manifest`` with the project's loaders.

    Returns the warmer's exit code (0: done, failures reported but tolerated; 1: a failure with
    ``strict=True``; 2: a usage or configuration error), or with ``background=True`` a
    :class:`Background` at once. Keyword options are those of ``manage.py cachewarm``:
    ``dry_run``, ``timeout`` (``"5m"``), ``categories``, ``key``, ``resume``, ``strict``,
    ``runs_dir``.
    """
    argv, env = command(str(manifest), alias, Options(**options), detach=background)
    if not background:
        return subprocess.run(argv, env=env, check=False).returncode
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the warmer refused to start (exit {done.returncode}); see its output")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return Background(run_dir=lines[-1].strip())
