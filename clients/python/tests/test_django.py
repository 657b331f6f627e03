"""The Django middleware and backend through Django's test client, and the feed command."""

import io
import time

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from apisix_identity.django.models import FeedPosition

from .conf_helpers import assertion_for
from .conftest import DROP
from .testapp import hooks
from .testapp.models import Reconciled

pytestmark = pytest.mark.django_db

ALICE = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"


def get(client, token=None, path="/me"):
    headers = {"HTTP_X_IDENTITY_ASSERTION": token} if token else {}
    return client.get(path, **headers)


def test_creates_the_user_and_exposes_organizations(manifest):
    client = Client()
    resp = get(client, assertion_for(manifest))
    assert resp.status_code == 200, resp.content
    assert resp.json() == {
        "authenticated": True,
        "username": ALICE,
        "email": "alice@acme.example.com",
        "first_name": "Alice",
        "organizations": {"acme": {"id": "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", "attributes": {"tier": ["gold"]}}},
        "source": "keycloak",
        "csrf": resp.json()["csrf"],
    }
    user = get_user_model().objects.get(username=ALICE)
    assert user.last_name == "Liddell"
    assert not user.has_usable_password()


def test_updates_the_user_when_the_assertion_changes(manifest):
    client = Client()
    assert get(client, assertion_for(manifest)).status_code == 200
    resp = get(client, assertion_for(manifest, email="alice@globex.example.com",
                                     organization={"globex": {"id": "g1"}}, organization_source="cache"))
    assert resp.json()["email"] == "alice@globex.example.com"
    assert resp.json()["organizations"] == {"globex": {"id": "g1", "attributes": {}}}
    assert get_user_model().objects.get(username=ALICE).email == "alice@globex.example.com"
    assert get_user_model().objects.count() == 1


@pytest.mark.parametrize("name,token,reason", [
    ("missing", None, "missing"),
    ("garbage", "not-a-jwt", "malformed"),
    ("expired", "expired", "expired"),
    ("forged with the published kid", "unpublished", "signature"),
    ("another app", "another-app", "audience"),
])
def test_refuses_a_missing_or_bad_assertion(manifest, name, token, reason, caplog):
    caplog.set_level("INFO", logger="apisix_identity")
    now = time.time()
    tokens = {
        "expired": lambda: assertion_for(manifest, now=now - 3600),
        "unpublished": lambda: assertion_for(manifest, key_file="unpublished.pem"),
        "another-app": lambda: assertion_for(manifest, aud="another-app"),
    }
    token = tokens.get(token, lambda: token)()
    resp = get(Client(), token)
    assert resp.status_code == 401, name
    assert resp.json() == {"error": "identity_assertion", "reason": reason}
    assert get_user_model().objects.count() == 0
    if token:
        assert f"assertion {reason}" in caplog.text
        assert token not in caplog.text and "eyJ" not in caplog.text, "the log never holds a token"


def test_the_shared_vectors_through_the_middleware(manifest, monkeypatch):
    """Each vector, at its own time, through the Django test client."""
    from apisix_identity import Verifier
    from apisix_identity.django import middleware

    for vec in manifest["vectors"]:
        at_vector_time = Verifier(jwks=vec.get("jwks", manifest["jwks"]), issuer=manifest["issuer"],
                                  audience=manifest["audience"], leeway=manifest["leeway_seconds"],
                                  token_issuer=vec.get("token_issuer", manifest["token_issuer"]),
                                  clock=lambda: float(vec["now"]))
        monkeypatch.setattr(middleware, "verifier", lambda: at_vector_time)
        resp = get(Client(), vec["token"])
        if vec["expect"]["accept"]:
            assert resp.status_code == 200, (vec["name"], resp.content)
            assert resp.json()["username"] == vec["expect"]["identity"]["sub"]
            assert resp.json()["organizations"] == vec["expect"]["identity"]["organizations"]
        else:
            assert resp.status_code == 401, vec["name"]
            assert resp.json()["reason"] == vec["expect"]["reason"], vec["name"]


