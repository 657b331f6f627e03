from django.db import models


class Reconciled(models.Model):
    """What the reconcile hook saw, written in the hook's transaction."""

    change_id = models.CharField(max_length=64, unique=True)
    user = models.CharField(max_length=200)
    added = models.JSONField()
    removed = models.JSONField()


class Applied(models.Model):
    """One row per time the multi-process test's hook ran and committed: no unique constraint, so a
    change applied twice shows as two rows instead of failing the second time."""

    change_id = models.CharField(max_length=64)
    pid = models.IntegerField()
