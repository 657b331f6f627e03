"""Django conventions: DRF authentication, system checks, mapping assertions to existing users, and
one login per session."""

import pytest
from django.contrib.auth import get_user_model
from django.core import checks
from django.test import Client

from apisix_identity.django.checks import check_middleware, check_settings

from .conf_helpers import assertion_for

pytestmark = pytest.mark.django_db

ALICE = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
SESSION = "django.contrib.sessions.middleware.SessionMiddleware"
OURS = "apisix_identity.django.middleware.AssertionMiddleware"


def get(client, token=None, path="/me", **extra):
    headers = {"HTTP_X_IDENTITY_ASSERTION": token} if token else {}
    return client.get(path, **headers, **extra)


def test_the_same_user_keeps_the_session_and_csrf_token(manifest):
    client = Client()
    get(client, assertion_for(manifest))
    session, csrf = client.session.session_key, client.cookies["csrftoken"].value
    for _ in range(3):
        resp = get(client, assertion_for(manifest))
        assert resp.status_code == 200
        assert client.session.session_key == session, "no new login for the session's own user"
        assert client.cookies["csrftoken"].value == csrf


def test_the_same_user_found_by_another_field_keeps_the_session(manifest, settings):
    """Found by email: "same user" is the backend's lookup, not the username."""
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "USERNAME_CLAIM": "email",
                                "ALLOW_USERNAME_CLAIM": True, "LOOKUP_FIELD": "email"}
    get_user_model().objects.create_user(username="alice.liddell", email="alice@acme.example.com")
    client = Client()
    assert get(client, assertion_for(manifest)).json()["username"] == "alice.liddell"
    session, csrf = client.session.session_key, client.cookies["csrftoken"].value
    for _ in range(3):
        assert get(client, assertion_for(manifest)).json()["username"] == "alice.liddell"
    assert client.session.session_key == session and client.cookies["csrftoken"].value == csrf
    assert get_user_model().objects.count() == 1, "the existing user, not a new one"


def test_unknown_users_are_refused_when_not_created(manifest, settings):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "CREATE_USERS": False}
    client = Client()
    resp = get(client, assertion_for(manifest))
    assert resp.status_code == 403
    assert resp.json() == {"error": "identity_assertion", "reason": "unknown_user"}
    assert get_user_model().objects.count() == 0
    get_user_model().objects.create_user(username=ALICE)
    assert get(client, assertion_for(manifest)).json()["username"] == ALICE


def test_a_lookup_value_two_users_share_logs_in_no_one(manifest, settings):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "USERNAME_CLAIM": "email",
                                "ALLOW_USERNAME_CLAIM": True, "LOOKUP_FIELD": "email"}
    for name in ("a", "b"):
        get_user_model().objects.create_user(username=name, email="alice@acme.example.com")
    client = Client()
    assert get(client, assertion_for(manifest)).status_code == 403
    assert "_auth_user_id" not in client.session


def test_the_password_login_of_the_admin_still_works(manifest):
    get_user_model().objects.create_user(username="admin", password="s3cret-for-tests")
    client = Client()
    assert client.login(username="admin", password="s3cret-for-tests")
    # A password cannot be used as an assertion, and an assertion without a password is fine.
    assert get(client, assertion_for(manifest)).json()["username"] == ALICE


def test_drf_authenticates_an_api_post_without_csrf(manifest):
    """An API client (a bearer token in Authorization, the assertion from the gateway) POSTs with
    no CSRF token: the assertion class lets it through; DRF's session authentication refuses the
    same POST for CSRF."""
    client = Client(enforce_csrf_checks=True)
    api = {"HTTP_X_IDENTITY_ASSERTION": assertion_for(manifest), "HTTP_AUTHORIZATION": "Bearer access-token"}
    resp = client.post("/api", **api)
    assert resp.status_code == 200, resp.content
    assert resp.json() == {"username": ALICE, "sub": ALICE}
    assert client.post("/api-session", **api).status_code == 403


