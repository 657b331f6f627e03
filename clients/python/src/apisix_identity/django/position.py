"""The feed position in the app's database, committed with the reconcile hook's writes."""

from __future__ import annotations

from typing import Callable

from django.db import IntegrityError, transaction
from django.utils import timezone


class DatabasePosition:
    """A :class:`apisix_identity.feed.Position` stored in the FeedPosition model.

    The position moves by a conditional update (its ``last_id`` must still be the one the consumer
    read) in the same transaction as the hook, and before it: on PostgreSQL or MySQL the update
    holds the row until the commit, so a second consumer at the same change waits, then finds the
    position moved and applies nothing; on SQLite writers are serialized by the database lock. A
    crash leaves hook and position both undone or both done, so no change is lost or applied twice
    (for the writes the hook makes in the same database), with any number of consumers.
    """

    def __init__(self, name: str, using: str | None = None):
        self.name = name
        self.using = using

    def load(self) -> str | None:
        from .models import FeedPosition

        return FeedPosition.objects.using(self.using).filter(name=self.name).values_list(
            "last_id", flat=True).first()

    def commit(self, previous: str | None, change_id: str, apply: Callable[[], None]) -> bool:
        from .models import FeedPosition

        rows = FeedPosition.objects.using(self.using)
        try:
            with transaction.atomic(using=self.using):
                if previous is None:
                    # The first change: the row's primary key is the lock. A concurrent first insert
                    # waits for ours and then fails, or ours fails.
                    rows.create(name=self.name, last_id=change_id)
                elif rows.filter(name=self.name, last_id=previous).update(
                        last_id=change_id, updated=timezone.now()) != 1:
                    return False
                apply()
        except IntegrityError:
            if previous is None and rows.filter(name=self.name).exists():
                return False
            raise
        return True
