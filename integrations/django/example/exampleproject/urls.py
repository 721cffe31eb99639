"""URLs of the example project."""

from django.urls import path

from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("profile/<int:user_id>/", views.profile, name="profile"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("reports/<str:day>/", views.report, name="report"),
]
