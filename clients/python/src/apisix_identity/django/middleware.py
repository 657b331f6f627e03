"""The middleware that replaces an X-Userinfo-trusting one: it logs the user in from the
gateway's signed assertion, and from nothing else."""

from __future__ import annotations

import logging

from django.contrib import auth
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.http import JsonResponse

from ..verifier import Reason, VerificationError
from .backends import lookup_for
from .conf import setting, verifier

log = logging.getLogger("apisix_identity")

BACKEND = "apisix_identity.django.backends.AssertionBackend"
MIDDLEWARE_ORDER = (
    "apisix_identity.django.middleware.AssertionMiddleware runs before "
    "django.contrib.auth.middleware.AuthenticationMiddleware (request.user is not set): put it after "
    "SessionMiddleware and AuthenticationMiddleware in MIDDLEWARE")


class AssertionMiddleware:
    """Put it after SessionMiddleware and AuthenticationMiddleware.

    Each request: the assertion is verified; the user it names is created or updated (through
    the backends, normally :class:`~apisix_identity.django.backends.AssertionBackend`) and logged
    in (a session, as django.contrib.auth.login makes; with LOGIN False only request.user is set);
    ``request.identity`` holds the :class:`~apisix_identity.Identity` and
    ``request.organizations`` the organizations as alias -> {"id", "attributes"}.

    Without a valid assertion: with REQUIRED (the default) the answer is 401 (503 when the
    gateway's key set cannot be had; 403 when the user is inactive); without REQUIRED the request
    goes on anonymous. Either way a session this middleware logged in earlier is logged out, so a
    session cookie never outlives the gateway's word.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.identity = None
        request.organizations = {}
        if not hasattr(request, "user"):
            raise ImproperlyConfigured(MIDDLEWARE_ORDER)
        path = request.path_info
        if any(path.startswith(p) for p in setting("EXEMPT_PATHS")):
            return self.get_response(request)
        try:
            identity = verifier().verify_environ(request.META)
        except VerificationError as e:
            return self._refused(request, e)
        try:
            # Before any user is looked up: an assertion that names no one (an unverified email
            # as the username) is refused as such, not as an inactive user.
            field, value = lookup_for(identity)
        except ValueError as e:
            return self._refused(request, VerificationError(Reason.CLAIMS, str(e)))
        current = request.user if request.user.is_authenticated else None
        # The same user as the session's, found the way the backend finds users: the session and
        # its CSRF token stay (a login would replace both on every request).
        same = current is not None and getattr(current, field, None) == value
        user = auth.authenticate(request, assertion=identity)
        if user is None:
            self._logout_ours(request, force=True)
            reason = "user_inactive" if self._exists(field, value) else "unknown_user"
            return JsonResponse({"error": "identity_assertion", "reason": reason}, status=403)
        if same and user.pk != current.pk:
            same = False
        if same or not setting("LOGIN"):
            # LOGIN False: every request carries the assertion, so nothing is kept in a session
            # (no session row per API call).
            request.user = user
        else:
            # Another user than the session's (or none): a new session, as at a login.
            auth.login(request, user, backend=getattr(user, "backend", BACKEND))
        request.identity = identity
        request.organizations = identity.organization_map()
        return self.get_response(request)

    @staticmethod
    def _exists(field: str, value: str) -> bool:
        return get_user_model()._default_manager.filter(**{field: value}).exists()

    def _refused(self, request, error: VerificationError):
        self._logout_ours(request)
        if error.reason is not Reason.MISSING:
            log.info("identity assertion refused: %s (path %s)", error, request.path_info)
        if setting("REQUIRED") or error.reason is Reason.KEYS_UNAVAILABLE:
            status = 503 if error.reason is Reason.KEYS_UNAVAILABLE else 401
            return JsonResponse({"error": "identity_assertion", "reason": error.reason.value}, status=status)
        return self.get_response(request)

    @staticmethod
    def _logout_ours(request, force: bool = False):
        if not request.user.is_authenticated:
            return
        if force or request.session.get(auth.BACKEND_SESSION_KEY) == BACKEND:
            auth.logout(request)
