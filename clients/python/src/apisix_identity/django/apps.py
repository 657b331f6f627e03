from django.apps import AppConfig


class ApisixIdentityConfig(AppConfig):
    name = "apisix_identity.django"
    label = "apisix_identity"
    verbose_name = "APISIX identity"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401 - registers the system checks
