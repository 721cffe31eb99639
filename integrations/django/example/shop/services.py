"""What the views cache, in one place: each value's key, how it is computed, and its timeout.

The views read through :func:`cached`, and the loaders in ``cachewarm.py`` call the same
``compute_*`` functions, so a warmed value is the value a cold request would have cached.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Sum

from .models import Country, Order, Profile, Setting

TIMEOUT = 600
_MISSING = object()

#: How often each fragment's body was rendered in this process (the tests' witness that a
#: warmed fragment is served from the cache).
FRAGMENT_RENDERS: Counter[str] = Counter()


def cached(key: str, compute: Callable[[], Any], timeout: int = TIMEOUT) -> Any:
    value = cache.get(key, _MISSING)
    if value is _MISSING:
        value = compute()
        cache.set(key, value, timeout)
    return value


# Query results: user profiles, application settings, reference data.
def profile_key(user_id: int) -> str:
    return f"profile:{user_id}"


def compute_profile(user_id: int) -> dict[str, Any] | None:
    row = Profile.objects.select_related("country", "user").filter(user_id=user_id).first()
    if row is None:
        return None
    return {
        "id": user_id,
        "username": row.user.username,
        "display_name": row.display_name,
        "country": row.country.code,
        "bio": row.bio,
        "joined": row.user.date_joined,
    }


SETTINGS_KEY = "settings:all"
SITE_NAME_KEY = "settings:site_name"


def compute_settings() -> dict[str, str]:
    return dict(Setting.objects.order_by("name").values_list("name", "value"))


def compute_site_name() -> str:
    return Setting.objects.get(name="site_name").value


COUNTRIES_KEY = "ref:countries"


def compute_countries() -> list[tuple[str, str]]:
    return list(Country.objects.order_by("code").values_list("code", "name"))


# Permission mappings.
def perms_key(user_id: int) -> str:
    return f"perm:user:{user_id}"


def compute_perms(user_id: int) -> frozenset[str]:
    user = get_user_model().objects.get(pk=user_id)
    return frozenset(user.get_all_permissions())


# Computed values: dashboard aggregates and reports.
DASHBOARD_KEY = "dashboard:stats"
USER_COUNT_KEY = "stats:user_count"


def compute_dashboard() -> dict[str, Any]:
    totals = Order.objects.aggregate(orders=Count("id"), revenue=Sum("amount"))
    by_country = (
        Order.objects.values("user__profile__country__code")
        .annotate(revenue=Sum("amount"))
        .order_by("user__profile__country__code")
    )
    return {
        "orders": totals["orders"],
        "revenue": totals["revenue"] or Decimal("0"),
        "by_country": {row["user__profile__country__code"]: row["revenue"] for row in by_country},
    }


def compute_user_count() -> int:
    return get_user_model().objects.count()


def report_key(day: datetime.date) -> str:
    return f"report:daily:{day.isoformat()}"


def compute_report(day: datetime.date) -> dict[str, Any]:
    rows = Order.objects.filter(day=day)
    totals = rows.aggregate(orders=Count("id"), revenue=Sum("amount"))
    return {"day": day, "orders": totals["orders"], "revenue": totals["revenue"] or Decimal("0")}


class Menu:
    """What the page's fragments show; reading it counts as rendering the fragment's body."""

    def __init__(self, user: Any) -> None:
        self.user = user

    @property
    def items(self) -> list[dict[str, str]]:
        FRAGMENT_RENDERS["nav"] += 1
        name = compute_site_name()
        links = [{"title": name, "url": "/"}, {"title": "Dashboard", "url": "/dashboard/"}]
        if self.user.is_authenticated:
            links.append({"title": self.user.username, "url": f"/profile/{self.user.pk}/"})
        return links

    @property
    def card(self) -> dict[str, Any] | None:
        FRAGMENT_RENDERS["profile_card"] += 1
        return compute_profile(self.user.pk) if self.user.is_authenticated else None
