"""The APISIX_IDENTITY setting, read once and again when a test overrides it."""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..verifier import DEFAULT_HEADER, Verifier

DEFAULTS: dict[str, Any] = {
    "JWKS_URL": None,
    "JWKS": None,
    "ISSUER": None,
    "AUDIENCE": None,
    "TOKEN_ISSUER": None,
    "HEADER": DEFAULT_HEADER,
    "LEEWAY": 5,
    "REQUIRED": True,
    "LOGIN": True,
    "EXEMPT_PATHS": [],
    "USERNAME_CLAIM": "sub",
    "ALLOW_USERNAME_CLAIM": False,
    # The user model field USERNAME_CLAIM's value is looked up in (None: USERNAME_FIELD).
    "LOOKUP_FIELD": None,
    # False: an assertion for a user with no account here is refused (403 unknown_user).
    "CREATE_USERS": True,
    "FEED_REDIS_URL": None,
    "FEED_PREFIX": "apisix-identity:",
    "FEED_NAME": "default",
    "FEED_RECONCILE": None,
    "FEED_ON_GAP": None,
}


def setting(name: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "APISIX_IDENTITY", {})}[name]


def username_claim() -> str:
    """USERNAME_CLAIM, checked. ``sub`` is Keycloak's user id: fixed and unique within the realm.
    Any other claim (``preferred_username``, ``email``) may be changed by the user, depending on
    the realm's settings, and then name another person's account: it needs ALLOW_USERNAME_CLAIM
    True, which says the realm keeps it unique and fixed. ``email`` is used only when the
    assertion says ``email_verified`` (see backends.username_for)."""
    claim = setting("USERNAME_CLAIM")
    if not isinstance(claim, str) or not claim:
        raise ImproperlyConfigured("APISIX_IDENTITY: USERNAME_CLAIM must name a claim")
    if claim != "sub" and setting("ALLOW_USERNAME_CLAIM") is not True:
        raise ImproperlyConfigured(
            f"APISIX_IDENTITY: USERNAME_CLAIM {claim!r}: a claim other than sub can name another person's "
            "account when users can change it; set ALLOW_USERNAME_CLAIM True only if your realm keeps it "
            "unique and fixed")
    return claim


@functools.lru_cache(maxsize=1)
def verifier() -> Verifier:
    username_claim()
    token_issuer = setting("TOKEN_ISSUER")
    if not isinstance(token_issuer, str) or not token_issuer:
        # Users are keyed by one claim (sub by default), unique only within a realm: without the
        # realm checked, a user of another realm with the same id would be logged in as ours.
        raise ImproperlyConfigured(
            "APISIX_IDENTITY: TOKEN_ISSUER is required: the Keycloak realm URL of your users "
            "(the userinfo route's issuer, signed into the assertion as token_iss)")
    try:
        return Verifier(
            jwks_url=setting("JWKS_URL"),
            jwks=setting("JWKS"),
            issuer=setting("ISSUER"),
            audience=setting("AUDIENCE"),
            token_issuer=token_issuer,
            header=setting("HEADER"),
            leeway=setting("LEEWAY"),
        )
    except ValueError as e:
        # Identity fails closed: a bad setting stops every request with this message.
        raise ImproperlyConfigured(f"APISIX_IDENTITY: {e}") from None


@receiver(setting_changed)
def _reset(setting: str, **_: Any) -> None:
    if setting == "APISIX_IDENTITY":
        verifier.cache_clear()
