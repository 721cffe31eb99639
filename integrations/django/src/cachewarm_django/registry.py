"""The loader registry: ``@loader(regex, category=…)`` functions and ``@fragment`` providers.

Apps register loaders in their own ``cachewarm.py``; :func:`autodiscover` imports those modules
(Django's ``autodiscover_modules``, as the admin does) only in the loader process, so a web
request never pays for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT

F = TypeVar("F", bound=Callable[..., Any])


class Skip(Exception):
    """Raised by a loader for a key it has nothing to warm for (the object is gone, …).

    The warmer counts the key as a ``source_miss`` with the exception's message as the reason.
    """


@dataclass(frozen=True)
class Value:
    """A loader's answer when it wants a TTL of its own: ``return Value(obj, timeout=600)``.

    ``timeout`` follows Django's meaning: seconds, ``None`` for no expiry; without it the
    loader's ``timeout=`` and then the alias's ``TIMEOUT`` apply.
    """

    value: Any
    timeout: float | None | object = DEFAULT_TIMEOUT
    #: The app-level key to store under, when it differs from the manifest's (a session key
    #: the manifest holds only as a hash).
    key: str | None = None


@dataclass
class Loader:
    """One registered loader: a regex on the app-level key and the function it calls."""

    pattern: re.Pattern[str]
    function: Callable[..., Any]
    category: str
    timeout: float | None | object = DEFAULT_TIMEOUT
    aliases: tuple[str, ...] | None = None

    def applies_to(self, alias: str) -> bool:
        return self.aliases is None or alias in self.aliases


@dataclass
class FragmentProvider:
    """Where the contexts of one ``{% cache NAME … %}`` fragment come from."""

    fragment_name: str
    template_name: str
    contexts: Callable[[], Iterable[Mapping[str, Any]]]
    category: str = "django.template_fragments"


@dataclass
class Registry:
    loaders: list[Loader] = field(default_factory=list)
    fragments: dict[str, FragmentProvider] = field(default_factory=dict)

    def match(self, app_key: str, alias: str) -> tuple[Loader, dict[str, str]] | None:
        """The first registered loader whose regex matches ``app_key`` (registration order)."""
        for entry in self.loaders:
            if not entry.applies_to(alias):
                continue
            found = entry.pattern.search(app_key)
            if found:
                return entry, found.groupdict()
        return None


registry = Registry()


def loader(
    regex: str,
    *,
    category: str = "default",
    timeout: float | None | object = DEFAULT_TIMEOUT,
    aliases: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Registers a function that computes the value of every app-level key ``regex`` matches.

    The function is called with the regex's named groups as keyword arguments (strings) and
    returns the value to cache, or a :class:`Value` with a timeout of its own; it raises
    :class:`Skip` when there is nothing to warm. ``timeout`` is the TTL in seconds as Django's
    ``cache.set`` takes it (default: the alias's ``TIMEOUT``). ``aliases`` limits the loader to
    some cache aliases.
    """
    compiled = re.compile(regex)

    def register(function: F) -> F:
        registry.loaders.append(
            Loader(
                pattern=compiled,
                function=function,
                category=category,
                timeout=timeout,
                aliases=tuple(aliases) if aliases is not None else None,
            )
        )
        return function

    return register


def fragment(
    fragment_name: str, *, template: str
) -> Callable[
    [Callable[[], Iterable[Mapping[str, Any]]]], Callable[[], Iterable[Mapping[str, Any]]]
]:
    """Registers the contexts a ``{% cache … fragment_name … %}`` block in ``template`` is
    rendered with.

    A fragment key holds only a hash of the block's vary-on values, so the loader cannot read
    them back from the key: the decorated function yields the template contexts the app renders
    the page with (for example one per active user), and the loader resolves the block's own
    vary-on expressions and Django's ``make_template_fragment_key`` on each to find the one a
    manifest key names, then renders the block's body with Django's template engine.
    """

    def register(
        function: Callable[[], Iterable[Mapping[str, Any]]],
    ) -> Callable[[], Iterable[Mapping[str, Any]]]:
        registry.fragments[fragment_name] = FragmentProvider(
            fragment_name=fragment_name, template_name=template, contexts=function
        )
        return function

    return register


def autodiscover() -> None:
    """Imports ``cachewarm`` from every installed app, which registers its loaders."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("cachewarm")
