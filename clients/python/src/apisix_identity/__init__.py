"""Verify apisix-identity-runner's identity assertion and follow its membership change feed.

- :class:`Verifier` checks the ``X-Identity-Assertion`` header (ES256 or EdDSA JWS) against the
  gateway's key set and returns an :class:`Identity`.
- :mod:`apisix_identity.wsgi` wraps any WSGI app; :mod:`apisix_identity.django` holds a Django
  middleware, authentication backend and the ``apisix_identity_feed`` management command.
- :mod:`apisix_identity.feed` reads the runner's Redis change feed and calls your reconcile hook.
"""

from .verifier import (
    DEFAULT_HEADER,
    Identity,
    Organization,
    Reason,
    VerificationError,
    Verifier,
)

__all__ = [
    "DEFAULT_HEADER",
    "Identity",
    "Organization",
    "Reason",
    "VerificationError",
    "Verifier",
]
