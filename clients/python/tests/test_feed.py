"""The change feed consumer against the real Redis, with entries the runner's own code writes."""

import datetime

import pytest

from apisix_identity.feed import FeedConsumer, consume


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
    assert consume(feed.redis, rec, prefix=feed.prefix) == 3
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
    assert FeedConsumer(feed.redis, first, prefix=feed.prefix, batch=2).poll() == 2
    # The process stops; a new one with the same name carries on where it left off.
    second = Recorder()
    assert consume(feed.redis, second, prefix=feed.prefix) == 3
    feed("alice", added=["org5"])
    third = Recorder()
    assert consume(feed.redis, third, prefix=feed.prefix) == 1
    seen = [c.added[0] for c in first.changes + second.changes + third.changes]
    assert seen == [f"org{i}" for i in range(6)]
    # Another consumer name keeps its own position.
    other = Recorder()
    assert consume(feed.redis, other, prefix=feed.prefix, name="another-app") == 6


def test_a_failing_hook_is_retried_not_skipped(feed):
    for i in range(3):
        feed("alice", added=[f"org{i}"])
    failing = Recorder(fail_on=lambda c: c.added == ("org1",))
    with pytest.raises(RuntimeError):
        FeedConsumer(feed.redis, failing, prefix=feed.prefix).poll()
    assert [c.added for c in failing.changes] == [("org0",)]
    healed = Recorder()
    assert consume(feed.redis, healed, prefix=feed.prefix) == 2
    assert [c.added for c in healed.changes] == [("org1",), ("org2",)]


def test_start_from_now_skips_the_history(feed):
    feed("alice", added=["old"])
    rec = Recorder()
    consumer = FeedConsumer(feed.redis, rec, prefix=feed.prefix, start="$")
    assert consumer.poll() == 0
    feed("alice", added=["new"])
    assert consumer.poll() == 1
    assert [c.added for c in rec.changes] == [("new",)]
    # The position was saved as "from now", so a restart does not replay "old" either.
    assert consume(feed.redis, Recorder(), prefix=feed.prefix) == 0


def test_blocking_poll_waits_for_a_change(feed):
    rec = Recorder()
    consumer = FeedConsumer(feed.redis, rec, prefix=feed.prefix)
    assert consumer.poll(block_ms=50) == 0
    feed("alice", added=["acme"])
    assert consumer.poll(block_ms=1000) == 1


def test_a_trimmed_feed_is_reported_as_a_gap(feed):
    feed("alice", added=["first"])
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix) == 1
    # While the consumer is stopped the runner writes far more than the cap.
    feed("bob", added=["org"], n=400, maxlen=10)
    length = feed.redis.xlen(feed.prefix + "feed:orgsync:changes")
    assert length < 401, "Redis trimmed nothing; the test cannot show a gap"
    gaps = []
    rest = Recorder()
    handled = consume(feed.redis, rest, prefix=feed.prefix, on_gap=lambda last, first: gaps.append((last, first)))
    assert gaps and gaps[0][0] == rec.changes[0].id
    assert handled == length
    assert rest.changes[-1].added == ("org-400",)


def test_an_entry_orgsync_would_not_write_is_skipped_and_logged(feed, caplog):
    feed("alice", added=["acme"])
    # A stand-in for a corrupt entry: the runner cannot be made to write one.
    feed.redis.xadd(feed.prefix + "feed:orgsync:changes", {"user": "mallory", "added": "not json"})
    feed("alice", added=["globex"])
    rec = Recorder()
    assert consume(feed.redis, rec, prefix=feed.prefix) == 3
    assert [c.added for c in rec.changes] == [("acme",), ("globex",)]
    assert "skipped" in caplog.text
