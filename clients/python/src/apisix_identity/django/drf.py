"""Django REST framework authentication from the gateway's assertion.

Without it DRF falls back to SessionAuthentication, which enforces CSRF on every unsafe request
of a logged-in session: API clients, which send the assertion (through the gateway) and no CSRF
token, would get 403. Put it first in ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["apisix_identity.django.drf.AssertionAuthentication"],
    }

``request.user`` is the user (found as the middleware finds it, through the authentication
backends) and ``request.auth`` the :class:`~apisix_identity.Identity`. No session is made.
"""

from __future__ import annotations

from django.contrib import auth
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication

from ..verifier import Identity, Reason, VerificationError
from .backends import lookup_for
from .conf import verifier


class KeysUnavailable(exceptions.APIException):
    status_code = 503
    default_detail = "the gateway's key set cannot be fetched"
    default_code = "keys_unavailable"


class AssertionAuthentication(BaseAuthentication):
    """A request without the assertion is not authenticated by this class (the next class, or
    anonymous: the view's permission classes decide); one with an assertion that does not
    verify is refused, 401."""

    #: The WWW-Authenticate value of a 401 (DRF answers 403 to a class that has none).
    www_authenticate = 'Identity-Assertion realm="api"'

    def authenticate(self, request):
        django_request = request._request
        identity = getattr(django_request, "identity", None)
        user = getattr(django_request, "user", None)
        if isinstance(identity, Identity) and user is not None and user.is_authenticated:
            # The middleware verified this request already and found its user.
            return user, identity
        try:
            identity = verifier().verify_environ(django_request.META)
        except VerificationError as e:
            if e.reason is Reason.MISSING:
                return None
            if e.reason is Reason.KEYS_UNAVAILABLE:
                raise KeysUnavailable() from None
            raise exceptions.AuthenticationFailed(f"identity assertion: {e.reason.value}") from None
        try:
            lookup_for(identity)
        except ValueError:
            raise exceptions.AuthenticationFailed(f"identity assertion: {Reason.CLAIMS.value}") from None
        user = auth.authenticate(django_request, assertion=identity)
        if user is None:
            raise exceptions.AuthenticationFailed("identity assertion: the user is inactive or unknown")
        return user, identity

    def authenticate_header(self, request):
        return self.www_authenticate
