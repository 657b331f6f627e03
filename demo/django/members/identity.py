"""Where the gateway's word reaches the app's models: at each request (the assertion) and
between requests (the change feed)."""

import logging

from django.contrib.auth import get_user_model

from apisix_identity.django.backends import AssertionBackend

from .models import Membership

log = logging.getLogger("members")


class Backend(AssertionBackend):
    """Creates and updates the user, and makes the user's memberships those of the assertion."""

    def configure_user(self, request, user, identity, created=False):
        changed = super().configure_user(request, user, identity, created=created)
        current = identity.organization_map()
        Membership.objects.filter(user=user).exclude(alias__in=current).delete()
        for alias, org in current.items():
            Membership.objects.update_or_create(
                user=user, alias=alias,
                defaults={"organization_id": org["id"], "attributes": org["attributes"]})
        return changed


def reconcile(change):
    """The feed hook: apply one membership change of a user who may not be online. Idempotent:
    adding a membership that exists or removing one that is gone changes nothing."""
    user = get_user_model().objects.filter(username=change.user).first()
    if user is None:
        return  # never logged in here: the first assertion will bring the memberships
    for alias in change.added:
        Membership.objects.get_or_create(user=user, alias=alias)
    Membership.objects.filter(user=user, alias__in=change.removed).delete()
    log.info("memberships of %s: +%s -%s", user.get_username(), list(change.added), list(change.removed))


def resync_all(last_id, first_id):
    """The feed lost changes (it is capped): the demo has no admin API client, so it drops the
    memberships it cannot vouch for; each user's next request restores them from the assertion."""
    log.error("change feed gap after %s (oldest kept: %s): memberships cleared until next request",
              last_id, first_id)
    Membership.objects.all().delete()
