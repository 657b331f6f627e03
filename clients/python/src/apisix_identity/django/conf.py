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
    "HEADER": DEFAULT_HEADER,
    "LEEWAY": 5,
    "REQUIRED": True,
    "LOGIN": True,
    "EXEMPT_PATHS": [],
    "USERNAME_CLAIM": "sub",
    "FEED_REDIS_URL": None,
    "FEED_PREFIX": "apisix-identity:",
    "FEED_NAME": "default",
    "FEED_RECONCILE": None,
    "FEED_ON_GAP": None,
}


def setting(name: str) -> Any:
    return {**DEFAULTS, **getattr(settings, "APISIX_IDENTITY", {})}[name]


@functools.lru_cache(maxsize=1)
def verifier() -> Verifier:
    try:
        return Verifier(
            jwks_url=setting("JWKS_URL"),
            jwks=setting("JWKS"),
            issuer=setting("ISSUER"),
            audience=setting("AUDIENCE"),
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
