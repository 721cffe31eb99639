"""The access log: every operation of every cache alias as a canonical JSON line (DESIGN.md
``AccessEvent``: ts, key, op, hit, value_size, ttl_s, latency_us, namespace), for
``analyzer ingest``.

- Each backend instance ``caches`` creates has its public methods, sync and ``a…`` async,
  wrapped on the instance. Only the outermost call is logged (a context variable, which
  asgiref's ``sync_to_async`` carries into its thread): ``aget`` that runs ``get``, or the
  base ``get_many`` that runs ``get`` per key, is one event per key, not two.
  ``get_or_set`` is not an operation of its own: its inner ``get`` and ``add`` are logged.
- Hits are detected with a sentinel default, so a cached ``None`` is a hit.
- ``get_many``, ``set_many`` and ``delete_many`` are logged per key; ``has_key`` is logged as
  a read (``get``), since warming changes its answer as it changes ``get``'s.
- ``key`` is the store key (``make_key``); session keys are logged as keyed hashes
  (:mod:`cachewarm_django.sessions`).
- ``value_size`` is the size of the bytes the backend stores, on writes (reads would have to
  serialize the value again).
- Lines go to a bounded in-memory queue that a writer thread appends to the file in batches
  (one ``write`` per batch on an ``O_APPEND`` descriptor, so processes sharing the file do not
  interleave inside a line). A request never waits for the disk: when the queue is full the
  line is dropped and counted; a failed write (disk full) drops its batch, is counted, logged
  once a minute, and the writer tries again with the next batch.
"""

from __future__ import annotations

import atexit
import contextvars
import functools
import json
import logging
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

from .sessions import log_form

logger = logging.getLogger("cachewarm_django.access_log")

_SENTINEL = object()
_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("cachewarm_inside", default=False)

#: Lines held in memory at most before new ones are dropped.
QUEUE_LINES = 100_000
#: How long the writer waits to gather more lines into one write.
BATCH_SECONDS = 0.2