@pytest.mark.parametrize("middleware", [True, False])
def test_drf_checks_csrf_on_a_browsers_request(manifest, settings, middleware):
    """A page of another site makes the browser POST to the app through the gateway, which adds
    the assertion on the strength of the browser's session cookie. No Authorization header: the
    CSRF check applies, as it does under session authentication."""
    if not middleware:
        settings.MIDDLEWARE = [SESSION, AUTH]
    client = Client(enforce_csrf_checks=True)
    token = assertion_for(manifest)
    forged = client.post("/api", HTTP_X_IDENTITY_ASSERTION=token)
    assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
    assert client.get("/api", HTTP_X_IDENTITY_ASSERTION=token).status_code == 200, "safe methods are not checked"
    csrf = client.get("/me", HTTP_X_IDENTITY_ASSERTION=token).json()["csrf"] if middleware else None
    if middleware:
        # The app's own page, with the token it handed out: accepted.
        ok = client.post("/api", HTTP_X_IDENTITY_ASSERTION=token, HTTP_X_CSRFTOKEN=csrf)
        assert ok.status_code == 200, ok.content


def test_drf_without_the_middleware(manifest, settings):
    settings.MIDDLEWARE = [SESSION, AUTH]
    client = Client(enforce_csrf_checks=True)
    resp = client.post("/api", HTTP_X_IDENTITY_ASSERTION=assertion_for(manifest), HTTP_AUTHORIZATION="Bearer x")
    assert resp.status_code == 200 and resp.json()["username"] == ALICE
    assert "_auth_user_id" not in client.session, "DRF authentication keeps no session"
    missing = client.get("/api")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Identity-Assertion")
    forged = client.get("/api", HTTP_X_IDENTITY_ASSERTION=assertion_for(manifest, key_file="unpublished.pem"))
    assert forged.status_code == 401 and "signature" in forged.json()["detail"]


def _ids(messages):
    return [m.id for m in messages]


def test_a_misspelled_key_is_named(settings):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "TOKEN_ISSUR": "x", "REQUIRD": False}
    errors = check_settings()
    assert _ids(errors) == ["apisix_identity.E002", "apisix_identity.E002"]
    assert "'REQUIRD'" in errors[0].msg and errors[0].hint == "did you mean 'REQUIRED'?"
    assert "'TOKEN_ISSUR'" in errors[1].msg and errors[1].hint == "did you mean 'TOKEN_ISSUER'?"
    assert all(e.level == checks.ERROR for e in errors)


def test_settings_the_verifier_refuses_are_checks(settings):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "TOKEN_ISSUER": None}
    errors = check_settings()
    assert _ids(errors) == ["apisix_identity.E003"] and "TOKEN_ISSUER" in errors[0].msg
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "TOKEN_ISSUER": "x", "LOOKUP_FIELD": "mail"}
    assert _ids(check_settings()) == ["apisix_identity.E004"]
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "LOOKUP_FIELD": "email"}
    assert check_settings() == []


def test_the_middleware_before_authentication_is_reported(settings, manifest):
    settings.MIDDLEWARE = [SESSION, OURS, AUTH]
    errors = check_middleware()
    assert _ids(errors) == ["apisix_identity.E006"]
    assert "placed before django.contrib.auth.middleware.AuthenticationMiddleware" in errors[0].msg
    # And at run time, where checks were skipped: the same words, not an AttributeError.
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="runs before django.contrib.auth.middleware"):
        get(Client(), assertion_for(manifest))
    settings.MIDDLEWARE = [OURS]
    assert _ids(check_middleware()) == ["apisix_identity.E005", "apisix_identity.E005"]
    settings.MIDDLEWARE = [SESSION, AUTH, OURS]
    assert check_middleware() == []


def test_the_checks_run_with_manage_py_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "AUDIANCE": "x"}
    with pytest.raises(SystemCheckError, match="AUDIANCE"):
        call_command("check")
