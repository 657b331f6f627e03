"""Django integration: add ``"apisix_identity.django"`` to INSTALLED_APPS, the backend to
AUTHENTICATION_BACKENDS (before ModelBackend, which keeps the admin's password login) and the
middleware after AuthenticationMiddleware (system checks say so at start). Django REST framework:
``apisix_identity.django.drf.AssertionAuthentication``. Settings::

    APISIX_IDENTITY = {
        "JWKS_URL": "http://apisix:9080/.well-known/identity-assertion/jwks.json",  # or "JWKS": {...}
        "ISSUER": "apisix-identity-runner",
        "AUDIENCE": "my-app",
        "TOKEN_ISSUER": "https://sso.example.org/realms/olapps",  # required: the realm of your users
        "REQUIRED": True,             # refuse requests without a valid assertion (401)
        "LOGIN": True,                # keep a session (django.contrib.auth.login); False: request.user only
        "EXEMPT_PATHS": ["/healthz"], # path prefixes never checked
        "USERNAME_CLAIM": "sub",      # Keycloak's user id is the Django username
        # another claim needs "ALLOW_USERNAME_CLAIM": True; "email" also needs email_verified
        "LOOKUP_FIELD": None,         # the user field holding the claim's value (None: USERNAME_FIELD)
        "CREATE_USERS": True,         # False: no account here, 403 unknown_user
        # the change feed (manage.py apisix_identity_feed)
        "FEED_REDIS_URL": "redis://redis:6379/0",
        "FEED_RECONCILE": "myapp.identity.reconcile",   # called with each Change
    }
"""
