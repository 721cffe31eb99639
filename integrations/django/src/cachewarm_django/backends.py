"""What a cache alias is to the warmer: its store kind, target URLs, and how its backend turns a
value into stored bytes (and memcached flags).

Every encoder calls the backend's own serializer or client code, so the bytes are exactly what
``cache.set`` would have stored with the installed versions of Django and the client library.
The one exception is ``DatabaseCache``, whose pickle + base64 step is inline in its private
``_base_set`` with no function to call: it is repeated here with the backend's own
``pickle_protocol``, and the tests read every value back through ``cache.get``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import quote, urlsplit, urlunsplit

from django.core.cache import caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

#: Backends that keep values inside one process: the warmer cannot reach them.
IN_PROCESS = {
    "django.core.cache.backends.locmem.LocMemCache": (
        "LocMemCache keeps values inside each Django process; no other process can warm it. "
        "Use Redis, memcached or DatabaseCache for a cache worth warming."
    ),
    "django.core.cache.backends.dummy.DummyCache": (
        "DummyCache stores nothing, so there is nothing to warm."
    ),
    "django.core.cache.backends.filebased.FileBasedCache": (
        "FileBasedCache is a directory of files on each host; the warmer has no store for it. "
        "Warm it from Django itself (each host: call your loaders and cache.set), or move the "
        "cache to Redis, memcached or DatabaseCache."
    ),
}


class Unsupported(Exception):
    """The alias's backend or configuration cannot be warmed; the message says why."""


Encoder = Callable[[str, Any], tuple[bytes, int | None]]


