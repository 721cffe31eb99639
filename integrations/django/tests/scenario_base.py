"""What every scenario of ``scenario.py`` shares: Django set up for the example project with the
caches and databases the ``EXAMPLE_*`` variables name, the ``SCENARIO_*`` settings, the example
users and their traffic, the access log, and how values are compared.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import sys
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[1] / "example"
sys.path.insert(0, str(EXAMPLE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exampleproject.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Permission  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402, F401 (for the scenarios)
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402, F401 (for the scenarios)

from cachewarm_django import access_log  # noqa: E402
from cachewarm_django.sessions import CACHED_DB_PREFIX, session_hash  # noqa: E402
from shop import services  # noqa: E402, F401 (for the scenarios)
from shop.models import Country, Order, Profile, Setting  # noqa: E402

WORK = Path(os.environ["SCENARIO_DIR"])
KIND = os.environ["SCENARIO_STORE_KIND"]  # redis | memcached | sql
USERS = int(os.environ.get("SCENARIO_USERS", "40"))
DAYS = [datetime.date(2026, 11, day) for day in range(20, 25)]
BACKEND = settings.CACHES["default"]["BACKEND"]
_MISSING = object()


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# --- data, users, traffic ---------------------------------------------------------------


def setup_data() -> list[tuple[Any, Client]]:
    call_command("migrate", verbosity=0)
    if "DatabaseCache" in BACKEND:
        call_command("createcachetable", verbosity=0)
    rng = random.Random(7)
    countries = [
        Country.objects.create(code=c, name=n)
        for c, n in [
            ("de", "Germany"),
            ("fr", "France"),
            ("jp", "Japan"),
            ("br", "Brazil"),
            ("ke", "Kenya"),
        ]
    ]
    Setting.objects.create(name="site_name", value="Example Shop")
    for i in range(5):
        Setting.objects.create(name=f"feature_{i}", value=str(i % 2 == 0))
    view_order = Permission.objects.get(codename="view_order")
    users = []
    for i in range(USERS):
        user = get_user_model().objects.create_user(f"user{i:03d}", password=None)
        Profile.objects.create(
            user=user,
            display_name=f"User {i} <&>",
            country=countries[i % 5],
            bio="x" * (i * 7 % 300),
        )
        if i % 3 == 0:
            user.user_permissions.add(view_order)
        for day in DAYS:
            if rng.random() < 0.6:
                Order.objects.create(
                    user=user, day=day, amount=Decimal(rng.randint(100, 99999)) / 100
                )
        users.append(user)
    clients = []
    for user in users:
        client = Client()
        client.force_login(user)
        clients.append((user, client))
    return clients


def traffic(clients: list[tuple[Any, Client]]) -> list[tuple[Client, str]]:
    """Each user's visit, twice (a key read once is a one-hit wonder the ranking leaves out)."""
    rng = random.Random(11)
    visits = []
    for user, client in clients:
        pages = [
            "/",
            f"/profile/{user.pk}/",
            f"/profile/{clients[0][0].pk}/",
            f"/reports/{rng.choice(DAYS).isoformat()}/",
        ]
        if user.has_perm("shop.view_order"):
            pages.append("/dashboard/")
        visits += [(client, page) for page in pages]
    return visits + visits


def replay(visits: Iterable[tuple[Client, str]]) -> None:
    for client, page in visits:
        response = client.get(page)
        check(response.status_code in (200, 403), f"GET {page}: {response.status_code}")


def log_to(path: Path) -> None:
    """Points the access log at a new file (after writing out what the old one has queued)."""
    writer = access_log.writer()
    check(writer is not None, "the access log is not installed (CACHEWARM_ACCESS_LOG)")
    assert writer is not None
    check(writer.flush(), "the access log did not drain")
    writer.path = str(path)


def read_log(path: Path) -> list[dict[str, Any]]:
    access_log.writer().flush()  # type: ignore[union-attr]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def first_read_hit_rate(events: list[dict[str, Any]]) -> tuple[int, int]:
    """Hits among the first read of each key: the reads warming is for."""
    seen: set[str] = set()
    hits = 0
    for event in events:
        if event["op"] != "get" or event["key"] in seen:
            continue
        seen.add(event["key"])
        hits += bool(event["hit"])
    return hits, len(seen)


def session_keys(clients: list[tuple[Any, Client]]) -> dict[str, str]:
    """The app key of each client's session, by the form the access log writes it in."""
    found = {}
    for _, client in clients:
        session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
        app_key = CACHED_DB_PREFIX + session_key
        found[CACHED_DB_PREFIX + "#" + session_hash(session_key)] = app_key
        found[app_key] = app_key
    return found


def app_key(store_key: str, sessions: dict[str, str]) -> tuple[str, int]:
    """``:VERSION:key`` (the default key function, empty KEY_PREFIX) back to key and version."""
    empty, version, key = store_key.split(":", 2)
    check(empty == "", f"unexpected key prefix in {store_key!r}")
    return sessions.get(key, key), int(version)


def snapshot(events: list[dict[str, Any]], sessions: dict[str, str]) -> dict[str, Any]:
    """What the app cached during the cold replay, by logged key, read through cache.get."""
    expected = {}
    for event in events:
        if event["op"] != "get" or event["key"] in expected:
            continue
        key, version = app_key(event["key"], sessions)
        value = cache.get(key, _MISSING, version=version)
        if value is not _MISSING:
            expected[event["key"]] = value
    return expected


def same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# --- the protocol check ------------------------------------------------------------------
