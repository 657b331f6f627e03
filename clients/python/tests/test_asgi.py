"""The ASGI middleware through Starlette's test client, and the async verification path that
leaves the event loop free while the key set is fetched."""

import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from apisix_identity import Verifier
from apisix_identity.asgi import AssertionMiddleware, identity

from .conftest import alice, sign
from .test_keys import Gateway

ALICE = "5b7c3c1e-8d1f-4c1a-9f0e-0a1b2c3d4e5f"


async def me(request):
    ident = request.state.identity
    assert identity(request.scope) is ident
    return JSONResponse({"sub": ident.subject if ident else None,
                         "orgs": ident.organization_map() if ident else None})


async def healthz(request):
    return JSONResponse({"status": "ok"})


async def ws(websocket):
    await websocket.accept()
    await websocket.send_json({"sub": websocket.state.identity.subject})
    await websocket.close()


def make_app(verifier, **kwargs):
    app = Starlette(routes=[Route("/me", me), Route("/healthz", healthz), WebSocketRoute("/ws", ws)])
    app.add_middleware(AssertionMiddleware, verifier=verifier, exempt_paths=["/healthz"], **kwargs)
    return app


def static(manifest):
    return Verifier(jwks=manifest["jwks"], issuer=manifest["issuer"], audience=manifest["audience"])


def token(manifest, **claims):
    return sign(manifest, alice(manifest, time.time(), **claims))


def test_a_valid_assertion_reaches_the_app(manifest):
    with TestClient(make_app(static(manifest))) as client:
        resp = client.get("/me", headers={"X-Identity-Assertion": token(manifest)})
        assert resp.status_code == 200
        assert resp.json() == {"sub": ALICE, "orgs": {"acme": {"id": "0d6f1c8e-3b4a-4f59-9a8e-5c2b1d7e9f01",
                                                               "attributes": {"tier": ["gold"]}}}}


@pytest.mark.parametrize("name,headers,reason", [
    ("missing", [], "missing"),
    ("forged", [("X-Identity-Assertion", "forged")], "malformed"),
    ("two headers", [("X-Identity-Assertion", "a.b.c"), ("x-identity-assertion", "a.b.c")], "malformed"),
])
def test_refused_without_a_valid_assertion(manifest, name, headers, reason):
    with TestClient(make_app(static(manifest))) as client:
        resp = client.get("/me", headers=headers)
        assert resp.status_code == 401, name
        assert resp.json() == {"error": "identity_assertion", "reason": reason}
        assert resp.headers["cache-control"] == "no-store"
        assert client.get("/healthz").status_code == 200


def test_an_assertion_signed_by_another_key_is_refused(manifest):
    with TestClient(make_app(static(manifest))) as client:
        bad = sign(manifest, alice(manifest, time.time()), key_file="unpublished.pem")
        resp = client.get("/me", headers={"X-Identity-Assertion": bad})
        assert resp.status_code == 401 and resp.json()["reason"] == "signature"


def test_optional_mode(manifest):
    with TestClient(make_app(static(manifest), required=False)) as client:
        assert client.get("/me").json() == {"sub": None, "orgs": None}
        assert client.get("/me", headers={"X-Identity-Assertion": token(manifest)}).json()["sub"] == ALICE


def test_websocket_handshake(manifest):
    with TestClient(make_app(static(manifest))) as client:
        with client.websocket_connect("/ws", headers={"X-Identity-Assertion": token(manifest)}) as conn:
            assert conn.receive_json() == {"sub": ALICE}
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws"):
                pass
        assert refused.value.code == 1008


def test_no_key_set_is_503(manifest):
    gw = Gateway(manifest["jwks"])
    gw.fail = True
    try:
        verifier = Verifier(jwks_url=gw.url, issuer=manifest["issuer"], audience=manifest["audience"])
        with TestClient(make_app(verifier)) as client:
            resp = client.get("/me", headers={"X-Identity-Assertion": token(manifest)})
            assert resp.status_code == 503 and resp.json()["reason"] == "keys_unavailable"
    finally:
        gw.close()


def test_a_slow_key_set_fetch_does_not_stall_the_loop(manifest):
    """The gateway takes 2 s to answer the key set. While the first request waits for it, a health
    probe on the same event loop is answered at once, and requests that need the same set wait for
    the one fetch."""
    gw = Gateway(manifest["jwks"])
    gw.delay = 2.0
    try:
        verifier = Verifier(jwks_url=gw.url, issuer=manifest["issuer"], audience=manifest["audience"])
        with TestClient(make_app(verifier)) as client:
            results = {}

            def slow(i):
                results[i] = client.get("/me", headers={"X-Identity-Assertion": token(manifest)})

            waiting = [threading.Thread(target=slow, args=(i,)) for i in range(3)]
            for t in waiting:
                t.start()
            time.sleep(0.3)  # the fetch is under way
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            probe = time.monotonic() - started
            for t in waiting:
                t.join()
        assert probe < 0.5, f"the probe waited {probe:.2f}s behind a key set fetch"
        assert all(r.status_code == 200 for r in results.values())
        assert gw.fetches == 1, "one fetch for the requests that waited on it"
    finally:
        gw.close()
