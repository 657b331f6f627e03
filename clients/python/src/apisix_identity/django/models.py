from django.db import models


class FeedPosition(models.Model):
    """The last change feed entry a consumer handled, saved in the same transaction as the
    reconcile hook's writes."""

    name = models.CharField(max_length=200, primary_key=True)
    last_id = models.CharField(max_length=64)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "change feed position"

    def __str__(self):
        return f"{self.name}: {self.last_id}"
