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
        # Persistent, as a long-running consumer's should be: only a broken one is replaced
        # (close_old_connections before each poll), which is what the restart test needs to see.
        "CONN_MAX_AGE": None,
    }
}
APISIX_IDENTITY = {
    **APISIX_IDENTITY,  # noqa: F405
    "FEED_REDIS_URL": os.environ.get("FEED_TEST_REDIS_URL"),
    "FEED_PREFIX": os.environ.get("FEED_TEST_PREFIX", "apisix-identity:"),
    "FEED_RECONCILE": "tests.testapp.hooks.record",
}
