"""The feed position in the app's database, committed with the reconcile hook's writes."""

from __future__ import annotations

from typing import Callable

from django.db import transaction


class DatabasePosition:
    """A :class:`apisix_identity.feed.Position` stored in the FeedPosition model. The hook and
    the position commit together: a crash leaves both undone or both done, so no change is lost
    or applied twice (for writes the hook makes in the same database)."""

    def __init__(self, name: str, using: str | None = None):
        self.name = name
        self.using = using

    def load(self) -> str | None:
        from .models import FeedPosition

        return FeedPosition.objects.using(self.using).filter(name=self.name).values_list(
            "last_id", flat=True).first()

    def commit(self, change_id: str, apply: Callable[[], None]) -> None:
        from .models import FeedPosition

        with transaction.atomic(using=self.using):
            apply()
            FeedPosition.objects.using(self.using).update_or_create(
                name=self.name, defaults={"last_id": change_id})
