"""A WSGI middleware for apps without Django: verifies the assertion and puts the identity in
``environ["apisix_identity.identity"]``."""

from __future__ import annotations

import json
import logging
from typing import Callable, Iterable

from .verifier import Identity, Reason, VerificationError, Verifier

log = logging.getLogger("apisix_identity")

ENVIRON_KEY = "apisix_identity.identity"


def identity(environ) -> Identity | None:
    """The identity the middleware verified, or None."""
    return environ.get(ENVIRON_KEY)


class AssertionMiddleware:
    """Wraps a WSGI app.

    With ``required`` (the default) a request without a valid assertion is answered 401 (503 when
    the gateway's key set cannot be fetched) and never reaches the app. Without it, such a request
    reaches the app with no identity, and a refused (not missing) assertion is logged.
    """

    def __init__(self, app: Callable, verifier: Verifier, *, required: bool = True):
        self.app = app
        self.verifier = verifier
        self.required = required

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        environ.pop(ENVIRON_KEY, None)
        try:
            environ[ENVIRON_KEY] = self.verifier.verify_environ(environ)
        except VerificationError as e:
            if e.reason is not Reason.MISSING:
                log.info("identity assertion refused: %s (path %s)", e, environ.get("PATH_INFO", ""))
            if self.required or e.reason is Reason.KEYS_UNAVAILABLE:
                return refusal(start_response, e.reason)
        return self.app(environ, start_response)


def refusal(start_response: Callable, reason: Reason) -> list[bytes]:
    status = "503 Service Unavailable" if reason is Reason.KEYS_UNAVAILABLE else "401 Unauthorized"
    body = json.dumps({"error": "identity_assertion", "reason": reason.value}).encode()
    start_response(status, [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ])
    return [body]


__all__ = ["AssertionMiddleware", "ENVIRON_KEY", "identity"]


