from django.conf import settings
from django.db import models


class Membership(models.Model):
    """The app's own record of a user's organization membership (what MITx Online keeps per
    user, with its keep_until_seen workaround, when memberships only arrive at login)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    alias = models.CharField(max_length=255)
    #: Keycloak's organization id; "" until an assertion names it (the feed carries aliases only).
    organization_id = models.CharField(max_length=64, blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "alias"], name="one_membership_per_alias")]
        ordering = ["alias"]

    def __str__(self):
        return f"{self.user} in {self.alias}"
