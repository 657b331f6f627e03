import json
import time
from wsgiref.util import setup_testing_defaults

from apisix_identity import Verifier
from apisix_identity.wsgi import AssertionMiddleware, identity

from .conftest import alice, sign


def app(environ, start_response):
    ident = identity(environ)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"sub": ident.subject if ident else None,
                        "orgs": ident.organization_map() if ident else None}).encode()]


def call(wsgi, headers=None):
    environ = {}
    setup_testing_defaults(environ)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen = {}

    def start_response(status, response_headers):
        seen["status"] = status

    body = b"".join(wsgi(environ, start_response))
    return seen["status"], json.loads(body)


def verifier(manifest):
    return Verifier(jwks=manifest["jwks"], issuer=manifest["issuer"], audience=manifest["audience"])


def test_required_assertion(manifest):
    wsgi = AssertionMiddleware(app, verifier(manifest))
    status, body = call(wsgi, {"X-Identity-Assertion": sign(manifest, alice(manifest, time.time()))})
    assert status == "200 OK"
    assert body == {"sub": "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f",
                    "orgs": {"acme": {"id": "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01", "attributes": {"tier": ["gold"]}}}}
    assert call(wsgi) == ("401 Unauthorized", {"error": "identity_assertion", "reason": "missing"})
    expired = sign(manifest, alice(manifest, time.time() - 3600))
    assert call(wsgi, {"X-Identity-Assertion": expired}) == (
        "401 Unauthorized", {"error": "identity_assertion", "reason": "expired"})


def test_optional_assertion_passes_anonymous_requests(manifest):
    wsgi = AssertionMiddleware(app, verifier(manifest), required=False)
    assert call(wsgi) == ("200 OK", {"sub": None, "orgs": None})
    forged = sign(manifest, alice(manifest, time.time()), key_file="unpublished.pem")
    assert call(wsgi, {"X-Identity-Assertion": forged}) == ("200 OK", {"sub": None, "orgs": None})


def test_an_identity_smuggled_into_the_environ_is_dropped(manifest):
    wsgi = AssertionMiddleware(app, verifier(manifest), required=False)
    environ = {}
    setup_testing_defaults(environ)
    environ["apisix_identity.identity"] = "forged"
    out = {}
    body = b"".join(wsgi(environ, lambda s, h: out.setdefault("s", s)))
    assert json.loads(body)["sub"] is None
