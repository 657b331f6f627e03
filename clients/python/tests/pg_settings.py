"""Settings for the feed command's processes in the PostgreSQL tests (tests/test_feed_processes.py):
the package's test settings, on the PostgreSQL server and Redis prefix the test passes in the
environment."""

import os

from .django_settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": os.environ["FEED_TEST_PG_PORT"],
        "NAME": "postgres",
        "USER": "postgres",
    }
}
APISIX_IDENTITY = {
    **APISIX_IDENTITY,  # noqa: F405
    "FEED_REDIS_URL": os.environ.get("FEED_TEST_REDIS_URL"),
    "FEED_PREFIX": os.environ.get("FEED_TEST_PREFIX", "apisix-identity:"),
    "FEED_RECONCILE": "tests.testapp.hooks.record",
}
