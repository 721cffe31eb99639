"""The backends the tests run the example against, and how a scenario process is started."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent

BACKENDS = ["redis", "django_redis", "pymemcache", "pylibmc", "db_sqlite", "db_postgres"]
KINDS = {
    "redis": "redis",
    "django_redis": "redis",
    "pymemcache": "memcached",
    "pylibmc": "memcached",
    "db_sqlite": "sql",
    "db_postgres": "sql",
}


def configure(
    backend: str, request: pytest.FixtureRequest, work: Path, single_memcached: bool
) -> dict[str, str]:
    """EXAMPLE_CACHES / EXAMPLE_DATABASES for one backend, on the session's servers."""
    databases: dict[str, Any] = {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(work / "db.sqlite3")}
    }
    if backend in ("redis", "django_redis"):
        server = request.getfixturevalue("redis_server")
        db = 1 if backend == "redis" else 2
        location = f"redis://127.0.0.1:{server.port}/{db}"
        if backend == "redis":
            cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": location}
        else:
            cache = {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": location,
                "OPTIONS": {"COMPRESSOR": "django_redis.compressors.zlib.ZlibCompressor"},
            }
        import redis

        redis.Redis(port=server.port, db=db).flushdb()
    elif backend in ("pymemcache", "pylibmc"):
        servers = request.getfixturevalue("memcached_servers")
        if single_memcached:
            servers = servers[:1]
        locations = [f"127.0.0.1:{s.port}" for s in servers]
        if backend == "pymemcache":
            cache = {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": locations,
            }
        else:
            cache = {
                "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
                "LOCATION": locations,
                "OPTIONS": {"behaviors": {"ketama": True}},
            }
        from pymemcache.client.base import Client

        for s in request.getfixturevalue("memcached_servers"):
            Client(("127.0.0.1", s.port)).flush_all(noreply=False)
    else:
        cache = {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cachewarm_cache_table",
            "OPTIONS": {"MAX_ENTRIES": 300},
        }
        if backend == "db_postgres":
            server = request.getfixturevalue("postgres_server")
            name = f"example_{work.name}".lower().replace("-", "_")[:60]
            import psycopg

            with psycopg.connect(
                host="127.0.0.1",
                port=server.port,
                user="cachewarm",
                password=server.extra["password"],
                dbname="postgres",
                autocommit=True,
            ) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            databases["default"] = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "USER": "cachewarm",
                "PASSWORD": server.extra["password"],
                "HOST": "127.0.0.1",
                "PORT": str(server.port),
            }
    return {
        "EXAMPLE_CACHES": json.dumps({"default": cache}),
        "EXAMPLE_DATABASES": json.dumps(databases),
    }


def run_scenario(
    mode: str,
    backend: str,
    request: pytest.FixtureRequest,
    work: Path,
    single_memcached: bool = False,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    env = {
        **os.environ,
        **configure(backend, request, work, single_memcached),
        "SCENARIO_DIR": str(work),
        "SCENARIO_STORE_KIND": KINDS[backend],
        "EXAMPLE_ACCESS_LOG": str(work / "setup.jsonl"),
        "EXAMPLE_RUNS_DIR": str(work / "runs"),
        **(extra_env or {}),
    }
    done = subprocess.run(
        [sys.executable, str(HERE / "scenario.py"), mode],
        env=env,
        cwd=HERE.parent / "example",
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr[-20000:])
    assert done.returncode == 0, f"{mode} scenario for {backend} failed (exit {done.returncode})"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, "the scenario printed no RESULT line"
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result
