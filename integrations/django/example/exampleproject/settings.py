"""Settings of the example project.

The cache and database come from the environment so the tests can run the same project against
each backend: ``EXAMPLE_CACHES`` and ``EXAMPLE_DATABASES`` are JSON for ``CACHES`` and
``DATABASES``; ``EXAMPLE_CACHE_VERSION`` sets the default alias's ``VERSION``.
"""

import json
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("EXAMPLE_SECRET_KEY", "example-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "exampleproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "cachewarm_django",
    "shop",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.contrib.auth.context_processors.auth"]},
    }
]

DATABASES = json.loads(
    os.environ.get(
        "EXAMPLE_DATABASES",
        json.dumps(
            {
                "default": {
                    "ENGINE": "django.db.backends.sqlite3",
                    "NAME": str(BASE_DIR / "db.sqlite3"),
                }
            }
        ),
    )
)
CACHES = json.loads(
    os.environ.get(
        "EXAMPLE_CACHES",
        json.dumps(
            {
                "default": {
                    "BACKEND": "django.core.cache.backends.redis.RedisCache",
                    "LOCATION": "redis://127.0.0.1:6379",
                }
            }
        ),
    )
)
if os.environ.get("EXAMPLE_CACHE_VERSION"):
    CACHES["default"]["VERSION"] = int(os.environ["EXAMPLE_CACHE_VERSION"])

# Sessions in the database, read through the cache.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# cachewarm: the access log (for the nightly ranking) and the warmer's run directories.
CACHEWARM_ACCESS_LOG = os.environ.get("EXAMPLE_ACCESS_LOG") or None
CACHEWARM_RUNS_DIR = os.environ.get("EXAMPLE_RUNS_DIR") or None
# The warmer is off in development and test; this project turns it on where asked.
CACHEWARM_ENABLED = True if os.environ.get("EXAMPLE_WARMING") == "on" else None
