"""Fixtures: the real servers (one of each per test session), and where the binaries are."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import Server, start_memcached, start_postgres, start_redis

HERE = Path(__file__).resolve().parent


def pytest_report_header() -> list[str]:
    import django

    return [f"django {django.get_version()}"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_servers() -> Iterator[list[Server]]:
    servers = [start_memcached(), start_memcached()]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    if not (
        Path(os.environ.get("CACHEWARM_POSTGRES_BIN", "/usr/lib/postgresql/15/bin")) / "initdb"
    ).exists():
        pytest.fail("PostgreSQL 15 is not installed (scripts/test installs it)")
    server = start_postgres(secrets.token_hex(12))
    yield server
    server.stop()


def _binary(name: str, variable: str) -> str:
    path = os.environ.get(variable)
    if not path:
        from cachewarm_django.runner import binary

        path = binary(name)
    if not shutil.which(path):
        pytest.fail(f"no {name} binary at {path}")
    return path


@pytest.fixture(scope="session")
def warmer_binary() -> str:
    """The warmer under test: $CACHEWARM_WARMER, else the one the installed wheel ships."""
    return _binary("warmer", "CACHEWARM_WARMER")


@pytest.fixture(scope="session")
def analyzer_binary() -> str:
    """The analyzer under test: $CACHEWARM_ANALYZER, else the one the installed wheel ships."""
    return _binary("analyzer", "CACHEWARM_ANALYZER")
