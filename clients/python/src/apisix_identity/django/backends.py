"""An authentication backend that creates and updates users from verified assertions."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from ..verifier import Identity
from .conf import setting, username_claim

log = logging.getLogger("apisix_identity")


def username_for(identity: Identity) -> str:
    """The Django username of the assertion's user: its USERNAME_CLAIM (checked by
    conf.username_claim). An email names the user only when Keycloak verified it: anyone can type
    another person's address into their own profile."""
    claim = username_claim()
    if claim == "sub":
        return identity.subject
    value = identity.claims.get(claim)
    if not isinstance(value, str) or not value:
        raise ValueError(f"the assertion has no {claim} to use as the username")
    if claim == "email" and identity.email_verified is not True:
        raise ValueError("the assertion's email is not verified (email_verified): it cannot name the user")
    return value


def lookup_field() -> str:
    """The user model field that USERNAME_CLAIM's value is looked up in: LOOKUP_FIELD, or the
    model's USERNAME_FIELD."""
    return setting("LOOKUP_FIELD") or get_user_model().USERNAME_FIELD


def lookup_for(identity: Identity) -> tuple[str, str]:
    """(field, value): the user an assertion names is the one whose field holds value. The
    middleware decides "the session's user is the assertion's" by the same pair, so a user
    looked up by another field than the username keeps its session too."""
    return lookup_field(), username_for(identity)


class AssertionBackend(ModelBackend):
    """Authenticates ``authenticate(request, assertion=identity)`` only, with an identity the
    middleware verified: it never reads a header itself. Subclass and override
    :meth:`configure_user` to copy more (organizations into your own models, for example).

    The user is the one whose LOOKUP_FIELD (default: the username) equals the assertion's
    USERNAME_CLAIM (default: sub). Without one it is created (its username and lookup field set
    to that value, no usable password), unless CREATE_USERS is False: then no one is logged in.
    Two users with the value (a lookup field that is not unique) log in no one either.
    """

    def authenticate(self, request, assertion: Identity | None = None, **kwargs):
        if not isinstance(assertion, Identity):
            return None
        try:
            field, value = lookup_for(assertion)
        except ValueError:
            return None
        model = get_user_model()
        manager = model._default_manager
        try:
            if setting("CREATE_USERS"):
                user, created = manager.get_or_create(
                    **{field: value}, defaults={model.USERNAME_FIELD: value})
            else:
                user, created = manager.get(**{field: value}), False
        except model.DoesNotExist:
            return None
        except model.MultipleObjectsReturned:
            log.warning("identity assertion: more than one user has this %s; none is logged in", field)
            return None
        if created:
            user.set_unusable_password()
        changed = self.configure_user(request, user, assertion, created=created)
        if created or changed:
            user.save()
        return user if self.user_can_authenticate(user) else None

    def configure_user(self, request, user, identity: Identity, created: bool = False) -> bool:
        """Copies the assertion's profile onto user; returns whether anything changed. The
        default sets email when Keycloak verified it (an unverified one may be anyone's, and
        apps look users up by email: it stays on ``request.identity`` only), and first/last name
        from name (or a "name" field if the model has one)."""
        wanted = {}
        if identity.email and identity.email_verified is True and hasattr(user, "email"):
            wanted["email"] = identity.email
        if identity.name:
            if _has_field(user, "name"):
                wanted["name"] = identity.name
            elif _has_field(user, "first_name") and _has_field(user, "last_name"):
                first, _, last = identity.name.partition(" ")
                wanted["first_name"], wanted["last_name"] = first[:150], last[:150]
        # The field the user is found by is the assertion's to set, never a copy's to overwrite.
        wanted.pop(lookup_field(), None)
        changed = False
        for field, value in wanted.items():
            if getattr(user, field) != value:
                setattr(user, field, value)
                changed = True
        return changed


def _has_field(user, name: str) -> bool:
    try:
        user._meta.get_field(name)
    except Exception:  # noqa: BLE001 - FieldDoesNotExist
        return False
    return True
