import os
import time

from .models import Applied, Reconciled

#: Set by a test to make the hook fail after it wrote, for a change id.
fail_after_write = set()


def reconcile(change):
    Reconciled.objects.create(change_id=change.id, user=change.user, added=list(change.added),
                              removed=list(change.removed))
    if change.added and change.added[0] in fail_after_write:
        raise RuntimeError("the hook failed after writing")


def record(change):
    """The multi-process feed test's hook. The first process to reach the change adding "slow"
    writes its pid to $FEED_TEST_SLOW_MARKER and stalls inside its transaction, so the test can
    SIGKILL it there."""
    Applied.objects.create(change_id=change.id, pid=os.getpid())
    marker = os.environ.get("FEED_TEST_SLOW_MARKER")
    if marker and change.added == ("slow",):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        time.sleep(120)
