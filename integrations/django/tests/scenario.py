"""One backend's scenario against the example project, in a process of its own (Django's
settings are fixed per process): ``python scenario.py protocol|e2e``, with ``EXAMPLE_CACHES``,
``EXAMPLE_DATABASES`` and ``SCENARIO_*`` variables saying what to run against.

It prints a ``RESULT {json}`` line with its figures and exits non-zero when a check fails.
Expected values are what the app itself computed and cached during a cold replay, read back
through ``cache.get``; the store is written by the warmer (e2e) or, for the protocol check, by
the store's own plain client with the loader's bytes and flags.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import random
import subprocess
import sys
import time
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
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from cachewarm_django import access_log  # noqa: E402
from cachewarm_django.sessions import CACHED_DB_PREFIX, session_hash  # noqa: E402
from shop import services  # noqa: E402
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


def loader_process(extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "CACHEWARM_DJANGO_LOADER": "1", **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE / "manage.py"), "cachewarm_loader", "--alias", "default"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=EXAMPLE,
    )


def exchange(
    process: subprocess.Popen[str], request_id: int, keys: list[str]
) -> dict[str, dict[str, Any]]:
    assert process.stdin and process.stdout
    process.stdin.write(json.dumps({"id": request_id, "keys": keys}) + "\n")
    process.stdin.flush()
    answers = {}
    while True:
        line = process.stdout.readline()
        check(bool(line), "the loader closed stdout before `done`")
        message = json.loads(line)
        check(message["id"] == request_id, f"answer for request {message['id']}")
        if message.get("done"):
            return answers
        answers[message["key"]] = message


def write_raw(entries: list[dict[str, Any]]) -> None:
    """Stores the loader's bytes (and flags) with the store's plain client: no Django."""
    location = settings.CACHES["default"]["LOCATION"]
    if KIND == "redis":
        import redis

        client = redis.Redis.from_url(location if isinstance(location, str) else location[0])
        for entry in entries:
            client.set(entry["key"], base64.b64decode(entry["value_b64"]), px=entry["ttl_ms"])
    elif KIND == "memcached":
        from pymemcache.client.base import Client as Memcached

        host, port = (location if isinstance(location, str) else location[0]).rsplit(":", 1)
        client = Memcached((host, int(port)))
        for entry in entries:
            ttl = entry["ttl_ms"]
            client.set(
                entry["key"],
                base64.b64decode(entry["value_b64"]),
                expire=0 if ttl is None else ttl // 1000,
                flags=entry["flags"],
                noreply=False,
            )
    else:
        table = connection.ops.quote_name(settings.CACHES["default"]["LOCATION"])
        with connection.cursor() as cursor:
            for entry in entries:
                ttl = entry["ttl_ms"]
                expires = (
                    datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
                    if ttl is None
                    else timezone.now() + datetime.timedelta(milliseconds=ttl)
                )
                cursor.execute(
                    f"INSERT INTO {table} (cache_key, value, expires) VALUES (%s, %s, %s)",
                    [
                        entry["key"],
                        base64.b64decode(entry["value_b64"]).decode(),
                        connection.ops.adapt_datetimefield_value(expires),
                    ],
                )


def run_protocol() -> dict[str, Any]:
    clients = setup_data()
    sessions = session_keys(clients)
    cache.clear()
    cold_log = WORK / "cold.jsonl"
    log_to(cold_log)
    replay(traffic(clients))
    events = read_log(cold_log)
    expected = snapshot(events, sessions)
    check(len(expected) > USERS * 4, f"the cold replay cached only {len(expected)} keys")
    kinds = {"sessions": 0, "fragments": 0}
    for key in expected:
        kinds["sessions"] += "django.contrib.sessions" in key
        kinds["fragments"] += ":template.cache." in key
    check(kinds["sessions"] == USERS and kinds["fragments"] == 2 * USERS, f"key kinds: {kinds}")
    broken_day = DAYS[0].isoformat()
    cache.clear()

    process = loader_process({"EXAMPLE_BROKEN_REPORTS": broken_day})
    assert process.stdout
    hello = json.loads(process.stdout.readline())["hello"]
    check(
        hello["protocol"] == 1 and hello["framework"] == f"django {django.get_version()}",
        str(hello),
    )
    check(hello["store_kind"] == KIND and hello["alias"] == "default", str(hello))
    check(hello["key_prefix"] == "" and hello["version"] == 1 and hello["fingerprint"], str(hello))
    keys = sorted(expected) + [":1:nothing:here", "other-prefix:1:profile:1", f":1:profile:{10**9}"]
    answers = exchange(process, 7, keys)
    check(set(answers) == set(keys), "one answer per key")
    broken = {k for k in expected if k.endswith(f"report:daily:{broken_day}")}
    entries = []
    for key in sorted(expected):
        answer = answers[key]
        if key in broken:
            check("error" in answer and answer["retryable"] is False, f"{key}: {answer}")
            continue
        check("entries" in answer, f"{key}: {answer}")
        (entry,) = answer["entries"]
        check(("flags" in entry) == (KIND == "memcached"), f"flags only for memcached: {entry}")
        entries.append(entry)
    for key in keys[-3:]:
        check("miss" in answers[key], f"{key}: {answers[key]}")
    check(bool(broken), "the traffic read a broken report")
    write_raw(entries)
    compared = 0
    for key, value in expected.items():
        if key in broken:
            continue
        name, version = app_key(key, sessions)
        got = cache.get(name, _MISSING, version=version)
        check(same(got, value), f"{key}: warmed {got!r} != cold {value!r}")
        compared += 1
    process.stdin.close()  # type: ignore[union-attr]
    check(process.wait(timeout=30) == 0, "the loader exits 0 when stdin closes")

    # A version bump: the same manifest keys (VERSION 1) answered under VERSION 2.
    process = loader_process({"EXAMPLE_CACHE_VERSION": "2"})
    hello = json.loads(process.stdout.readline())["hello"]  # type: ignore[union-attr]
    check(hello["version"] == 2, str(hello))
    answers = exchange(process, 1, sorted(expected))
    cache.clear()
    bumped = [a["entries"][0] for a in answers.values() if "entries" in a]
    check(len(bumped) == len(expected), "every key answered under VERSION 2")
    check(all(entry["key"].startswith(":2:") for entry in bumped), "store keys under VERSION 2")
    write_raw(bumped)
    for key, value in expected.items():
        name, _ = app_key(key, sessions)
        check(same(cache.get(name, _MISSING, version=2), value), f"{key} under VERSION 2")
    process.stdin.close()  # type: ignore[union-attr]
    check(process.wait(timeout=30) == 0, "the loader exits 0")
    return {"backend": BACKEND, "keys": len(expected), "compared": compared, "broken": len(broken)}


# --- the access log ----------------------------------------------------------------------


def run_access_log() -> dict[str, Any]:
    """Known operations, sync and async, and the exact lines they must log."""
    import asyncio

    from django.contrib.sessions.backends.cached_db import SessionStore

    call_command("migrate", verbosity=0)
    if "DatabaseCache" in BACKEND:
        call_command("createcachetable", verbosity=0)
    cache.clear()
    path = WORK / "ops.jsonl"
    log_to(path)
    cache.set("a", None, 30)
    check(cache.get("a", "default") is None, "a cached None reads back as None")
    check(cache.get("b", "default") == "default", "a miss returns the caller's default")
    cache.set("c", 3)
    check(cache.get_many(["a", "b", "c"]) == {"a": None, "c": 3}, "get_many")
    check(asyncio.run(cache.aget("a", "default")) is None, "aget")
    check(cache.get_or_set("d", 5) == 5, "get_or_set")
    cache.set_many({"e": 1, "f": "two"}, timeout=None)
    try:
        cache.incr("zz")
    except ValueError:
        pass
    check(cache.has_key("a"), "has_key")
    cache.delete_many(["e", "f"])
    check(asyncio.run(cache.aget_many(["a", "b"])) == {"a": None}, "aget_many")
    asyncio.run(cache.aset("g", [1, 2], 60))
    session = SessionStore()
    session["cart"] = [1, 2, 3]
    session.save()
    loaded = SessionStore(session.session_key).load()
    check(loaded == {"cart": [1, 2, 3]}, "session round trip")
    events = read_log(path)
    text = path.read_text()
    check(session.session_key not in text, "a session key was logged in clear")
    got = [(e["key"], e["op"], e.get("hit")) for e in events]
    session_key = f":1:{CACHED_DB_PREFIX}#{session_hash(session.session_key)}"
    want = [
        (":1:a", "set", None),
        (":1:a", "get", True),
        (":1:b", "get", False),
        (":1:c", "set", None),
        (":1:a", "get", True),
        (":1:b", "get", False),
        (":1:c", "get", True),
        (":1:a", "get", True),
        (":1:d", "get", False),
        (":1:d", "add", None),
        (":1:d", "get", True),
        (":1:e", "set", None),
        (":1:f", "set", None),
        (":1:zz", "incr", False),
        (":1:a", "get", True),
        (":1:e", "delete", None),
        (":1:f", "delete", None),
        (":1:a", "get", True),
        (":1:b", "get", False),
        (":1:g", "set", None),
    ]
    check(got[: len(want)] == want, "logged operations:\n" + "\n".join(map(str, got)))
    # The session's own calls (how many writes a save makes is Django's business): a clash
    # probe that misses, its writes, and the load that hits; all under the hashed key.
    session_events = got[len(want) :]
    check(
        all(key == session_key for key, _, _ in session_events), f"session keys: {session_events}"
    )
    check(session_events[0] == (session_key, "get", False), f"session probe: {session_events}")
    check(session_events[-1] == (session_key, "get", True), f"session load: {session_events}")
    check({op for _, op, _ in session_events[1:-1]} == {"set"}, f"session save: {session_events}")
    sets = {e["key"]: e for e in events if e["op"] == "set"}
    check(sets[":1:a"]["ttl_s"] == 30 and "ttl_s" not in sets[":1:e"], "ttl_s on writes")
    check(all(e["value_size"] > 0 for e in sets.values()), "value_size on writes")
    check(all(e["namespace"] == "default" and e["latency_us"] >= 0 for e in events), "fields")
    return {"backend": BACKEND, "lines": len(events), "log": str(path)}


# --- end to end: access log -> analyzer -> manage.py cachewarm -> warm reads ---------------


def analyzer(*args: str) -> str:
    done = subprocess.run(
        [os.environ["SCENARIO_ANALYZER"], *args], capture_output=True, text=True, check=False
    )
    check(done.returncode == 0, f"analyzer {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


def rank(log: Path, label: str) -> tuple[Path, list[dict[str, Any]]]:
    dataset = WORK / f"dataset-{label}"
    manifest = WORK / f"manifest-{label}.json"
    analyzer("ingest", str(log), "--out", str(dataset))
    analyzer(
        "rank",
        "--data",
        str(dataset),
        "--out",
        str(manifest),
        "--preset",
        "django",
        "--budget",
        "64MiB",
        "--store",
        KIND,
    )
    return manifest, json.loads(manifest.read_text())["entries"]


def cachewarm(
    manifest: Path, label: str, *args: str, env: dict[str, str] | None = None, expect_exit: int = 0
) -> tuple[dict[str, Any], float]:
    """``manage.py cachewarm`` as a deploy runs it; returns its report and wall-clock seconds."""
    runs = WORK / f"runs-{label}"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE / "manage.py"),
            "cachewarm",
            "--manifest",
            str(manifest),
            "--runs-dir",
            str(runs),
            *args,
        ],
        env={**os.environ, "EXAMPLE_WARMING": "on", "EXAMPLE_ACCESS_LOG": "", **(env or {})},
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    (WORK / f"cachewarm-{label}.out").write_text(done.stdout + done.stderr)
    check(
        done.returncode == expect_exit,
        f"cachewarm {label}: exit {done.returncode}, expected {expect_exit}\n"
        f"{done.stdout}\n{done.stderr[-5000:]}",
    )
    reports = sorted(runs.glob("*/report.json"))
    check(len(reports) == 1, f"cachewarm {label}: {len(reports)} reports in {runs}")
    return json.loads(reports[0].read_text()), seconds


def warm_state(
    entries: list[dict[str, Any]],
    sessions: dict[str, str],
    expected: dict[str, Any],
    version: int | None = None,
    skip: set[str] = frozenset(),
) -> int:  # type: ignore[assignment]
    """How many manifest keys are in the cache; each one must equal the cold value."""
    warm = 0
    for entry in entries:
        key = entry["key"]
        if key in skip:
            continue
        name, logged_version = app_key(key, sessions)
        got = cache.get(name, _MISSING, version=version or logged_version)
        if got is _MISSING:
            continue
        warm += 1
        if key in expected:
            check(same(got, expected[key]), f"{key}: warmed {got!r} != cold {expected[key]!r}")
    return warm


def run_e2e() -> dict[str, Any]:
    clients = setup_data()
    sessions = session_keys(clients)
    visits = traffic(clients)
    # Cold: an empty cache after a deploy.
    cache.clear()
    cold_log = WORK / "cold.jsonl"
    log_to(cold_log)
    services.FRAGMENT_RENDERS.clear()
    replay(visits)
    cold_events = read_log(cold_log)
    cold_hits, cold_reads = first_read_hit_rate(cold_events)
    expected = snapshot(cold_events, sessions)
    log_to(WORK / "checks.jsonl")
    manifest, entries = rank(cold_log, "cold")
    categories = {entry["category"] for entry in entries}
    check(
        {
            "django.sessions",
            "django.template_fragments",
            "django.profile",
            "django.perm",
            "django.report",
        }
        <= categories,
        f"manifest categories: {categories}",
    )

    # The deploy step.
    cache.clear()
    report, seconds = cachewarm(manifest, "first")
    target = report["targets"][0]
    counts = target["counts"]
    check(counts["failed"] == 0 and counts["source_miss"] == 0, f"first run: {counts}")
    warm = warm_state(entries, sessions, expected)
    check(warm == counts["written"] and warm > 0, f"{warm} keys warm, report says {counts}")
    # Session keys are logged hashed: the report's coverage asks for the keys the loader wrote.
    covered = target["coverage_after"]["keys_present"]
    check(covered == warm, f"coverage after finds {covered} keys, {warm} are warm")
    if KIND != "sql":
        check(warm == len(entries), f"{warm} of {len(entries)} manifest keys warm")
    fragments_warm = {
        entry["key"]
        for entry in entries
        if ":template.cache." in entry["key"]
        and cache.get(app_key(entry["key"], sessions)[0]) is not None
    }
    fragments_cold = {key for key in expected if ":template.cache." in key}

    # The same traffic again, now on a warmed cache.
    warm_log = WORK / "warm.jsonl"
    log_to(warm_log)
    services.FRAGMENT_RENDERS.clear()
    replay(visits)
    warm_hits, warm_reads = first_read_hit_rate(read_log(warm_log))
    log_to(WORK / "checks.jsonl")
    renders = sum(services.FRAGMENT_RENDERS.values())
    check(
        renders == len(fragments_cold - fragments_warm),
        f"{renders} fragment bodies rendered; "
        f"{len(fragments_cold - fragments_warm)} fragments were not warm",
    )
    cold_rate, warm_rate = cold_hits / cold_reads, warm_hits / warm_reads
    print(
        f"{BACKEND}: first reads hit {cold_hits}/{cold_reads} = {cold_rate:.1%} cold, "
        f"{warm_hits}/{warm_reads} = {warm_rate:.1%} warmed",
        flush=True,
    )
    check(warm_rate >= cold_rate + 0.5, "the warmed first reads should hit well above cold")

    # Again: everything is there, nothing is written.
    again, _ = cachewarm(manifest, "again")
    check(
        again["targets"][0]["counts"]["written"] == 0,
        f"second run: {again['targets'][0]['counts']}",
    )

    if os.environ.get("SCENARIO_SELECTIVE"):
        result_selective = check_selective(manifest, entries, sessions)
    else:
        result_selective = None

    # A loader that raises for some keys: the rest is warm, the report names them.
    broken_days = [DAYS[1].isoformat(), DAYS[2].isoformat()]
    broken = {
        e["key"]
        for e in entries
        if any(e["key"].endswith(f"report:daily:{d}") for d in broken_days)
    }
    check(bool(broken), "the manifest has reports of the broken days")
    cache.clear()
    failing, _ = cachewarm(
        manifest, "broken", env={"EXAMPLE_BROKEN_REPORTS": ",".join(broken_days)}
    )
    failed = failing["targets"][0]
    named = {item["key"] for item in failed["not_warmed"]}
    check(broken <= named, f"the report names {named & broken} of the broken keys {broken}")
    check(
        failed["counts"]["failed"] + failed["counts"]["source_miss"] == len(broken),
        f"{failed['counts']}",
    )
    still = warm_state(entries, sessions, expected, skip=broken)
    check(still == failed["counts"]["written"], f"{still} warm beside the broken keys")
    cache.clear()
    cachewarm(
        manifest,
        "strict",
        "--strict",
        env={"EXAMPLE_BROKEN_REPORTS": broken_days[0]},
        expect_exit=1,
    )

    # A version bump: the manifest ranked under VERSION 1 warms the keys of VERSION 2.
    cache.clear()
    bumped, _ = cachewarm(manifest, "bump", env={"EXAMPLE_CACHE_VERSION": "2"})
    on_two = warm_state(entries, sessions, expected, version=2)
    check(
        on_two == bumped["targets"][0]["counts"]["written"] and on_two > 0,
        f"{on_two} warm under VERSION 2",
    )
    covered = bumped["targets"][0]["coverage_after"]["keys_present"]
    check(covered == on_two, f"coverage after the bump finds {covered} keys, {on_two} are warm")
    check(
        warm_state(entries, sessions, expected, version=1) == 0, "nothing written under VERSION 1"
    )

    result: dict[str, Any] = {
        "backend": BACKEND,
        "database": connection.vendor,
        "manifest_entries": len(entries),
        "written": counts["written"],
        "cold_first_read_hit_rate": round(cold_rate, 4),
        "warm_first_read_hit_rate": round(warm_rate, 4),
        "first_reads": warm_reads,
        "warm_ms": report["timings"]["warm_ms"],
        "keys_per_s": target["keys_per_s"],
        "command_seconds": round(seconds, 2),
    }

    if result_selective is not None:
        result["selective"] = result_selective
    if KIND == "sql":
        result["max_entries_rows"] = check_max_entries()
    return result


def check_selective(
    manifest: Path, entries: list[dict[str, Any]], sessions: dict[str, str]
) -> dict[str, int]:
    """--dry-run writes nothing; --category and --key warm only what they select. Leaves the
    cache as the warm replay left it (the selective runs add nothing that was not there)."""

    def warm_keys() -> set[str]:
        found = set()
        for entry in entries:
            name, version = app_key(entry["key"], sessions)
            if cache.get(name, _MISSING, version=version) is not _MISSING:
                found.add(entry["key"])
        return found

    cache.clear()
    dry, _ = cachewarm(manifest, "dry", "--dry-run")
    check(not warm_keys(), "--dry-run wrote keys")
    check(dry["dry_run"] is True, "the report says dry run")
    sessions_only, _ = cachewarm(manifest, "category", "--category", "django.sessions")
    warm = warm_keys()
    check(
        bool(warm) and all("django.contrib.sessions" in key for key in warm), f"--category: {warm}"
    )
    cache.clear()
    profiles_only, _ = cachewarm(manifest, "key", "--key", r"^:1:profile:")
    warm = warm_keys()
    want = {e["key"] for e in entries if e["key"].startswith(":1:profile:")}
    check(warm == want, f"--key warmed {sorted(warm)[:5]}…, expected {sorted(want)[:5]}…")
    cache.clear()
    return {
        "category_written": sessions_only["targets"][0]["counts"]["written"],
        "key_written": profiles_only["targets"][0]["counts"]["written"],
    }


def check_max_entries() -> int:
    """500 hot report keys against MAX_ENTRIES = 300, with the fill limit lifted: the emptied
    table takes exactly 300 rows, never more, and the report counts the other 200 as
    ``skipped_budget``."""
    keys, max_entries = 500, settings.CACHES["default"]["OPTIONS"]["MAX_ENTRIES"]
    check(max_entries < keys, f"MAX_ENTRIES = {max_entries} leaves room for all {keys} keys")
    log = WORK / "many.jsonl"
    base = 1_800_000_000
    with log.open("w") as out:
        for round_ in range(2):
            for i in range(keys):
                day = datetime.date(2020, 1, 1) + datetime.timedelta(days=i)
                out.write(
                    json.dumps(
                        {
                            "ts": base + round_ * 1000 + i,
                            "key": f":1:report:daily:{day}",
                            "op": "get",
                            "hit": False,
                            "namespace": "default",
                        }
                    )
                    + "\n"
                )
    manifest, entries = rank(log, "many")
    check(len(entries) == keys, f"{len(entries)} entries")
    cache.clear()
    table = connection.ops.quote_name(settings.CACHES["default"]["LOCATION"])
    report, _ = cachewarm(manifest, "many", env={"CACHEWARM_MAX_FILL": "100%"})
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table}")
        rows = int(cursor.fetchone()[0])
    target = report["targets"][0]
    counts = target["counts"]
    check(rows == max_entries, f"{rows} rows in a table with MAX_ENTRIES = {max_entries}")
    check(
        (counts["written"], counts["skipped_budget"]) == (max_entries, keys - max_entries),
        f"{max_entries} written and {keys - max_entries} skipped_budget expected: {counts}",
    )
    check(target["stopped_by"] == "max_entries", f"stopped_by: {target['stopped_by']}")
    return rows


def run_detached() -> dict[str, Any]:
    """``warm(…, background=True)`` from Python returns a run directory at once; its status
    can be polled until the run has finished."""
    from cachewarm_django import warm

    clients = setup_data()
    cache.clear()
    log = WORK / "cold.jsonl"
    log_to(log)
    replay(traffic(clients))
    manifest, entries = rank(log, "detached")
    cache.clear()
    os.environ["EXAMPLE_WARMING"] = "on"
    started = time.perf_counter()
    run = warm(manifest, background=True, runs_dir=str(WORK / "runs-detached"))
    returned = time.perf_counter() - started
    status: dict[str, Any] = {}
    for _ in range(600):
        try:
            status = run.status()
        except RuntimeError:  # the background run has not written its checkpoint yet
            status = {}
        if status.get("state") not in ("running", "starting", None):
            break
        time.sleep(0.2)
    check(status.get("state") == "finished", f"status: {status}")
    report = json.loads((Path(run.run_dir) / "report.json").read_text())
    written = report["targets"][0]["counts"]["written"]
    check(written == len(entries), f"{written} of {len(entries)} written in the background")
    return {
        "backend": BACKEND,
        "returned_after_s": round(returned, 3),
        "state": status["state"],
        "written": written,
    }


def run_throughput() -> dict[str, Any]:
    """Keys per second through the loader: SCENARIO_KEYS daily reports (one aggregate query
    each), ranked and warmed as a deploy would."""
    call_command("migrate", verbosity=0)
    count = int(os.environ.get("SCENARIO_KEYS", "5000"))
    log = WORK / "many.jsonl"
    base = 1_800_000_000
    with log.open("w") as out:
        for round_ in range(2):
            for i in range(count):
                day = datetime.date(2000, 1, 1) + datetime.timedelta(days=i)
                event = {
                    "ts": base + round_ * count + i,
                    "key": f":1:report:daily:{day}",
                    "op": "get",
                    "hit": False,
                    "namespace": "default",
                }
                out.write(json.dumps(event) + "\n")
    manifest, entries = rank(log, "throughput")
    cache.clear()
    report, seconds = cachewarm(manifest, "throughput")
    target = report["targets"][0]
    check(target["counts"]["written"] == count, f"{target['counts']}")
    return {
        "backend": BACKEND,
        "keys": count,
        "warm_ms": report["timings"]["warm_ms"],
        "keys_per_s": target["keys_per_s"],
        "command_seconds": round(seconds, 2),
        "loader_workers": os.cpu_count(),
    }


def run_argv() -> dict[str, Any]:
    """The warmer command ``manage.py cachewarm`` would run, without running it."""
    from cachewarm_django.runner import Options, command

    argv, env = command("manifest.json", "default", Options(key="^:1:profile:"), detach=False)
    return {
        "argv": argv,
        "targets": env["CACHEWARM_TARGETS"],
        "key_pattern": env.get("CACHEWARM_DJANGO_KEY_PATTERN"),
    }


def main() -> None:
    mode = sys.argv[1]
    result = {
        "protocol": run_protocol,
        "access_log": run_access_log,
        "e2e": run_e2e,
        "detached": run_detached,
        "argv": run_argv,
        "throughput": run_throughput,
    }[mode]()
    print("RESULT " + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()