class Writer:
    """Appends lines to ``path`` from a background thread; never blocks the caller."""

    def __init__(self, path: str, max_lines: int = QUEUE_LINES) -> None:
        self.path = path
        self.dropped = 0
        self.written = 0
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_lines)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._last_warning = 0.0

    def put(self, line: str) -> None:
        self._ensure_thread()
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits until every queued line has been written (or dropped); for tests and exit."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        if self._pid != os.getpid():
            # A forked worker: the parent's thread and queued lines are not ours.
            self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._thread = None
            self._pid = os.getpid()
        if self._thread is None:
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(
                        target=self._run, name="cachewarm-access-log", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            lines = [first] if first is not None else []
            deadline = time.monotonic() + BATCH_SECONDS
            while len(lines) < 10_000:
                try:
                    line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if line is not None:
                    lines.append(line)
            self._write(lines)
            for _ in range(len(lines) + (first is None)):
                self._queue.task_done()

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(lines).encode("utf-8", "backslashreplace")
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            self.written += len(lines)
        except OSError as error:
            with self._lock:
                self.dropped += len(lines)
            now = time.monotonic()
            if now - self._last_warning > 60:
                self._last_warning = now
                logger.warning(
                    "cache access log %s: %s; %d lines dropped so far",
                    self.path,
                    error,
                    self.dropped,
                )


_writer: Writer | None = None


def writer() -> Writer | None:
    return _writer


def _ts() -> str:
    micros = time.time_ns() // 1000
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


class _Logger:
    """Builds the events of one cache alias."""

    def __init__(self, alias: str, cache: BaseCache, out: Writer) -> None:
        self.alias = alias
        self.cache = cache
        self.out = out
        self._size: Callable[[str, Any], int] | None = None
        from django.conf import settings

        self.sessions_in_clear = bool(getattr(settings, "CACHEWARM_LOG_SESSION_IDS", False))

    def store_key(self, key: Any, version: int | None) -> str:
        return self.cache.make_key(log_form(str(key), self.sessions_in_clear), version=version)

    def value_size(self, key: str, value: Any) -> int | None:
        if self._size is None:
            from .backends import Unsupported, describe

            try:
                encode = describe(self.alias).encode
                self._size = lambda store_key, v: len(encode(store_key, v)[0])
            except Unsupported:
                # An in-process cache: the pickle is what it would hold.
                self._size = lambda store_key, v: len(pickle.dumps(v, pickle.HIGHEST_PROTOCOL))
        try:
            return self._size(key, value)
        except Exception:  # an unpicklable value fails in the backend, not here
            return None

    def ttl(self, timeout: Any) -> int | None:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.cache.default_timeout
        if timeout is None:
            return None
        return max(0, int(timeout))

    def emit(
        self,
        ts: str,
        key: str,
        op: str,
        latency_us: int,
        hit: bool | None = None,
        value_size: int | None = None,
        ttl_s: int | None = None,
    ) -> None:
        event: dict[str, Any] = {"key": key, "op": op}
        if hit is not None:
            event["hit"] = hit
        if value_size is not None:
            event["value_size"] = value_size
        if ttl_s is not None:
            event["ttl_s"] = ttl_s
        event["latency_us"] = latency_us
        event["namespace"] = self.alias
        rest = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        # `ts` first, as a JSON number with exactly six decimals (a float could round it).
        self.out.put(f'{{"ts":{ts},{rest[1:]}\n')


def _args(names: Iterable[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    # Callers pass at most as many positional arguments as there are names (see _wrap).
    bound = dict(zip(names, args, strict=False))
    bound.update(kwargs)
    return bound


# Per method: its parameter names (as BaseCache declares them) and how to log a call.
_SINGLE = {
    "get": ("key", "default", "version"),
    "set": ("key", "value", "timeout", "version"),
    "add": ("key", "value", "timeout", "version"),
    "delete": ("key", "version"),
    "touch": ("key", "timeout", "version"),
    "incr": ("key", "delta", "version"),
    "decr": ("key", "delta", "version"),
    "has_key": ("key", "version"),
}
_MANY = {
    "get_many": ("keys", "version"),
    "set_many": ("data", "timeout", "version"),
    "delete_many": ("keys", "version"),
}


def _call(
    log: _Logger, name: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Runs the real (sync) method and logs it; the async twin is :func:`_acall`."""
    plan = _Plan(log, name, args, kwargs)
    started = time.perf_counter()
    try:
        result = call(*plan.args, **plan.kwargs)
    except ValueError:
        if name in ("incr", "decr"):  # a missing key
            plan.finish(started, _SENTINEL, missing=True)
        raise
    plan.finish(started, result)
    return plan.result(result)


async def _acall(
    log: _Logger, name: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    plan = _Plan(log, name, args, kwargs)
    started = time.perf_counter()
    try:
        result = await call(*plan.args, **plan.kwargs)
    except ValueError:
        if name in ("incr", "decr"):
            plan.finish(started, _SENTINEL, missing=True)
        raise
    plan.finish(started, result)
    return plan.result(result)


class _Plan:
    """One call: the arguments passed on (a sentinel default for ``get``), and its events."""

    def __init__(
        self, log: _Logger, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.log = log
        self.name = name
        self.ts = _ts()
        names = _SINGLE.get(name) or _MANY[name]
        self.bound = _args(names, args, kwargs)
        self.args: tuple[Any, ...] = ()
        self.kwargs = dict(self.bound)
        if name == "get":
            self.kwargs["default"] = _SENTINEL
        if name in ("get_many", "delete_many"):
            # A generator would be used up by the backend before it is logged.
            self.kwargs["keys"] = list(self.bound["keys"])

    def result(self, result: Any) -> Any:
        if self.name == "get" and result is _SENTINEL:
            return self.bound.get("default")
        return result

    def finish(self, started: float, result: Any, missing: bool = False) -> None:
        latency = int((time.perf_counter() - started) * 1_000_000)
        log, bound, name = self.log, self.bound, self.name
        version = bound.get("version")
        if name in _SINGLE:
            key = log.store_key(bound["key"], version)
            if name == "get":
                log.emit(self.ts, key, "get", latency, hit=result is not _SENTINEL)
            elif name == "has_key":
                log.emit(self.ts, key, "get", latency, hit=bool(result))
            elif name in ("set", "add"):
                timeout = bound.get("timeout", DEFAULT_TIMEOUT)
                log.emit(
                    self.ts,
                    key,
                    name,
                    latency,
                    value_size=log.value_size(
                        log.cache.make_key(bound["key"], version=version), bound.get("value")
                    ),
                    ttl_s=log.ttl(timeout),
                )
            elif name in ("incr", "decr"):
                log.emit(self.ts, key, name, latency, hit=not missing)
            elif name in ("delete", "touch"):
                log.emit(self.ts, key, name, latency, hit=bool(result))
            return
        # Per key, each with the call's latency divided among its keys.
        if name == "get_many":
            keys = self.kwargs["keys"]
            share = latency // max(1, len(keys))
            found = result if isinstance(result, dict) else {}
            for app_key in keys:
                log.emit(
                    self.ts, log.store_key(app_key, version), "get", share, hit=app_key in found
                )
        elif name == "set_many":
            data = bound["data"]
            share = latency // max(1, len(data))
            ttl = log.ttl(bound.get("timeout", DEFAULT_TIMEOUT))
            for app_key, value in data.items():
                size = log.value_size(log.cache.make_key(app_key, version=version), value)
                log.emit(
                    self.ts,
                    log.store_key(app_key, version),
                    "set",
                    share,
                    value_size=size,
                    ttl_s=ttl,
                )
        elif name == "delete_many":
            keys = self.kwargs["keys"]
            share = latency // max(1, len(keys))
            for app_key in keys:
                log.emit(self.ts, log.store_key(app_key, version), "delete", share)


def _wrap(cache: BaseCache, alias: str, out: Writer) -> BaseCache:
    if getattr(cache, "_cachewarm_logged", False):
        return cache
    log = _Logger(alias, cache, out)
    for name in list(_SINGLE) + list(_MANY):
        sync = getattr(cache, name)
        asynchronous = getattr(cache, "a" + name)
        # Positional arguments past BaseCache's (django_redis' `client`) are passed through
        # unlogged rather than guessed at.
        arity = len(_SINGLE.get(name) or _MANY[name])

        def sync_wrapper(
            *args: Any,
            _name: str = name,
            _call_it: Callable[..., Any] = sync,
            _arity: int = arity,
            **kwargs: Any,
        ) -> Any:
            if _inside.get() or len(args) > _arity:
                return _call_it(*args, **kwargs)
            token = _inside.set(True)
            try:
                return _call(log, _name, _call_it, args, kwargs)
            finally:
                _inside.reset(token)

        async def async_wrapper(
            *args: Any,
            _name: str = name,
            _call_it: Callable[..., Any] = asynchronous,
            _arity: int = arity,
            **kwargs: Any,
        ) -> Any:
            if _inside.get() or len(args) > _arity:
                return await _call_it(*args, **kwargs)
            token = _inside.set(True)
            try:
                return await _acall(log, _name, _call_it, args, kwargs)
            finally:
                _inside.reset(token)

        setattr(cache, name, functools.wraps(sync)(sync_wrapper))
        setattr(cache, "a" + name, functools.wraps(asynchronous)(async_wrapper))
    cache._cachewarm_logged = True  # type: ignore[attr-defined]
    return cache


def install(path: str) -> Writer:
    """Wraps every cache alias ``django.core.cache.caches`` hands out from now on (and those it
    already made in this thread)."""
    global _writer
    from django.core.cache import caches

    if _writer is not None:
        return _writer
    _writer = Writer(path)
    out = _writer
    # The writer thread is a daemon; a short-lived process (a management command) would
    # otherwise exit with its last lines still queued.
    atexit.register(out.flush, 2.0)
    create = caches.create_connection

    def create_connection(alias: str) -> BaseCache:
        return _wrap(create(alias), alias, out)

    caches.create_connection = create_connection  # type: ignore[method-assign]
    for alias in caches.settings:
        existing = getattr(caches._connections, alias, None)  # type: ignore[attr-defined]
        if existing is not None:
            _wrap(existing, alias, out)
    return _writer
