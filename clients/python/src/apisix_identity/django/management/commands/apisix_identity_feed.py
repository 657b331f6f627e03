"""manage.py apisix_identity_feed: follow the runner's membership change feed and call the app's
reconcile hook (APISIX_IDENTITY["FEED_RECONCILE"]) for each change."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils.module_loading import import_string

from apisix_identity.feed import FeedConsumer, RedisPosition
from apisix_identity.django.conf import setting, verifier
from apisix_identity.django.position import DatabasePosition


class Command(BaseCommand):
    help = "Follow apisix-identity-runner's organization membership change feed."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="handle the changes waiting now, then exit (for cron or tests)")
        parser.add_argument("--name", default=None, help="the consumer's name (its own position)")
        parser.add_argument("--start", choices=["0", "$"], default="0",
                            help='without a saved position: "0" replays the retained history, "$" starts now')
        parser.add_argument("--position", choices=["database", "redis"], default="database",
                            help="where the position is kept (database: in the hook's transaction)")
        parser.add_argument("--block-ms", type=int, default=5000)
        parser.add_argument("--max-retry-delay", type=float, default=60.0,
                            help="the longest wait (seconds) between retries while Redis or the database is down")

    def handle(self, *args, **options):
        import redis

        url = setting("FEED_REDIS_URL")
        hook_path = setting("FEED_RECONCILE")
        if not url or not hook_path:
            raise CommandError("APISIX_IDENTITY needs FEED_REDIS_URL and FEED_RECONCILE")
        try:
            reconcile = import_string(hook_path)
        except ImportError as e:
            raise CommandError(f"FEED_RECONCILE: {e}") from None
        name = options["name"] or setting("FEED_NAME")
        prefix = setting("FEED_PREFIX")
        client = redis.Redis.from_url(url)
        position = (DatabasePosition(name) if options["position"] == "database"
                    else RedisPosition(client, f"{prefix}feed-consumer:{name}"))
        kwargs = {}
        if setting("FEED_ON_GAP"):
            kwargs["on_gap"] = import_string(setting("FEED_ON_GAP"))
        # The assertion's key set verifies the feed too: entries a Redis writer adds are skipped.
        consumer = FeedConsumer(client, reconcile, verifier=verifier(), name=name, prefix=prefix, position=position,
                                start=options["start"], **kwargs)
        try:
            if options["once"]:
                total = 0
                while (n := consumer.poll()) > 0:
                    total += n
                self.stdout.write(f"{total} change(s) handled")
                return
            stop = threading.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: stop.set())
            self.stdout.write(f"following {consumer.stream} as {name!r}")
            # A long-running command never sees Django's request signals, which close connections
            # that broke or aged: it does the same before each poll, so a database restart costs
            # one failed poll, not every poll after it.
            consumer.run(stop, block_ms=options["block_ms"], max_retry_delay=options["max_retry_delay"],
                         before_poll=close_old_connections)
        finally:
            client.close()
