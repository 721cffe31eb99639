"""The loader side of protocol v1 (README "Loader protocol"): hello, then for each request one
answer per manifest key and a ``done`` line.

stdout carries protocol lines only: while serving, ``sys.stdout`` is pointed at stderr so a
stray ``print`` in an app's loader goes to the run's log instead of breaking the stream.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import traceback
from typing import IO, Any

import django
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import InterfaceError, OperationalError, close_old_connections

from . import fragments, sessions
from .backends import Backend, describe
from .keys import KeyReverser
from .registry import Skip, Value, autodiscover, registry

PROTOCOL = 1
#: Set by ``manage.py cachewarm`` from ``--key``: only manifest keys this regex finds are
#: loaded (the warmer has no key filter of its own).
KEY_PATTERN_VARIABLE = "CACHEWARM_DJANGO_KEY_PATTERN"

#: How often the database connections are checked between requests.
CONNECTION_CHECK_SECONDS = 10.0

#: Errors worth trying again: the database or a service went away for a moment.
RETRYABLE = (OperationalError, InterfaceError, ConnectionError, TimeoutError)


def hello(backend: Backend) -> dict[str, Any]:
    cache = backend.cache
    return {
        "hello": {
            "protocol": PROTOCOL,
            "framework": f"django {django.get_version()}",
            "store_kind": backend.store_kind,
            "alias": backend.alias,
            "key_prefix": cache.key_prefix,
            "version": cache.version,
            "serializer": backend.serializer,
            "fingerprint": backend.fingerprint(),
        }
    }


class Answerer:
    """Answers manifest keys for one cache alias."""

    def __init__(self, backend: Backend, key_pattern: str | None = None) -> None:
        self.backend = backend
        self.reverser = KeyReverser(backend.cache)
        self.key_pattern = re.compile(key_pattern) if key_pattern else None
        self.retryable_errors = 0

    def _retryable(self, error: Exception) -> bool:
        if isinstance(error, RETRYABLE):
            self.retryable_errors += 1
            return True
        return False

    def answer(self, request_id: Any, key: str) -> dict[str, Any]:
        base: dict[str, Any] = {"id": request_id, "key": key}
        if self.key_pattern is not None and not self.key_pattern.search(key):
            return {**base, "miss": "not selected by --key"}
        app = self.reverser.app_key(key)
        if app is None:
            cache = self.backend.cache
            return {
                **base,
                "miss": f"not a key of cache alias `{self.backend.alias}` "
                f"(KEY_PREFIX {cache.key_prefix!r})",
            }
        found = registry.match(app.key, self.backend.alias)
        if found is None:
            return {**base, "miss": "no loader matches this key"}
        entry, groups = found
        try:
            result = entry.function(**groups)
        except Skip as skip:
            return {**base, "miss": str(skip) or "the loader skipped it"}
        except Exception as error:  # an app's loader can raise anything; the run goes on
            traceback.print_exc(file=sys.stderr)
            return {
                **base,
                "error": f"{entry.function.__module__}.{entry.function.__qualname__} raised "
                f"{type(error).__name__}: {error}",
                "retryable": self._retryable(error),
            }
        value = result if isinstance(result, Value) else Value(result)
        timeout = value.timeout
        if timeout is DEFAULT_TIMEOUT:
            timeout = entry.timeout
        ttl_ms = self.backend.ttl_ms(timeout)
        if ttl_ms == 0:
            return {**base, "miss": "its timeout is 0: Django would not keep it"}
        store_key = self.reverser.store_key(value.key if value.key is not None else app.key)
        try:
            data, flags = self.backend.encode(store_key, value.value)
        except Exception as error:  # an unpicklable value
            return {
                **base,
                "error": f"the value cannot be serialized: {type(error).__name__}: {error}",
                "retryable": False,
            }
        item: dict[str, Any] = {
            "key": store_key,
            "value_b64": base64.b64encode(data).decode("ascii"),
            "ttl_ms": ttl_ms,
        }
        if self.backend.store_kind == "memcached":
            item["flags"] = flags or 0
        return {**base, "entries": [item]}


def serve(alias: str, stdin: IO[str], stdout: IO[str]) -> int:
    """Speaks the protocol until stdin closes; returns the exit code."""
    autodiscover()
    # Built-ins after the app's own loaders, so an app can override them.
    sessions.register(alias)
    fragments.register(alias)
    backend = describe(alias)
    answerer = Answerer(backend, os.environ.get(KEY_PATTERN_VARIABLE) or None)

    def send(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message, separators=(",", ":"), ensure_ascii=False) + "\n")

    send(hello(backend))
    stdout.flush()
    checked_at = time.monotonic()
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            request_id = request["id"]
            keys = request["keys"]
            if not isinstance(keys, list):
                raise TypeError("`keys` is not a list")
        except (ValueError, KeyError, TypeError) as error:
            print(f"cachewarm_loader: not a protocol v1 request: {error}", file=sys.stderr)
            return 2
        # A connection the database closed, or one a retryable error left unusable, is
        # dropped rather than reused; checking on every request would reconnect every 100 keys
        # (Django closes connections on each check when CONN_MAX_AGE is 0).
        if answerer.retryable_errors or time.monotonic() - checked_at > CONNECTION_CHECK_SECONDS:
            close_old_connections()
            answerer.retryable_errors = 0
            checked_at = time.monotonic()
        for key in keys:
            send(answerer.answer(request_id, str(key)))
        send({"id": request_id, "done": True})
        stdout.flush()
    return 0
