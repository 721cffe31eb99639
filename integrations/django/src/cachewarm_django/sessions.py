"""Session keys in the access log, and the built-in session loaders.

A session key is a credential: whoever holds it is logged in. The access log therefore writes
session cache keys as ``django.contrib.sessions.cached_db#<hmac>``, a keyed hash
(``salted_hmac`` with the project's ``SECRET_KEY``) of the session key, unless
``CACHEWARM_LOG_SESSION_IDS = True``. The manifest ranked from that log holds hashes only; the
loader resolves a hash by hashing the session keys of the live rows in ``django_session`` once
per loader process (one HMAC per live session) and looking it up.

The cache-only engine (``django.contrib.sessions.backends.cache``) keeps sessions nowhere else,
so no loader can recompute them: copy them from a replica or a snapshot of the old cache
(``warmer run --source redis://old…`` or ``warmer snapshot`` before the deploy).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from .registry import Loader, Skip, Value, registry

CACHED_DB_PREFIX = "django.contrib.sessions.cached_db"
CACHE_PREFIX = "django.contrib.sessions.cache"
HASH_MARK = "#"
_SALT = "cachewarm_django.sessions"
_HASH_HEX = 32


def session_hash(session_key: str) -> str:
    """The keyed hash logged in place of a session key."""
    return salted_hmac(_SALT, session_key, algorithm="sha256").hexdigest()[:_HASH_HEX]


def log_form(app_key: str, in_clear: bool = False) -> str:
    """``app_key`` as the access log writes it: session keys hashed unless ``in_clear``
    (``CACHEWARM_LOG_SESSION_IDS``)."""
    if in_clear or not app_key.startswith(CACHE_PREFIX):
        return app_key
    for prefix in (CACHED_DB_PREFIX, CACHE_PREFIX):
        if app_key.startswith(prefix):
            rest = app_key[len(prefix) :]
            if prefix == CACHE_PREFIX and rest.startswith("d_db"):
                continue  # a cached_db key; the loop has seen it
            if rest and not rest.startswith(HASH_MARK):
                return prefix + HASH_MARK + session_hash(rest)
    return app_key


def _store_class() -> Any:
    engine = import_module(settings.SESSION_ENGINE)
    store = getattr(engine, "SessionStore", None)
    if store is not None and getattr(store, "cache_key_prefix", None) == CACHED_DB_PREFIX:
        return store
    return import_module("django.contrib.sessions.backends.cached_db").SessionStore


class _Resolver:
    """Session key by its hash, over the live rows, built on first use in this process."""

    def __init__(self) -> None:
        self._by_hash: dict[str, str] | None = None

    def find(self, digest: str) -> str | None:
        if self._by_hash is None:
            from django.utils import timezone

            model = _store_class().get_model_class()
            live = model.objects.filter(expire_date__gt=timezone.now())
            self._by_hash = {
                session_hash(key): key
                for key in live.values_list("session_key", flat=True).iterator(chunk_size=2000)
            }
        return self._by_hash.get(digest)


_resolver = _Resolver()


def load_cached_db_session(session: str) -> Value:
    """The value ``cached_db``'s ``SessionStore.load`` caches, with its expiry from the row."""
    if session.startswith(HASH_MARK):
        session_key = _resolver.find(session[len(HASH_MARK) :])
        if session_key is None:
            raise Skip("no live session in the database has this hash")
    else:
        session_key = session
    store = _store_class()(session_key)
    row = store._get_session_from_db()
    if row is None:
        raise Skip("the session has expired or was deleted")
    data = store.decode(row.session_data)
    return Value(
        data,
        timeout=store.get_expiry_age(expiry=row.expire_date),
        key=store.cache_key_prefix + session_key,
    )


def load_cache_only_session(session: str) -> Value:
    raise Skip(
        "cache-only sessions (SESSION_ENGINE django.contrib.sessions.backends.cache) exist "
        "only in the cache: copy them from a replica or snapshot (warmer run --source …)"
    )


def register(alias: str) -> None:
    """Adds the built-in session loaders for the session cache alias, after the app's own."""
    import re

    session_alias = getattr(settings, "SESSION_CACHE_ALIAS", "default")
    for pattern, function in (
        (
            rf"^{re.escape(CACHED_DB_PREFIX)}(?P<session>[a-z0-9]+|#[0-9a-f]+)$",
            load_cached_db_session,
        ),
        (rf"^{re.escape(CACHE_PREFIX)}(?P<session>[a-z0-9]+|#[0-9a-f]+)$", load_cache_only_session),
    ):
        registry.loaders.append(
            Loader(
                pattern=re.compile(pattern),
                function=function,
                category="django.sessions",
                aliases=(session_alias,),
            )
        )
