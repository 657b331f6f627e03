"""Follow the runner's organization membership change feed.

orgsync appends one entry per change it sees to a Redis stream (``XADD ... MAXLEN ~ 10000``)
named ``<prefix>feed:orgsync:changes`` (prefix ``apisix-identity:`` unless the runner's cache
says otherwise), with the fields ``user`` (Keycloak user id), ``added`` and ``removed`` (JSON
lists of organization aliases), ``source`` and ``at`` (RFC 3339). :class:`FeedConsumer` reads it
in order and calls your ``reconcile(change)`` hook for each entry, keeping its position so that a
restart neither loses nor repeats a change:

- :class:`RedisPosition` keeps the position in Redis under its own key, saved after each hook
  returns. A crash between the hook and the save replays that one change, so make the hook
  idempotent (adding a membership that exists, removing one that does not: no-ops).
- ``apisix_identity.django.position.DatabasePosition`` saves the position in the app's database
  in the same transaction as the hook's writes: exactly once.

The stream is capped: a consumer stopped for long enough to fall more than ~10000 changes
behind finds the oldest ones trimmed. It then calls ``on_gap(last_id, first_id)`` (default: log an
error) so the app can reconcile every user, and carries on from the oldest change still there.
"""

from __future__ import annotations

import json
import logging
import re
import threading

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

log = logging.getLogger("apisix_identity.feed")

DEFAULT_PREFIX = "apisix-identity:"
STREAM = "feed:orgsync:changes"


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

    def commit(self, change_id: str, apply: Callable[[], None]) -> None:
        """Runs apply, then records change_id as handled (atomically with it when it can)."""


class RedisPosition:
    """The position in a Redis string key (``<prefix>feed-consumer:<name>``)."""

    def __init__(self, redis, key: str):
        self.redis = redis
        self.key = key

    def load(self) -> str | None:
        v = self.redis.get(self.key)
        if v is None:
            return None
        return v.decode() if isinstance(v, bytes) else v

    def commit(self, change_id: str, apply: Callable[[], None]) -> None:
        apply()
        self.redis.set(self.key, change_id)


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

    ``redis`` is a redis-py client. ``start`` says where a consumer with no saved position
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
        name: str = "default",
        prefix: str = DEFAULT_PREFIX,
        position: Position | None = None,
        start: str = "0",
        batch: int = 100,
        on_gap: Callable[[str, str], None] = _log_gap,
    ):
        if start not in ("0", "$"):
            raise ValueError('start must be "0" or "$"')
        self.redis = redis
        self.reconcile = reconcile
        self.stream = prefix + STREAM
        self.position = position or RedisPosition(redis, f"{prefix}feed-consumer:{name}")
        self.start = start
        self.batch = batch
        self.on_gap = on_gap
        self._last: str | None = None

    def _resume_point(self) -> str:
        if self._last is not None:
            return self._last
        saved = self.position.load()
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
                    change = parse_change(entry_id, fields)
                except ValueError as e:
                    # Not a change orgsync writes: record it as read, or it blocks every later one.
                    log.error("membership change feed: entry %s skipped: %s", entry_id, e)
                    self.position.commit(entry_id, lambda: None)
                else:
                    self.position.commit(entry_id, lambda c=change: self.reconcile(c))
                self._last = entry_id
                handled += 1
        return handled

    def run(self, stop: threading.Event | None = None, *, block_ms: int = 5000,
            retry_delay: float = 1.0, max_retry_delay: float = 60.0) -> None:
        """Polls until stop is set. A failing hook or Redis outage is logged and retried with
        backoff; the position never moves past a change whose hook failed."""
        stop = stop or threading.Event()
        delay = retry_delay
        while not stop.is_set():
            try:
                self.poll(block_ms=block_ms)
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


__all__ = ["Change", "FeedConsumer", "Position", "RedisPosition", "consume", "parse_change", "STREAM",
           "DEFAULT_PREFIX"]


