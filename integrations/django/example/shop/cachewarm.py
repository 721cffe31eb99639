"""The example's loaders: how the warmer recomputes each kind of value the views cache.

Sessions (``cached_db``) are warmed by cachewarm_django's built-in loader; the other four kinds
are here: query results, permission mappings, computed values, and template fragments.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model

from cachewarm_django import Skip, fragment, loader

from . import services


# Query results: user profiles, application settings, reference data.
@loader(r"^profile:(?P<user_id>\d+)$", category="profiles", timeout=services.TIMEOUT)
def profile(user_id: str) -> dict[str, Any]:
    found = services.compute_profile(int(user_id))
    if found is None:
        raise Skip("the user has no profile")
    return found


@loader(r"^settings:all$", category="settings", timeout=services.TIMEOUT)
def all_settings() -> dict[str, str]:
    return services.compute_settings()


@loader(r"^settings:site_name$", category="settings", timeout=services.TIMEOUT)
def site_name() -> str:
    return services.compute_site_name()


@loader(r"^ref:countries$", category="reference", timeout=services.TIMEOUT)
def countries() -> list[tuple[str, str]]:
    return services.compute_countries()


# Permission mappings.
@loader(r"^perm:user:(?P<user_id>\d+)$", category="permissions", timeout=services.TIMEOUT)
def perms(user_id: str) -> frozenset[str]:
    try:
        return services.compute_perms(int(user_id))
    except get_user_model().DoesNotExist:
        raise Skip("the user is gone") from None


# Computed values: dashboard aggregates and daily reports.
@loader(r"^dashboard:stats$", category="dashboard", timeout=services.TIMEOUT)
def dashboard() -> dict[str, Any]:
    return services.compute_dashboard()


@loader(r"^stats:user_count$", category="dashboard", timeout=services.TIMEOUT)
def user_count() -> int:
    return services.compute_user_count()


@loader(r"^report:daily:(?P<day>\d{4}-\d{2}-\d{2})$", category="reports", timeout=services.TIMEOUT)
def report(day: str) -> dict[str, Any]:
    # The tests break some days on purpose (a loader that raises leaves the rest warm).
    if day in os.environ.get("EXAMPLE_BROKEN_REPORTS", "").split(","):
        raise RuntimeError(f"the report for {day} is broken on purpose")
    return services.compute_report(datetime.date.fromisoformat(day))


# Template fragments: the contexts shop/base.html renders its {% cache %} blocks with.
def _page_contexts() -> Iterator[dict[str, Any]]:
    for user in get_user_model().objects.filter(is_active=True).iterator():
        yield {"user": user, "menu": services.Menu(user)}


fragment("nav", template="shop/base.html")(_page_contexts)
fragment("profile_card", template="shop/base.html")(_page_contexts)
