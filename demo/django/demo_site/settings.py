"""The Django demo app behind APISIX: users and organization memberships in its own database,
kept current by the identity assertion on each request and by the runner's change feed between
requests (manage.py apisix_identity_feed)."""

import os
import pathlib

BASE = pathlib.Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-a-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "demo_site.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("DEMO_DB", str(BASE / "demo.sqlite3"))}}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "apisix_identity.django",
    "members",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Instead of a middleware that base64-decodes X-Userinfo and trusts it.
    "apisix_identity.django.middleware.AssertionMiddleware",
]
AUTHENTICATION_BACKENDS = ["members.identity.Backend"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APISIX_IDENTITY = {
    # The runner's key set, served by APISIX (conf/apisix.yaml's JWKS route).
    "JWKS_URL": os.environ.get("JWKS_URL", "http://apisix:9080/.well-known/identity-assertion/jwks.json"),
    "ISSUER": os.environ.get("ASSERTION_ISSUER", "apisix-identity-runner"),
    "AUDIENCE": os.environ.get("ASSERTION_AUDIENCE", "demo-app"),
    # The realm of the users (the userinfo route's "issuer", signed as token_iss): a user of another
    # realm with the same id is refused rather than logged in as ours.
    "TOKEN_ISSUER": os.environ.get("ASSERTION_TOKEN_ISSUER", "http://localhost:8080/realms/demo"),
    "EXEMPT_PATHS": ["/healthz"],
    "FEED_REDIS_URL": os.environ.get("REDIS_URL", "redis://redis:6379/0"),
    "FEED_PREFIX": os.environ.get("FEED_PREFIX", "apisix-identity:"),
    "FEED_RECONCILE": "members.identity.reconcile",
    "FEED_ON_GAP": "members.identity.resync_all",
}
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"apisix_identity": {"handlers": ["console"], "level": "INFO"}},
}