@dataclass
class Backend:
    """One cache alias as the warmer sees it."""

    alias: str
    cache: BaseCache
    backend_path: str
    store_kind: str  # "redis" | "memcached" | "sql"
    serializer: str
    #: Target URLs, passwords included: never put them on a command line or in a log.
    target_urls: list[str]
    encode: Encoder

    def ttl_ms(self, timeout: float | None | object) -> int | None:
        """Django's timeout (``DEFAULT_TIMEOUT``, ``None`` for never, seconds) in milliseconds.

        ``BaseCache.get_backend_timeout`` gives an absolute time, which the protocol does not
        take; the rules applied are the same: the default is the alias's ``TIMEOUT``.
        """
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.cache.default_timeout
        if timeout is None:
            return None
        return max(0, int(float(timeout) * 1000))  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """Changes whenever the bytes or keys this alias produces could change."""
        cache = self.cache
        parts = {
            "backend": self.backend_path,
            "key_prefix": cache.key_prefix,
            "version": cache.version,
            "key_function": getattr(cache.key_func, "__qualname__", repr(cache.key_func)),
            "serializer": self.serializer,
            "targets": [redact(url) for url in self.target_urls],
        }
        text = json.dumps(parts, sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()[:16]


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def backend_path(alias: str) -> str:
    from django.conf import settings

    return str(settings.CACHES[alias]["BACKEND"])


def describe(alias: str) -> Backend:
    """The alias's backend, or :class:`Unsupported` with the reason."""
    from django.conf import settings

    if alias not in settings.CACHES:
        raise Unsupported(
            f"settings.CACHES has no alias `{alias}` (it has: {', '.join(settings.CACHES)})"
        )
    path = backend_path(alias)
    if path in IN_PROCESS:
        raise Unsupported(f"cache alias `{alias}` uses {path}: {IN_PROCESS[path]}")
    cache = caches[alias]
    builders = {
        "django.core.cache.backends.redis.RedisCache": _django_redis_backend,
        "django_redis.cache.RedisCache": _django_redis_package,
        "django.core.cache.backends.memcached.PyMemcacheCache": _pymemcache,
        "django.core.cache.backends.memcached.PyLibMCCache": _pylibmc,
        "django.core.cache.backends.db.DatabaseCache": _database,
    }
    build = builders.get(path)
    if build is None:
        raise Unsupported(
            f"cache alias `{alias}` uses {path}, which cachewarm_django does not know how to "
            f"warm (supported: {', '.join(builders)})"
        )
    return build(alias, path, cache)


def _redis_encoder() -> Callable[[Any], bytes]:
    """redis-py's own encoder, as the connection uses it (ints as their decimal text)."""
    from redis.connection import Encoder as RedisEncoder  # type: ignore[attr-defined]

    encoder = RedisEncoder(  # type: ignore[no-untyped-call]
        encoding="utf-8", encoding_errors="strict", decode_responses=False
    )
    return cast(Callable[[Any], bytes], encoder.encode)


def _redis_url(url: str, options: dict[str, Any]) -> str:
    """The server URL with ``OPTIONS`` that redis-py would apply on top of it (user, password,
    db) folded in, so the warmer connects to the same database as the app."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise Unsupported(
            f"Redis LOCATION `{redact(url)}`: the warmer connects over redis:// or rediss:// only"
        )
    netloc = parts.netloc
    username = options.get("username")
    password = options.get("password")
    if username is not None or password is not None:
        host = netloc.rsplit("@", 1)[-1]
        user = quote(str(username or ""), safe="")
        secret = f":{quote(str(password), safe='')}" if password is not None else ""
        netloc = f"{user}{secret}@{host}"
    path = parts.path
    if options.get("db") is not None:
        path = f"/{int(options['db'])}"
    return urlunsplit(parts._replace(netloc=netloc, path=path))


def _django_redis_backend(alias: str, path: str, cache: Any) -> Backend:
    client = cache._cache  # RedisCacheClient: made lazily, connects only when used
    serializer = client._serializer
    to_bytes = _redis_encoder()
    options = dict(cache._options)

    def encode(store_key: str, value: Any) -> tuple[bytes, int | None]:
        return to_bytes(serializer.dumps(value)), None

    # Django writes to the first server and reads from the others (replicas).
    return Backend(
        alias=alias,
        cache=cache,
        backend_path=path,
        store_kind="redis",
        serializer=_serializer_name(serializer),
        target_urls=[_redis_url(cache._servers[0], options)],
        encode=encode,
    )


def _django_redis_package(alias: str, path: str, cache: Any) -> Backend:
    client = cache.client
    client_class = type(client).__module__ + "." + type(client).__qualname__
    if client_class != "django_redis.client.default.DefaultClient":
        raise Unsupported(
            f"cache alias `{alias}`: django_redis CLIENT_CLASS {client_class} is not supported "
            "(only DefaultClient: the sharded and herd clients place or wrap values themselves)"
        )
    to_bytes = _redis_encoder()
    options = dict(client._options)
    connection_options = dict(options.get("CONNECTION_POOL_KWARGS") or {})
    if options.get("PASSWORD") is not None:
        connection_options["password"] = options["PASSWORD"]

    def encode(store_key: str, value: Any) -> tuple[bytes, int | None]:
        return to_bytes(client.encode(value)), None

    serializer = (
        f"{_serializer_name(client._serializer)}+{type(client._compressor).__module__}."
        f"{type(client._compressor).__qualname__}"
    )
    return Backend(
        alias=alias,
        cache=cache,
        backend_path=path,
        store_kind="redis",
        serializer=serializer,
        target_urls=[_redis_url(client._server[0], connection_options)],
        encode=encode,
    )


def _memcached_url(servers: list[str], hashing: str | None) -> str:
    for server in servers:
        if server.startswith("unix:") or server.startswith("/"):
            raise Unsupported(
                f"memcached server `{server}` is a Unix socket; the warmer connects over TCP only"
            )
    url = "memcached://" + ",".join(servers)
    if len(servers) > 1:
        assert hashing is not None
        url += f"?hashing={hashing}"
    return url


def _pymemcache(alias: str, path: str, cache: Any) -> Backend:
    options = cache._options
    serde = options["serde"]
    if len(cache._servers) > 1 and options.get("hasher") is not None:
        raise Unsupported(
            f"cache alias `{alias}`: OPTIONS sets a pymemcache `hasher`; the warmer routes keys "
            "over several servers only as HashClient's default (rendezvous) does"
        )

    def encode(store_key: str, value: Any) -> tuple[bytes, int | None]:
        data, flags = serde.serialize(store_key, value)
        return (data.encode() if isinstance(data, str) else bytes(data)), int(flags)

    return Backend(
        alias=alias,
        cache=cache,
        backend_path=path,
        store_kind="memcached",
        serializer=f"pymemcache {_serializer_name(serde)}",
        target_urls=[_memcached_url(list(cache.client_servers), "rendezvous")],
        encode=encode,
    )


def _pylibmc(alias: str, path: str, cache: Any) -> Backend:
    options = cache._options
    servers = list(cache.client_servers)
    if options.get("username") or options.get("password"):
        raise Unsupported(
            f"cache alias `{alias}`: pylibmc SASL authentication is not supported by the warmer"
        )
    behaviors = options.get("behaviors") or {}
    if len(servers) > 1 and not behaviors.get("ketama"):
        raise Unsupported(
            f"cache alias `{alias}`: with several servers pylibmc spreads keys by modulo "
            "unless OPTIONS sets behaviors={'ketama': True}; the warmer routes as ketama only "
            "(and a modulo ring moves most keys whenever a server is added: use ketama)"
        )
    client = cache._cache  # pylibmc.Client: serialize() needs no connection

    def encode(store_key: str, value: Any) -> tuple[bytes, int | None]:
        data, flags = client.serialize(value)
        return bytes(data), int(flags)

    return Backend(
        alias=alias,
        cache=cache,
        backend_path=path,
        store_kind="memcached",
        serializer="pylibmc",
        target_urls=[_memcached_url(servers, "ketama")],
        encode=encode,
    )


def _database(alias: str, path: str, cache: Any) -> Backend:
    from django.db import connections, router

    db = router.db_for_write(cache.cache_model_class)
    connection = connections[db]
    table = cache._table
    max_entries = int(cache._max_entries)
    query = f"table={table}&max_entries={max_entries}"
    if connection.vendor == "sqlite":
        name = str(connection.settings_dict["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise Unsupported(f"cache alias `{alias}`: the database `{db}` is in memory")
        url = f"sqlite://{os.path.abspath(name)}?{query}"
    elif connection.vendor == "postgresql":
        url = _postgres_url(connection.settings_dict) + f"?{query}"
        url += _postgres_tls(connection.settings_dict)
    else:
        raise Unsupported(
            f"cache alias `{alias}`: DatabaseCache on {connection.vendor} is not supported "
            "(SQLite and PostgreSQL are)"
        )
    protocol = cache.pickle_protocol

    def encode(store_key: str, value: Any) -> tuple[bytes, int | None]:
        # DatabaseCache._base_set: pickle, base64, decoded as latin1 into the text column.
        text = base64.b64encode(pickle.dumps(value, protocol)).decode("latin1")
        return text.encode("utf-8"), None

    return Backend(
        alias=alias,
        cache=cache,
        backend_path=path,
        store_kind="sql",
        serializer=f"pickle-{protocol}+base64",
        target_urls=[url],
        encode=encode,
    )


def _postgres_url(settings_dict: dict[str, Any]) -> str:
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = settings_dict.get("PASSWORD") or ""
    host = str(settings_dict.get("HOST") or "localhost")
    if host.startswith("/"):
        raise Unsupported(
            f"PostgreSQL HOST `{host}` is a Unix socket directory; give the warmer a TCP host"
        )
    port = str(settings_dict.get("PORT") or "5432")
    auth = user + (f":{quote(str(password), safe='')}" if password else "")
    at = "@" if auth else ""
    name = quote(str(settings_dict["NAME"]), safe="")
    return f"postgres://{auth}{at}{host}:{port}/{name}"


# libpq's TLS parameters, which psycopg takes from DATABASES' OPTIONS; the warmer's postgres://
# URL reads them under the same names and meanings.
_POSTGRES_TLS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def _postgres_tls(settings_dict: dict[str, Any]) -> str:
    """The database's TLS settings as query parameters (``&sslmode=…``), in libpq's names."""
    options = settings_dict.get("OPTIONS") or {}
    given = [name for name in _POSTGRES_TLS if name in options]
    return "".join(f"&{name}={quote(str(options[name]), safe='/')}" for name in given)


def _serializer_name(serializer: Any) -> str:
    kind = type(serializer)
    name = f"{kind.__module__}.{kind.__qualname__}"
    protocol = getattr(serializer, "protocol", None) or getattr(serializer, "_protocol", None)
    if protocol is None:
        protocol = getattr(serializer, "pickle_version", None)
    return f"{name}(pickle-{protocol})" if protocol is not None else name
