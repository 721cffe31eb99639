"""The example's pages."""

from __future__ import annotations

import datetime

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from . import services


def _page(request: HttpRequest, template: str, context: dict[str, object]) -> HttpResponse:
    context = {"user": request.user, "menu": services.Menu(request.user), **context}
    return render(request, template, context)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    settings = services.cached(services.SETTINGS_KEY, services.compute_settings)
    countries = services.cached(services.COUNTRIES_KEY, services.compute_countries)
    return _page(request, "shop/home.html", {"settings": settings, "countries": countries})


@login_required
def profile(request: HttpRequest, user_id: int) -> HttpResponse:
    found = services.cached(
        services.profile_key(user_id), lambda: services.compute_profile(user_id)
    )
    if found is None:
        raise Http404("no such profile")
    return _page(request, "shop/profile.html", {"profile": found})


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    perms = services.cached(
        services.perms_key(request.user.pk), lambda: services.compute_perms(request.user.pk)
    )
    if "shop.view_order" not in perms:
        return HttpResponse("forbidden", status=403)
    stats = services.cached(services.DASHBOARD_KEY, services.compute_dashboard)
    users = services.cached(services.USER_COUNT_KEY, services.compute_user_count)
    return _page(request, "shop/dashboard.html", {"stats": stats, "users": users})


@login_required
def report(request: HttpRequest, day: str) -> HttpResponse:
    date = datetime.date.fromisoformat(day)
    data = services.cached(services.report_key(date), lambda: services.compute_report(date))
    return _page(request, "shop/report.html", {"report": data})
