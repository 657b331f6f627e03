"""Django REST framework authentication from the gateway's assertion.

Without it DRF falls back to SessionAuthentication, which enforces CSRF on every unsafe request
of a logged-in session: API clients, which send the assertion (through the gateway) and no CSRF
token, would get 403. Put it first in ``REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"]``::

    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["apisix_identity.django.drf.AssertionAuthentication"],
    }

``request.user`` is the user (found as the middleware finds it, through the authentication
backends) and ``request.auth`` the :class:`~apisix_identity.Identity`. No session is made.

CSRF: the gateway adds the assertion to a browser's requests on the strength of its session
cookie, which the browser sends with a request another site makes it send. So a request without
an ``Authorization`` header gets Django's CSRF check, as under SessionAuthentication; a request
with one (an API client's bearer token, which no cross-site form or simple request can set) does
not. A gateway that drops ``Authorization`` before the app makes API clients fail the check:
closed, not open.
"""

from __future__ import annotations

from django.contrib import auth
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, CSRFCheck

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
            self.enforce_csrf(request)
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
        self.enforce_csrf(request)
        return user, identity

    def enforce_csrf(self, request):
        """Django's CSRF check for a request a browser may have been made to send (no
        Authorization header), as DRF's SessionAuthentication does it."""
        if request._request.META.get("HTTP_AUTHORIZATION"):
            return
        check = CSRFCheck(lambda _request: None)
        check.process_request(request._request)
        reason = check.process_view(request._request, None, (), {})
        if reason:
            raise exceptions.PermissionDenied(f"CSRF Failed: {reason}")

    def authenticate_header(self, request):
        return self.www_authenticate
