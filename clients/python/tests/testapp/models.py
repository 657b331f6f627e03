from django.db import models


class Reconciled(models.Model):
    """What the reconcile hook saw, written in the hook's transaction."""

    change_id = models.CharField(max_length=64, unique=True)
    user = models.CharField(max_length=200)
    added = models.JSONField()
    removed = models.JSONField()
