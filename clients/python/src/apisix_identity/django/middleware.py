"""The middleware that replaces an X-Userinfo-trusting one: it logs the user in from the
gateway's signed assertion, and from nothing else."""

from __future__ import annotations

import logging

from django.contrib import auth
from django.http import JsonResponse

from ..verifier import Reason, VerificationError
from .backends import username_for
from .conf import setting, verifier

log = logging.getLogger("apisix_identity")

BACKEND = "apisix_identity.django.backends.AssertionBackend"


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
        path = request.path_info
        if any(path.startswith(p) for p in setting("EXEMPT_PATHS")):
            return self.get_response(request)
        try:
            identity = verifier().verify_environ(request.META)
        except VerificationError as e:
            return self._refused(request, e)
        user = request.user if request.user.is_authenticated else None
        try:
            # Before any user is looked up: an assertion that names no one (an unverified email
            # as the username) is refused as such, not as an inactive user.
            username = username_for(identity)
        except ValueError as e:
            return self._refused(request, VerificationError(Reason.CLAIMS, str(e)))
        same = user is not None and user.get_username() == username
        user = auth.authenticate(request, assertion=identity)
        if user is None:
            self._logout_ours(request, force=True)
            return JsonResponse({"error": "identity_assertion", "reason": "user_inactive"}, status=403)
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
