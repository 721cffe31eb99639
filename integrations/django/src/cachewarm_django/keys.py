"""Manifest keys back to app-level keys: the reverse of the alias's ``make_key``.

A manifest key is a store key as the app wrote it, ``KEY_PREFIX:VERSION:app_key`` with Django's
default key function, possibly under an older ``VERSION`` than the one configured now. The
alias's own key function is probed with marker values to learn where it puts the prefix, the
version and the app key; a key function that does not place them as text (one that hashes, say)
cannot be reversed and is refused. Every reversal is checked by calling ``make_key`` again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.cache.backends.base import BaseCache

_KEY_MARK = "\x00cachewarm-key\x00"
_VERSION_MARK = 987654321


class Irreversible(Exception):
    """The alias's ``KEY_FUNCTION`` does not keep the app key readable."""


@dataclass(frozen=True)
class AppKey:
    key: str
    version: int


class KeyReverser:
    """Turns the store keys of one cache alias back into app-level keys and versions."""

    def __init__(self, cache: BaseCache) -> None:
        self.cache = cache
        probe = cache.make_key(_KEY_MARK, version=_VERSION_MARK)
        version_text = str(_VERSION_MARK)
        if probe.count(_KEY_MARK) != 1 or probe.count(version_text) != 1:
            raise Irreversible(
                "the cache's KEY_FUNCTION does not keep the key and version as text, so a "
                "manifest key cannot be turned back into the app's key"
            )
        # The probe's text around the two markers, in the order the key function put them.
        marks = sorted(
            [
                (probe.index(_KEY_MARK), _KEY_MARK, r"(?P<key>.*)"),
                (probe.index(version_text), version_text, r"(?P<version>-?\d+)"),
            ]
        )
        pattern, at = "", 0
        for position, mark, group in marks:
            pattern += re.escape(probe[at:position]) + group
            at = position + len(mark)
        self._pattern = re.compile(pattern + re.escape(probe[at:]) + r"\Z", re.DOTALL)

    def app_key(self, store_key: str) -> AppKey | None:
        """The app key and version ``store_key`` was made from, or ``None`` when this alias's
        key function (with its ``KEY_PREFIX``) did not make it."""
        found = self._pattern.match(store_key)
        if not found:
            return None
        candidate = AppKey(found["key"], int(found["version"]))
        if self.cache.make_key(candidate.key, version=candidate.version) != store_key:
            return None
        return candidate

    def store_key(self, app_key: str) -> str:
        """The key ``cache.set(app_key, …)`` writes now, with the current prefix and version."""
        return self.cache.make_key(app_key)