def test_a_session_does_not_outlive_the_assertion(manifest):
    client = Client()
    assert get(client, assertion_for(manifest)).json()["authenticated"]
    # The same browser, the session cookie kept, but no assertion: refused, and logged out.
    assert get(client).status_code == 401
    assert "_auth_user_id" not in client.session


def test_another_users_assertion_starts_a_new_session(manifest):
    client = Client()
    get(client, assertion_for(manifest))
    first_session = client.session.session_key
    resp = get(client, assertion_for(manifest, sub="bob-id", email="bob@acme.example.com", name="Bob"))
    assert resp.json()["username"] == "bob-id"
    assert client.session.session_key != first_session


def test_optional_mode_lets_anonymous_requests_through(manifest, settings):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "REQUIRED": False}
    assert get(Client()).json()["authenticated"] is False
    resp = get(Client(), assertion_for(manifest, key_file="unpublished.pem"))
    assert resp.status_code == 200 and resp.json()["authenticated"] is False
    assert get(Client(), assertion_for(manifest)).json()["authenticated"] is True


def test_an_inactive_user_is_refused(manifest):
    get(Client(), assertion_for(manifest))
    get_user_model().objects.filter(username=ALICE).update(is_active=False)
    assert get(Client(), assertion_for(manifest)).status_code == 403


def test_exempt_paths_and_misconfiguration(manifest, settings):
    assert get(Client(), path="/healthz").status_code == 200
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "AUDIENCE": ""}
    from django.core.exceptions import ImproperlyConfigured
    with pytest.raises(ImproperlyConfigured):
        get(Client(), assertion_for(manifest))


def run_feed(settings, redis_url, prefix, *args):
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "FEED_REDIS_URL": redis_url, "FEED_PREFIX": prefix}
    out = io.StringIO()
    call_command("apisix_identity_feed", "--once", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_feed_command_reconciles_each_change_once(feed, redis_url, settings):
    feed(ALICE, added=["acme"])
    feed(ALICE, added=["globex"], removed=["acme"])
    assert "2 change(s)" in run_feed(settings, redis_url, feed.prefix)
    assert [(r.user, r.added, r.removed) for r in Reconciled.objects.order_by("change_id")] == [
        (ALICE, ["acme"], []), (ALICE, ["globex"], ["acme"])]
    # Run again (a restart): nothing is repeated; a new change is handled.
    assert "0 change(s)" in run_feed(settings, redis_url, feed.prefix)
    feed(ALICE, added=["initech"])
    assert "1 change(s)" in run_feed(settings, redis_url, feed.prefix)
    assert Reconciled.objects.count() == 3
    assert FeedPosition.objects.get(name="default").last_id == Reconciled.objects.order_by("-id")[0].change_id


@pytest.mark.django_db(transaction=True)
def test_feed_command_rolls_back_a_failed_hook_with_its_position(feed, redis_url, settings):
    feed(ALICE, added=["acme"])
    feed(ALICE, added=["boom"])
    hooks.fail_after_write.add("boom")
    try:
        with pytest.raises(RuntimeError):
            run_feed(settings, redis_url, feed.prefix)
    finally:
        hooks.fail_after_write.clear()
    # The hook's write for "boom" was rolled back with the position: handled again, once.
    assert list(Reconciled.objects.values_list("added", flat=True)) == [["acme"]]
    assert "1 change(s)" in run_feed(settings, redis_url, feed.prefix)
    assert list(Reconciled.objects.order_by("id").values_list("added", flat=True)) == [["acme"], ["boom"]]


def test_without_login_no_session_is_kept(manifest, settings):
    from django.contrib.sessions.models import Session

    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "LOGIN": False}
    client = Client()
    for _ in range(3):
        resp = get(client, assertion_for(manifest))
        assert resp.json()["username"] == ALICE
    assert Session.objects.count() == 0
    assert get(client).status_code == 401


ANOTHER_REALM = "https://sso.example.org/realms/another"


