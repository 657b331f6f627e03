"""Django settings for the package's own tests."""

import json
import pathlib

_MANIFEST = json.loads((pathlib.Path(__file__).resolve().parents[3] / "testdata" / "assertions"
                        / "manifest.json").read_text(encoding="utf-8"))

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
ROOT_URLCONF = "tests.testapp.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "apisix_identity.django",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "apisix_identity.django.middleware.AssertionMiddleware",
]
# ModelBackend stays, as the README says: the admin's password login goes on working.
AUTHENTICATION_BACKENDS = [
    "apisix_identity.django.backends.AssertionBackend",
    "django.contrib.auth.backends.ModelBackend",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
APISIX_IDENTITY = {
    "JWKS": _MANIFEST["jwks"],
    "ISSUER": _MANIFEST["issuer"],
    "AUDIENCE": _MANIFEST["audience"],
    "TOKEN_ISSUER": _MANIFEST["token_issuer"],
    "EXEMPT_PATHS": ["/healthz"],
    "FEED_RECONCILE": "tests.testapp.hooks.reconcile",
}
