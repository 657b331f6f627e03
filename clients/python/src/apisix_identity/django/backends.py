"""An authentication backend that creates and updates users from verified assertions."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from ..verifier import Identity
from .conf import username_claim


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


class AssertionBackend(ModelBackend):
    """Authenticates ``authenticate(request, assertion=identity)`` only, with an identity the
    middleware verified: it never reads a header itself. Subclass and override
    :meth:`configure_user` to copy more (organizations into your own models, for example)."""

    def authenticate(self, request, assertion: Identity | None = None, **kwargs):
        if not isinstance(assertion, Identity):
            return None
        try:
            username = username_for(assertion)
        except ValueError:
            return None
        model = get_user_model()
        user, created = model._default_manager.get_or_create(**{model.USERNAME_FIELD: username})
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
