"""Manifest keys back to app keys through the alias's own key function: with a KEY_PREFIX, under
an old VERSION, with a custom reversible KEY_FUNCTION; a hashing KEY_FUNCTION is refused, and a
key of another prefix is not taken for one of this alias."""

from __future__ import annotations

import hashlib

import pytest
from django.core.cache.backends.locmem import LocMemCache

from cachewarm_django.keys import AppKey, Irreversible, KeyReverser


def slash_key(key: str, key_prefix: str, version: int) -> str:
    return f"{key_prefix}/{key}/v{version}"


def hashed_key(key: str, key_prefix: str, version: int) -> str:
    return hashlib.md5(f"{key_prefix}:{version}:{key}".encode()).hexdigest()


def test_default_key_function_with_prefix_and_old_version() -> None:
    cache = LocMemCache("t", {"KEY_PREFIX": "shop", "VERSION": 3})
    keys = KeyReverser(cache)
    assert keys.app_key(cache.make_key("a:b:c")) == AppKey("a:b:c", 3)
    assert keys.app_key("shop:1:profile:7") == AppKey("profile:7", 1)
    assert keys.store_key("profile:7") == "shop:3:profile:7"
    assert keys.app_key("other:1:profile:7") is None
    assert keys.app_key(":1:profile:7") is None


def test_custom_reversible_key_function() -> None:
    cache = LocMemCache("t", {"KEY_PREFIX": "p", "VERSION": 2, "KEY_FUNCTION": slash_key})
    keys = KeyReverser(cache)
    assert keys.app_key("p/x/y/v1") == AppKey("x/y", 1)
    assert keys.store_key("x/y") == "p/x/y/v2"


def test_hashing_key_function_is_refused() -> None:
    with pytest.raises(Irreversible):
        KeyReverser(LocMemCache("t", {"KEY_FUNCTION": hashed_key}))