@pytest.mark.parametrize("name,token_iss", [
    ("a user of another realm with the same id", ANOTHER_REALM),
    ("no token_iss (a route that verified no token)", DROP),
    ("an empty token_iss", ""),
])
def test_a_user_of_another_realm_is_refused(manifest, name, token_iss):
    # Alice's id in the realm this app trusts, signed by the same gateway for the same audience.
    get(Client(), assertion_for(manifest))
    client = Client()
    resp = get(client, assertion_for(manifest, token_iss=token_iss, email="mallory@example.org"))
    assert resp.status_code == 401, name
    assert resp.json() == {"error": "identity_assertion", "reason": "token_issuer"}
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.get(username=ALICE).email == "alice@acme.example.com"


def test_token_issuer_is_a_required_setting(manifest, settings):
    from django.core.exceptions import ImproperlyConfigured

    for value in (None, ""):
        settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "TOKEN_ISSUER": value}
        with pytest.raises(ImproperlyConfigured, match="TOKEN_ISSUER"):
            get(Client(), assertion_for(manifest))
    assert get_user_model().objects.count() == 0


@pytest.mark.parametrize("claim", ["preferred_username", "email"])
def test_a_username_claim_other_than_sub_must_be_allowed(manifest, settings, claim):
    from django.core.exceptions import ImproperlyConfigured

    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "USERNAME_CLAIM": claim}
    with pytest.raises(ImproperlyConfigured, match="ALLOW_USERNAME_CLAIM"):
        get(Client(), assertion_for(manifest))
    assert get_user_model().objects.count() == 0
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "ALLOW_USERNAME_CLAIM": True}
    resp = get(Client(), assertion_for(manifest))
    assert resp.status_code == 200
    assert resp.json()["username"] == {"preferred_username": "alice", "email": "alice@acme.example.com"}[claim]


@pytest.mark.parametrize("name,email_verified", [
    ("email_verified false", False),
    ("no email_verified", DROP),
    ("email_verified as a string", "true"),
])
def test_an_unverified_email_never_names_an_account(manifest, settings, name, email_verified):
    """Mallory, another Keycloak user, sets Alice's address as her own unverified email."""
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "USERNAME_CLAIM": "email", "ALLOW_USERNAME_CLAIM": True}
    assert get(Client(), assertion_for(manifest)).json()["username"] == "alice@acme.example.com"
    client = Client()
    resp = get(client, assertion_for(manifest, sub="mallory-id", name="Mallory", email_verified=email_verified))
    assert resp.status_code == 401, name
    assert resp.json()["reason"] == "claims"
    assert "_auth_user_id" not in client.session
    assert get_user_model().objects.get(username="alice@acme.example.com").first_name == "Alice"


def test_an_unverified_email_is_not_copied_onto_the_user(manifest):
    assert get(Client(), assertion_for(manifest)).status_code == 200
    resp = get(Client(), assertion_for(manifest, email="someone-else@example.org", email_verified=False))
    assert resp.status_code == 200
    assert get_user_model().objects.get(username=ALICE).email == "alice@acme.example.com"
    get(Client(), assertion_for(manifest, sub="new-id", email="someone-else@example.org", email_verified=DROP))
    assert get_user_model().objects.get(username="new-id").email == ""


def test_a_consumer_behind_another_applies_nothing(feed):
    """The database position: the stale consumer's conditional update matches no row, so its hook
    never runs and its transaction writes nothing."""
    from apisix_identity.django.position import DatabasePosition
    from apisix_identity.feed import FeedConsumer

    for i in range(3):
        feed("alice", added=[f"org{i}"])
    stale = FeedConsumer(feed.redis, hooks.reconcile, prefix=feed.prefix, verifier=feed.verifier,
                         position=DatabasePosition("pods"), batch=1)
    assert stale.poll() == 1
    fresh = FeedConsumer(feed.redis, hooks.reconcile, prefix=feed.prefix, verifier=feed.verifier,
                         position=DatabasePosition("pods"))
    assert fresh.poll() == 2
    assert stale.poll() == 0 and stale.lost == 1
    assert Reconciled.objects.count() == 3, "each change applied once"
    assert FeedPosition.objects.get(name="pods").last_id == Reconciled.objects.order_by("-id")[0].change_id
