"""The loader protocol and the access log against one backend: values the loader computes, written
with the store's own plain client, read back through ``cache.get``; and the access log's lines
against the reads the test made.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
from typing import Any

from scenario_base import (
    _MISSING,
    BACKEND,
    CACHED_DB_PREFIX,
    DAYS,
    EXAMPLE,
    KIND,
    USERS,
    WORK,
    app_key,
    cache,
    call_command,
    check,
    connection,
    django,
    log_to,
    read_log,
    replay,
    same,
    session_hash,
    session_keys,
    settings,
    setup_data,
    snapshot,
    timezone,
    traffic,
)


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
