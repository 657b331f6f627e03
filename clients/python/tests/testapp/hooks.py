from .models import Reconciled

#: Set by a test to make the hook fail after it wrote, for a change id.
fail_after_write = set()


def reconcile(change):
    Reconciled.objects.create(change_id=change.id, user=change.user, added=list(change.added),
                              removed=list(change.removed))
    if change.added and change.added[0] in fail_after_write:
        raise RuntimeError("the hook failed after writing")
