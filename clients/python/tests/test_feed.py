"""The change feed consumer against the real Redis, with entries the runner's own code writes."""

import datetime
import json

import jwt
import pytest

from apisix_identity.feed import FEED_TYPE, MAX_SKEW, FeedConsumer, consume

from .conftest import KEYS, signer_kid


class Recorder:
    def __init__(self, fail_on=None):
        self.changes = []
        self.fail_on = fail_on

    def __call__(self, change):
        if self.fail_on and self.fail_on(change):
            raise RuntimeError("the app's database is down")
        self.changes.append(change)


def test_changes_reach_the_hook_in_order_with_their_fields(feed):
    feed("alice", added=["acme", "globex"])
    feed("alice", removed=["acme"])
    feed("bob", added=["société-générale"])
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier) == 3
    assert [(c.user, c.added, c.removed, c.source) for c in rec.changes] == [
        ("alice", ("acme", "globex"), (), "keycloak"),
        ("alice", (), ("acme",), "keycloak"),
        ("bob", ("société-générale",), (), "keycloak"),
    ]
    now = datetime.datetime.now(datetime.timezone.utc)
    for c in rec.changes:
        assert abs((now - c.at).total_seconds()) < 120
    ids = [c.id for c in rec.changes]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))


def test_a_restart_neither_loses_nor_repeats(feed):
    for i in range(5):
        feed("alice", added=[f"org{i}"])
    first = Recorder()
    assert FeedConsumer(feed.redis, first, prefix=feed.prefix, verifier=feed.verifier, batch=2).poll() == 2
    # The process stops; a new one with the same name carries on where it left off.
    second = Recorder()
    assert consume(feed.redis, second, prefix=feed.prefix, verifier=feed.verifier) == 3
    feed("alice", added=["org5"])
    third = Recorder()
    assert consume(feed.redis, third, prefix=feed.prefix, verifier=feed.verifier) == 1
    seen = [c.added[0] for c in first.changes + second.changes + third.changes]
    assert seen == [f"org{i}" for i in range(6)]
    # Another consumer name keeps its own position.
    other = Recorder()
    assert consume(feed.redis, other, prefix=feed.prefix, verifier=feed.verifier, name="another-app") == 6


def test_a_failing_hook_is_retried_not_skipped(feed):
    for i in range(3):
        feed("alice", added=[f"org{i}"])
    failing = Recorder(fail_on=lambda c: c.added == ("org1",))
    with pytest.raises(RuntimeError):
        FeedConsumer(feed.redis, failing, prefix=feed.prefix, verifier=feed.verifier).poll()
    assert [c.added for c in failing.changes] == [("org0",)]
    healed = Recorder()
    assert consume(feed.redis, healed, prefix=feed.prefix, verifier=feed.verifier) == 2
    assert [c.added for c in healed.changes] == [("org1",), ("org2",)]


def test_start_from_now_skips_the_history(feed):
    feed("alice", added=["old"])
    rec = Recorder()
    consumer = FeedConsumer(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier, start="$")
    assert consumer.poll() == 0
    feed("alice", added=["new"])
    assert consumer.poll() == 1
    assert [c.added for c in rec.changes] == [("new",)]
    # The position was saved as "from now", so a restart does not replay "old" either.
    assert consume(feed.redis, Recorder(), prefix=feed.prefix, verifier=feed.verifier) == 0


def test_blocking_poll_waits_for_a_change(feed):
    rec = Recorder()
    consumer = FeedConsumer(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier)
    assert consumer.poll(block_ms=50) == 0
    feed("alice", added=["acme"])
    assert consumer.poll(block_ms=1000) == 1


def test_a_trimmed_feed_is_reported_as_a_gap(feed):
    feed("alice", added=["first"])
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier) == 1
    # While the consumer is stopped the runner writes far more than the cap.
    feed("bob", added=["org"], n=400, maxlen=10)
    length = feed.redis.xlen(feed.prefix + "feed:orgsync:changes")
    assert length < 401, "Redis trimmed nothing; the test cannot show a gap"
    gaps = []
    rest = Recorder()
    handled = consume(feed.redis, rest, prefix=feed.prefix, verifier=feed.verifier, on_gap=lambda last, first: gaps.append((last, first)))
    assert gaps and gaps[0][0] == rec.changes[0].id
    assert handled == length
    assert rest.changes[-1].added == ("org-400",)


