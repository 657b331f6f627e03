"""Django system checks (``manage.py check``, and every runserver/migrate start) for the
APISIX_IDENTITY setting and the middleware's place: a mistake is named at start, not met as a
401 for everyone or an AttributeError on the first request."""

from __future__ import annotations

import difflib

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured

from .conf import DEFAULTS

MIDDLEWARE = "apisix_identity.django.middleware.AssertionMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
AUTHENTICATION = "django.contrib.auth.middleware.AuthenticationMiddleware"


@checks.register(checks.Tags.security)
def check_settings(app_configs=None, **kwargs):
    raw = getattr(settings, "APISIX_IDENTITY", None)
    if not isinstance(raw, dict):
        return [checks.Error("APISIX_IDENTITY must be a dict", hint="see the package README: Django",
                             id="apisix_identity.E001")]
    errors = []
    for key in sorted(k for k in raw if k not in DEFAULTS):
        close = difflib.get_close_matches(str(key), DEFAULTS, n=1)
        errors.append(checks.Error(
            f"APISIX_IDENTITY has an unknown key {key!r}",
            hint=f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(DEFAULTS),
            id="apisix_identity.E002"))
    if errors:
        # A misspelled key leaves its setting at the default: what follows would only echo it.
        return errors
    from .conf import verifier

    try:
        verifier.cache_clear()
        verifier()  # builds the verifier from the settings; a key set URL is not fetched here
    except ImproperlyConfigured as e:
        errors.append(checks.Error(str(e), id="apisix_identity.E003"))
    from django.contrib.auth import get_user_model

    field = raw.get("LOOKUP_FIELD")
    if field is not None:
        try:
            get_user_model()._meta.get_field(field)
        except FieldDoesNotExist:
            errors.append(checks.Error(
                f"APISIX_IDENTITY LOOKUP_FIELD {field!r} is not a field of {get_user_model().__name__}",
                id="apisix_identity.E004"))
    return errors


@checks.register(checks.Tags.security)
def check_middleware(app_configs=None, **kwargs):
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if MIDDLEWARE not in middleware:
        return []
    at = middleware.index(MIDDLEWARE)
    errors = []
    for needed in (SESSION, AUTHENTICATION):
        if needed not in middleware:
            errors.append(checks.Error(
                f"{MIDDLEWARE} needs {needed} in MIDDLEWARE", hint=f"add it before {MIDDLEWARE}",
                id="apisix_identity.E005"))
        elif middleware.index(needed) > at:
            errors.append(checks.Error(
                f"{MIDDLEWARE} is placed before {needed}: it reads request.user, which that one sets",
                hint=f"move {MIDDLEWARE} after {needed}", id="apisix_identity.E006"))
    return errors
