"""Follow the runner's organization membership change feed.

orgsync appends one entry per change it sees to a Redis stream (``XADD ... MAXLEN ~ 10000``)
named ``<prefix>feed:orgsync:changes`` (prefix ``apisix-identity:`` unless the runner's cache
says otherwise), with the fields ``user`` (Keycloak user id), ``added`` and ``removed`` (JSON
lists of organization aliases), ``source``, ``at`` (RFC 3339) and ``sig``. :class:`FeedConsumer`
reads it in order and calls your ``reconcile(change)`` hook for each entry that verifies, keeping
its position so that a restart neither loses nor repeats a change.

Whoever can write Redis can append to the stream, so every entry is verified before the hook sees
it (:func:`verify_entry`): ``sig`` is a compact JWS (``typ`` ``orgsync-change+jws``) by a key of the
gateway's assertion key set (the :class:`~apisix_identity.verifier.Verifier` the app already
holds), over exactly the entry's other fields and the stream's key, and the entry's ``at`` lies
within a minute of its stream id's time (Redis ids only grow, so an old genuine entry added again
later is refused). Entries that fail are skipped: counted (``FeedConsumer.skipped``), passed to
``on_skip``, logged at most once a minute, and the position moves past them. When the key set
cannot be fetched the poll fails and the entry is read again later.

The position:

- ``apisix_identity.django.position.DatabasePosition`` keeps it in the app's database and moves it
  with a conditional update (``last_id`` must still be the one this consumer read) in the same
  transaction as the hook's writes: exactly once, with any number of consumer processes. Of two
  consumers at the same change one wins; the other's transaction writes nothing, and it reloads
  the position and carries on from there. A consumer killed mid-batch leaves its open transaction
  to the database, which rolls it back: hook writes and position alike.
- :class:`RedisPosition` keeps the position in Redis under its own key, moved by compare-and-set
  after each hook returns: at least once. A crash between the hook and the save replays that one
  change, and two processes may both apply one change before one of them loses the compare-and-set,
  so make the hook idempotent (adding a membership that exists, removing one that does not: no-ops)
  or use the database position.

Why not Redis consumer groups: a group spreads entries over its consumers, so two changes of one
user can be applied out of order (an "added" after the "removed" that followed it), and its
acknowledgement (``XACK``) is a Redis write that cannot commit with the app's database: a consumer
killed between its commit and its ack has the entry claimed and applied again. The position in
the app's transaction is what makes "applied" and "recorded" one event.

The stream is capped: a consumer stopped for long enough to fall more than ~10000 changes
behind finds the oldest ones trimmed. It then calls ``on_gap(last_id, first_id)`` (default: log an
error) so the app can reconcile every user, and carries on from the oldest change still there.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

from .verifier import _ALGORITHMS, Reason, VerificationError, Verifier, _b64decode, _loads_object

log = logging.getLogger("apisix_identity.feed")

DEFAULT_PREFIX = "apisix-identity:"
STREAM = "feed:orgsync:changes"
#: The ``typ`` of an entry's signature: an assertion is not a feed entry, nor the reverse.
FEED_TYPE = "orgsync-change+jws"
#: How far (seconds) an entry's signed ``at`` may lie from its stream id's time.
MAX_SKEW = 60.0
MAX_SIG_BYTES = 64 << 10
#: At most one log line about skipped entries per this many seconds.
SKIP_LOG_INTERVAL = 60.0


class FeedEntryError(Exception):
    """A refused feed entry. ``reason``: unsigned, malformed, algorithm, wrong_type, unknown_key,
    signature, wrong_stream, altered or replayed. The message never holds the entry."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"feed entry {reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Change:
    """One membership change of one user."""

    #: The stream entry id ("<unix ms>-<seq>"), increasing.
    id: str
    #: Keycloak's user id (the assertion's sub).
    user: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    #: Where orgsync saw the change ("keycloak").
    source: str
    at: datetime | None


class Position(Protocol):
    def load(self) -> str | None:
        """The id of the last change handled, None before the first."""

    def commit(self, previous: str | None, change_id: str, apply: Callable[[], None]) -> bool:
        """Runs apply and records change_id as handled, provided the recorded position is still
        previous (None: nothing recorded yet). Returns False, having recorded nothing, when another
        consumer moved the position first; atomically with apply when the store can."""


#: KEYS[1] the position key; ARGV[1] the position the consumer read ("" for none), ARGV[2] the new one.
_COMPARE_AND_SET = """
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisPosition:
    """The position in a Redis string key (``<prefix>feed-consumer:<name>``), moved by
    compare-and-set after the hook: at least once (see the module's notes)."""

    def __init__(self, redis, key: str):
        self.redis = redis
        self.key = key
        self._cas = redis.register_script(_COMPARE_AND_SET)

    def load(self) -> str | None:
        v = self.redis.get(self.key)
        if v is None:
            return None
        return v.decode() if isinstance(v, bytes) else v

    def commit(self, previous: str | None, change_id: str, apply: Callable[[], None]) -> bool:
        apply()
        return bool(self._cas(keys=[self.key], args=[previous or "", change_id]))


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(v: Any) -> str:
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def parse_change(entry_id: str, fields: dict) -> Change:
    """Reads one stream entry; ValueError when it is not a change orgsync writes."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    user = f.get("user", "")
    if not user:
        raise ValueError("no user")

    def aliases(name: str) -> tuple[str, ...]:
        raw = f.get(name, "[]")
        try:
            value = json.loads(raw)
        except ValueError:
            raise ValueError(f"{name} is not JSON") from None
        if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
            raise ValueError(f"{name} must be a JSON list of aliases")
        return tuple(value)

    at = None
    if f.get("at"):
        try:
            at = datetime.fromisoformat(_trim_fraction(f["at"]))
        except ValueError:
            raise ValueError("at is not an RFC 3339 time") from None
    return Change(id=_text(entry_id), user=user, added=aliases("added"), removed=aliases("removed"),
                  source=f.get("source", ""), at=at)


def verify_entry(verifier: Verifier, stream: str, entry_id: str, fields: dict) -> Change:
    """Checks one entry of the stream ``stream`` (its full key) with the verifier's key set and
    returns its change. Raises :class:`FeedEntryError`, or VerificationError (KEYS_UNAVAILABLE)
    when the key set cannot be fetched."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    entry_id = _text(entry_id)
    sig = f.pop("sig", "")
    if not sig:
        raise FeedEntryError("unsigned", "no sig field")
    if len(sig) > MAX_SIG_BYTES:
        raise FeedEntryError("malformed", f"signature of {len(sig)} bytes")
    parts = sig.split(".")
    if len(parts) != 3:
        raise FeedEntryError("malformed", f"not a compact JWS ({len(parts)} parts)")
    try:
        header = _loads_object(_b64decode(parts[0], "header"))
        _b64decode(parts[1], "payload")
        _b64decode(parts[2], "signature")
    except VerificationError as e:
        raise FeedEntryError("malformed", str(e)) from None
    if header is None:
        raise FeedEntryError("malformed", "header is not a JSON object")
    for name in ("crit", "b64"):
        if name in header:
            raise FeedEntryError("malformed", f"header parameter {name!r} is not accepted")
    if header.get("typ") != FEED_TYPE:
        raise FeedEntryError("wrong_type", f"typ {header.get('typ')!r}, want {FEED_TYPE!r}")
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in _ALGORITHMS:
        raise FeedEntryError("algorithm", f"algorithm {alg!r} is not accepted (ES256 or EdDSA only)")
    if not isinstance(kid, str) or not kid:
        raise FeedEntryError("unknown_key", "no kid in the header")
    try:
        key_alg, key = verifier._keys.lookup(kid)
    except VerificationError as e:
        if e.reason == Reason.KEYS_UNAVAILABLE:
            raise
        raise FeedEntryError("unknown_key", str(e)) from None
    if key_alg != alg:
        raise FeedEntryError("algorithm", f"key {kid!r} is an {key_alg} key, the header says {alg}")
    try:
        decoded = jwt.PyJWS().decode_complete(sig, key=key, algorithms=[alg])
    except InvalidSignatureError:
        raise FeedEntryError("signature", f"signature does not verify with key {kid!r}") from None
    except PyJWTError as e:
        raise FeedEntryError("malformed", str(e)) from None
    signed = _loads_object(decoded["payload"])
    if signed is None or not all(isinstance(v, str) for v in signed.values()):
        raise FeedEntryError("malformed", "payload is not a JSON object of strings")
    if signed.pop("stream", None) != stream:
        raise FeedEntryError("wrong_stream", "signed for another stream")
    # Exactly the signed fields: none changed, none added beside them, none left out.
    if signed != f:
        raise FeedEntryError("altered", "the entry's fields are not the signed ones")
    try:
        change = parse_change(entry_id, signed)
        ms, _ = _id_tuple(entry_id)
    except ValueError as e:
        raise FeedEntryError("malformed", str(e)) from None
    if change.at is None:
        raise FeedEntryError("malformed", "no at")
    if abs(ms / 1000 - change.at.timestamp()) > MAX_SKEW:
        raise FeedEntryError("replayed", "its signed time is far from the time it was appended")
    return change


def _trim_fraction(ts: str) -> str:
    # Go writes up to 9 fractional digits and "Z"; datetime.fromisoformat takes 6 (and, before
    # Python 3.11, no "Z").
    ts = ts.replace("Z", "+00:00")
    m = re.fullmatch(r"([^.]*)\.(\d+)(.*)", ts)
    if not m:
        return ts
    return f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"


def _log_gap(last_id: str, first_id: str) -> None:
    log.error("membership change feed: changes after %s were trimmed before they were read (oldest "
              "still there: %s); reconcile every user's memberships", last_id, first_id)


class FeedConsumer:
    """Reads the change feed and calls ``reconcile(change)`` for each entry, in order.

    ``redis`` is a redis-py client; ``verifier`` the app's assertion
    :class:`~apisix_identity.verifier.Verifier`, whose key set verifies each entry (required: an
    unverified feed is whatever a Redis writer wants it to be). ``start`` says where a consumer with no saved position
    begins: "0" (default) replays every change the stream still holds (reconcile hooks are
    idempotent, and replaying in order ends in the current state); "$" takes only changes made
    from now on. A hook that raises stops the batch: the change is not recorded and is read again
    on the next poll.
    """

    def __init__(
        self,
        redis,
        reconcile: Callable[[Change], None],
        *,
        verifier: Verifier | None = None,
        name: str = "default",
        prefix: str = DEFAULT_PREFIX,
        position: Position | None = None,
        start: str = "0",
        batch: int = 100,
        on_gap: Callable[[str, str], None] = _log_gap,
        on_skip: Callable[[str, FeedEntryError], None] | None = None,
    ):
        if start not in ("0", "$"):
            raise ValueError('start must be "0" or "$"')
        if verifier is None:
            raise ValueError("verifier is required: feed entries are verified with the gateway's key set")
        self.verifier = verifier
        self.on_skip = on_skip
        #: Entries refused so far (forged, unsigned, altered, replayed, unreadable).
        self.skipped = 0
        self._skip_logged: float | None = None
        self.redis = redis
        self.reconcile = reconcile
        self.stream = prefix + STREAM
        self.position = position or RedisPosition(redis, f"{prefix}feed-consumer:{name}")
        self.start = start
        self.batch = batch
        self.on_gap = on_gap
        #: Changes another consumer recorded first (each one ends a batch and reloads the position).
        self.lost = 0
        self._last: str | None = None
        # The recorded position this consumer read (None: nothing recorded), the compare-and-set's
        # expected value. Differs from _last only under start="$" before the first change.
        self._saved: str | None = None

    def _resume_point(self) -> str:
        if self._last is not None:
            return self._last
        saved = self._saved = self.position.load()
        if saved is not None:
            self._check_gap(saved)
            self._last = saved
        elif self.start == "$":
            newest = self.redis.xrevrange(self.stream, "+", "-", count=1)
            self._last = _text(newest[0][0]) if newest else "0-0"
        else:
            self._last = "0-0"
        return self._last

    def _check_gap(self, saved: str) -> None:
        try:
            info = self.redis.xinfo_stream(self.stream)
        except Exception as e:  # noqa: BLE001 - no stream yet: nothing was trimmed
            if "no such key" in str(e).lower():
                return
            raise
        first = info.get("first-entry") or info.get(b"first-entry")
        if not first:
            return
        first_id = _text(first[0])
        trimmed = int(info.get("entries-added", info.get(b"entries-added", 0)) or 0) > int(
            info.get("length", info.get(b"length", 0)) or 0)
        if trimmed and _id_tuple(first_id) > _id_tuple(saved):
            self.on_gap(saved, first_id)

    def poll(self, block_ms: int | None = None) -> int:
        """Handles the changes after the saved position (waiting up to block_ms for one when there
        is none; None: do not wait). Returns how many it handled."""
        last = self._resume_point()
        kwargs = {"count": self.batch}
        if block_ms is not None:
            kwargs["block"] = block_ms
        result = self.redis.xread({self.stream: last}, **kwargs)
        handled = 0
        for _stream, entries in result or []:
            for entry_id, fields in entries:
                entry_id = _text(entry_id)
                try:
                    change = verify_entry(self.verifier, self.stream, entry_id, fields)
                except FeedEntryError as e:
                    # Not an entry the runner wrote: record it as read, or it blocks every later one.
                    apply, refused = (lambda: None), e
                else:
                    apply, refused = (lambda c=change: self.reconcile(c)), None
                if not self.position.commit(self._saved, entry_id, apply):
                    # Another consumer got there first: what this one read is behind. Reload the
                    # position and read on from it at the next poll.
                    self.lost += 1
                    self._last = None
                    return handled
                if refused is not None:
                    self._skip(entry_id, refused)
                self._last = self._saved = entry_id
                handled += 1
        return handled

    def _skip(self, entry_id: str, error: FeedEntryError) -> None:
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip(entry_id, error)
        now = time.monotonic()
        if self._skip_logged is None or now - self._skip_logged >= SKIP_LOG_INTERVAL:
            self._skip_logged = now
            log.warning("membership change feed: entry %s skipped (%s): it does not verify with the gateway's "
                        "key set; %d skipped so far, logged at most once a minute", entry_id, error.reason,
                        self.skipped)

    def run(self, stop: threading.Event | None = None, *, block_ms: int = 5000,
            retry_delay: float = 1.0, max_retry_delay: float = 60.0,
            before_poll: Callable[[], None] | None = None, standby_delay: float = 0.5) -> None:
        """Polls until stop is set. A failing hook or Redis outage is logged and retried with
        backoff; the position never moves past a change whose hook failed. before_poll runs
        before each poll (Django's close_old_connections: a connection the database dropped
        is replaced rather than failing every poll after a database restart).

        A poll that lost a change to another consumer of the same name is followed by a pause of
        standby_delay seconds: the feed is applied in order, so one consumer at a time makes
        progress, and the others wait as standbys (taking over within that delay when it stops)
        instead of racing it for every change."""
        stop = stop or threading.Event()
        delay = retry_delay
        while not stop.is_set():
            try:
                if before_poll is not None:
                    before_poll()
                lost = self.lost
                self.poll(block_ms=block_ms)
                if self.lost != lost:
                    stop.wait(standby_delay)
                delay = retry_delay
            except Exception:  # noqa: BLE001 - logged, retried; the position stays put
                log.exception("membership change feed: poll failed; retrying in %.1fs", delay)
                self._last = None  # reload the position: a partial batch may have been recorded
                stop.wait(delay)
                delay = min(delay * 2, max_retry_delay)


def consume(redis, reconcile: Callable[[Change], None], **kwargs) -> int:
    """Handles every change not handled yet and returns how many (no waiting): for a cron job or
    a test. Keyword arguments are those of :class:`FeedConsumer`."""
    consumer = FeedConsumer(redis, reconcile, **kwargs)
    total = 0
    while True:
        n = consumer.poll()
        total += n
        if n == 0:
            return total


__all__ = ["Change", "FeedConsumer", "FeedEntryError", "Position", "RedisPosition", "consume", "parse_change",
           "verify_entry", "STREAM", "DEFAULT_PREFIX", "FEED_TYPE", "MAX_SKEW"]


