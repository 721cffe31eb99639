"""The example's data: user profiles, application settings, reference data, orders."""

from django.conf import settings
from django.db import models


class Country(models.Model):
    """Reference data."""

    code = models.CharField(max_length=2, unique=True)
    name = models.CharField(max_length=80)


class Profile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    display_name = models.CharField(max_length=80)
    country = models.ForeignKey(Country, on_delete=models.PROTECT)
    bio = models.TextField(blank=True)


class Setting(models.Model):
    """Application settings, edited in the admin."""

    name = models.CharField(max_length=80, unique=True)
    value = models.CharField(max_length=200)


class Order(models.Model):
    """What the dashboard and the reports aggregate."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    day = models.DateField()
    amount = models.DecimalField(max_digits=10, decimal_places=2)
