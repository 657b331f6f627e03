"""The demo's story: a membership change reaches the app's own user model with no new login,
through the runner's change feed.

    cd demo/django && REDIS_TEST_URL=redis://... pytest -s
"""

import io

import pytest
from django.core.management import call_command
from django.test import Client

from members.models import Membership

from .conftest import assertion

ALICE = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"
ACME = {"acme": {"id": "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", "tier": ["gold"]}}


def memberships(username):
    return list(Membership.objects.filter(user__username=username).values_list("alias", flat=True))


def follow_feed():
    out = io.StringIO()
    call_command("apisix_identity_feed", "--once", stdout=out)
    return out.getvalue().strip()


@pytest.mark.django_db(transaction=True)
def test_a_membership_change_reaches_the_app_without_a_new_login(runner_feed):
    alice = Client()
    resp = alice.get("/me", HTTP_X_IDENTITY_ASSERTION=assertion(
        ALICE, ACME, email="alice@acme.example.com", name="Alice Liddell"))
    assert resp.status_code == 200, resp.content
    assert resp.json()["memberships"] == ["acme"]
    print("\n1. Alice's request, assertion with [acme]: the app's database has", memberships(ALICE))

    # An admin adds Alice to globex in Keycloak; orgsync sees it and writes the change to the feed.
    runner_feed(ALICE, added=["globex"])
    print("2. the runner's feed: +globex for Alice; the consumer says:", follow_feed())
    assert memberships(ALICE) == ["acme", "globex"]
    # Another user (or a report, a background job) sees her in globex; she made no request.
    bob = Client()
    resp = bob.get("/organizations/globex/members", HTTP_X_IDENTITY_ASSERTION=assertion(
        "bob-id", {}, email="bob@acme.example.com", name="Bob"))
    assert resp.json() == {"alias": "globex", "members": [ALICE]}
    print("3. Bob lists globex's members:", resp.json()["members"])

    runner_feed(ALICE, removed=["acme"])
    follow_feed()
    assert memberships(ALICE) == ["globex"]
    print("4. the runner's feed: -acme; the app's database has", memberships(ALICE))

    # The consumer restarts: nothing is replayed, nothing is lost.
    assert follow_feed() == "0 change(s) handled"
    runner_feed(ALICE, added=["initech"])
    assert follow_feed() == "1 change(s) handled"
    assert memberships(ALICE) == ["globex", "initech"]
    print("5. after a restart of the consumer, one more change:", memberships(ALICE))


@pytest.mark.django_db(transaction=True)
def test_the_next_request_brings_ids_and_attributes(runner_feed):
    client = Client()
    client.get("/me", HTTP_X_IDENTITY_ASSERTION=assertion(ALICE, ACME, email="a@acme.example.com", name="Alice"))
    runner_feed(ALICE, added=["globex"])
    follow_feed()
    assert Membership.objects.get(user__username=ALICE, alias="globex").organization_id == ""
    client.get("/me", HTTP_X_IDENTITY_ASSERTION=assertion(
        ALICE, {**ACME, "globex": {"id": "a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c"}},
        email="a@acme.example.com", name="Alice"))
    assert Membership.objects.get(user__username=ALICE, alias="globex").organization_id == \
        "a3c9e2b0-1f4d-4e6a-8b7c-2d9e0f1a3b5c"


@pytest.mark.django_db(transaction=True)
def test_a_change_for_a_user_the_app_never_saw_is_ignored(runner_feed):
    runner_feed("never-logged-in", added=["acme"])
    assert follow_feed() == "1 change(s) handled"
    assert Membership.objects.count() == 0


@pytest.mark.django_db
def test_requests_without_an_assertion_are_refused():
    assert Client().get("/me").status_code == 401
    assert Client().get("/healthz").status_code == 200