def _entry(user, added, at=None):
    at = at or datetime.datetime.now(datetime.timezone.utc)
    return {"user": user, "added": json.dumps(added), "removed": "[]", "source": "keycloak",
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


def _signed(manifest, fields, stream, *, key_file="es256.pem", typ=FEED_TYPE, kid=None):
    """fields with a sig made as the runner makes it (or, with other arguments, almost)."""
    payload = {**fields, "stream": stream}
    sig = jwt.PyJWS().encode(json.dumps(payload).encode(), (KEYS / key_file).read_bytes(), algorithm="ES256",
                             headers={"kid": kid or signer_kid(manifest, "ES256"), "typ": typ})
    return {**fields, "sig": sig}


def test_a_signature_made_like_the_runners_verifies(feed, manifest):
    # The control for the forgeries below: the same helper, with the right key and stream, passes.
    feed.redis.xadd(feed.stream, _signed(manifest, _entry("alice", ["acme"]), feed.stream))
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier) == 1
    assert [(c.user, c.added) for c in rec.changes] == [("alice", ("acme",))]


def test_forged_entries_are_skipped_counted_and_logged(feed, manifest, caplog):
    """Whoever can write Redis appends entries granting memberships: none reaches the hook."""
    feed("alice", added=["acme"])
    grant = _entry("mallory", ["staff"])
    old = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=2 * MAX_SKEW)
    forged = [
        grant,  # unsigned
        _signed(manifest, grant, feed.stream, key_file="unpublished.pem"),  # another key, under the published kid
        _signed(manifest, grant, "another-fleet:feed:orgsync:changes"),  # genuine, for another stream
        {**_signed(manifest, grant, feed.stream), "added": '["admins"]'},  # altered after signing
        {**_signed(manifest, grant, feed.stream), "note": "x"},  # an unsigned field beside the signed ones
        _signed(manifest, grant, feed.stream, typ="JWT"),  # a signature made for an assertion
        _signed(manifest, _entry("alice", ["acme"], at=old), feed.stream),  # replayed long after its signing
    ]
    for f in forged:
        feed.redis.xadd(feed.stream, f)
    feed("alice", added=["globex"])

    rec, reasons = Recorder(), []
    consumer = FeedConsumer(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier,
                            on_skip=lambda _id, e: reasons.append(e.reason))
    while consumer.poll():
        pass
    assert [(c.user, c.added) for c in rec.changes] == [("alice", ("acme",)), ("alice", ("globex",))]
    assert reasons == ["unsigned", "signature", "wrong_stream", "altered", "altered", "wrong_type", "replayed"]
    assert consumer.skipped == 7
    lines = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(lines) == 1, "logged once, counted every time"
    assert "mallory" not in caplog.text and "staff" not in caplog.text, "the entry's content is not logged"


def test_a_consumer_needs_the_key_set(feed):
    with pytest.raises(ValueError, match="verifier"):
        FeedConsumer(feed.redis, Recorder(), prefix=feed.prefix)


def test_an_entry_orgsync_would_not_write_is_skipped_and_logged(feed, caplog):
    feed("alice", added=["acme"])
    # A stand-in for a corrupt entry: the runner cannot be made to write one.
    feed.redis.xadd(feed.prefix + "feed:orgsync:changes", {"user": "mallory", "added": "not json"})
    feed("alice", added=["globex"])
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix, verifier=feed.verifier) == 3
    assert [c.added for c in rec.changes] == [("acme",), ("globex",)]
    assert "skipped" in caplog.text


def test_a_consumer_behind_another_cannot_move_the_position_back(feed):
    """Two processes of one name (a rolling update): the one that read an older position loses the
    compare-and-set instead of recording it, and reads on from where the other got to."""
    for i in range(5):
        feed("alice", added=[f"org{i}"])
    ahead, behind = Recorder(), Recorder()
    b = FeedConsumer(feed.redis, behind, prefix=feed.prefix, verifier=feed.verifier, batch=1)
    assert b.poll() == 1  # b has read the position: org0 done
    a = FeedConsumer(feed.redis, ahead, prefix=feed.prefix, verifier=feed.verifier, batch=3)
    assert a.poll() == 3  # org1..org3, while b still holds org0 as the position
    assert b.poll() == 0, "b's change was recorded by a first"
    assert b.lost == 1
    position = feed.redis.get(feed.prefix + "feed-consumer:default").decode()
    assert position == ahead.changes[-1].id, "the position never moves back"
    assert b.poll() == 1 and behind.changes[-1].added == ("org4",)
