"""``manage.py cachewarm`` builds the warmer's targets from settings.CACHES: the URL each
backend needs (hashing as the client spreads keys, MAX_ENTRIES for a database cache), passwords
only in the environment, never in argv; in-process and unroutable caches are refused with the
reason and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "example"


def run(
    caches: dict[str, Any], *args: str, databases: dict[str, Any] | None = None, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EXAMPLE_CACHES": json.dumps({"default": caches}),
        "SCENARIO_DIR": str(tmp),
        "SCENARIO_STORE_KIND": "-",
        "EXAMPLE_WARMING": "on",
        "CACHEWARM_WARMER": "/bin/false",
    }
    if databases:
        env["EXAMPLE_DATABASES"] = json.dumps(databases)
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=EXAMPLE, capture_output=True, text=True, check=False
    )


def argv_for(
    caches: dict[str, Any], tmp: Path, databases: dict[str, Any] | None = None
) -> dict[str, Any]:
    done = run(caches, str(HERE / "scenario.py"), "argv", databases=databases, tmp=tmp)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line[len("RESULT ") :])
    return result


@pytest.mark.parametrize(
    ("caches", "reason"),
    [
        (
            {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "inside each Django process",
        ),
        ({"BACKEND": "django.core.cache.backends.dummy.DummyCache"}, "stores nothing"),
        (
            {
                "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                "LOCATION": "/tmp/x",
            },
            "directory of files",
        ),
        (
            {
                "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
                "LOCATION": ["a:11211", "b:11211"],
            },
            "ketama",
        ),
    ],
)
def test_unwarmable_caches_are_refused(caches: dict[str, Any], reason: str, tmp_path: Path) -> None:
    done = run(caches, "manage.py", "cachewarm", "--manifest", "m.json", tmp=tmp_path)
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr


def test_targets_and_passwords(tmp_path: Path) -> None:
    secret = "s3cret-pw"
    redis = argv_for(
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": ["redis://127.0.0.1:7000/3", "redis://replica:7000/3"],
            "OPTIONS": {"password": secret},
        },
        tmp_path,
    )
    assert redis["targets"] == f"redis://:{secret}@127.0.0.1:7000/3"
    assert not any(secret in word for word in redis["argv"])
    assert redis["key_pattern"] == "^:1:profile:"
    source = redis["argv"][redis["argv"].index("--source") + 1]
    assert source.startswith("exec:") and "cachewarm_loader --alias default" in source

    pymemcache = argv_for(
        {
            "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
            "LOCATION": "a:11211;b:11212",
        },
        tmp_path,
    )
    assert pymemcache["targets"] == "memcached://a:11211,b:11212?hashing=rendezvous"
    pylibmc = argv_for(
        {
            "BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
            "LOCATION": ["a:11211", "b:11212"],
            "OPTIONS": {"behaviors": {"ketama": True}},
        },
        tmp_path,
    )
    assert pylibmc["targets"] == "memcached://a:11211,b:11212?hashing=ketama"

    postgres = argv_for(
        {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache_t"},
        tmp_path,
        databases={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "app",
                "USER": "u",
                "PASSWORD": secret,
                "HOST": "db",
                "PORT": "5433",
            }
        },
    )
    assert postgres["targets"] == f"postgres://u:{secret}@db:5433/app?table=cache_t&max_entries=300"
    assert not any(secret in word for word in postgres["argv"])
    # The database's TLS settings (psycopg's OPTIONS, libpq's names) go with it.
    tls = argv_for(
        {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cache_t"},
        tmp_path,
        databases={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "app",
                "USER": "u",
                "HOST": "db",
                "OPTIONS": {
                    "sslmode": "verify-full",
                    "sslrootcert": "/etc/pg/root ca.pem",
                    "connect_timeout": 5,
                },
            }
        },
    )
    assert tls["targets"] == (
        "postgres://u@db:5432/app?table=cache_t&max_entries=300"
        "&sslmode=verify-full&sslrootcert=/etc/pg/root%20ca.pem"
    )
    sqlite = argv_for(
        {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "cache_t",
            "OPTIONS": {"MAX_ENTRIES": 50},
        },
        tmp_path,
        databases={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "x.sqlite3")}
        },
    )
    assert sqlite["targets"] == f"sqlite://{tmp_path}/x.sqlite3?table=cache_t&max_entries=50"
