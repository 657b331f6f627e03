"""Fetching the gateway's key set over HTTP: once, again on an unknown kid at most once per
interval, kept when a refresh fails, refused when there never was one."""

import http.server
import json
import threading
import time

import pytest

from apisix_identity import Reason, VerificationError, Verifier

from .conftest import alice, sign, vector


class Gateway:
    """Serves a JWKS on 127.0.0.1 as the userinfo {"jwks": true} route does."""

    def __init__(self, jwks):
        self.jwks = jwks
        self.fail = False
        self.fetches = 0
        #: Seconds each answer waits: a slow gateway.
        self.delay = 0.0
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                gw.fetches += 1
                time.sleep(gw.delay)
                if gw.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps(gw.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/.well-known/identity-assertion/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self, now):
        self.now = float(now)

    def __call__(self):
        return self.now


@pytest.fixture
def gateway(manifest):
    gw = Gateway(manifest["jwks"])
    yield gw
    gw.close()


def remote(manifest, gw, clock):
    return Verifier(jwks_url=gw.url, issuer=manifest["issuer"], audience=manifest["audience"],
                    clock=clock, refresh_interval=10, cache_ttl=300)


def test_fetches_once_and_reuses(manifest, gateway):
    v = vector(manifest, "valid_es256")
    verifier = remote(manifest, gateway, Clock(v["now"]))
    for _ in range(5):
        assert verifier.verify(v["token"]).subject == v["expect"]["identity"]["sub"]
    assert gateway.fetches == 1


def test_rotation_is_fetched_at_most_once_per_interval(manifest, gateway):
    old = vector(manifest, "rotated_previous_key")
    valid = vector(manifest, "valid_es256")
    clock = Clock(valid["now"])
    verifier = remote(manifest, gateway, clock)
    verifier.verify(valid["token"])
    # The gateway now publishes the previous key too (a rotation under way); right after a fetch
    # an unknown kid is refused without asking again...
    gateway.jwks = old["jwks"]
    for _ in range(20):
        with pytest.raises(VerificationError) as err:
            verifier.verify(old["token"])
        assert err.value.reason is Reason.UNKNOWN_KEY
    assert gateway.fetches == 1
    # ... and accepted once the interval has passed, with one more fetch.
    clock.now += 10
    assert verifier.verify(old["token"]).subject
    assert verifier.verify(old["token"]).subject
    assert gateway.fetches == 2


def test_stale_set_serves_while_the_gateway_is_down_and_retired_keys_stop(manifest, gateway):
    clock = Clock(1_800_000_000)
    verifier = remote(manifest, gateway, clock)
    assert verifier.verify(sign(manifest, alice(manifest, clock.now))).subject
    gateway.fail = True
    clock.now += 301  # past cache_ttl: a refresh is tried, fails, and the set it had serves
    assert verifier.verify(sign(manifest, alice(manifest, clock.now))).subject
    assert gateway.fetches == 2
    # The gateway is back and publishes only the Ed25519 key: the P-256 key is retired.
    gateway.fail = False
    gateway.jwks = {"keys": [k for k in manifest["jwks"]["keys"] if k["alg"] == "EdDSA"]}
    clock.now += 10
    with pytest.raises(VerificationError) as err:
        verifier.verify(sign(manifest, alice(manifest, clock.now)))
    assert err.value.reason is Reason.UNKNOWN_KEY
    assert gateway.fetches == 3
    assert verifier.verify(sign(manifest, alice(manifest, clock.now), alg="EdDSA")).subject


def test_no_key_set_is_unavailable_and_asked_once_per_interval(manifest, gateway):
    v = vector(manifest, "valid_es256")
    gateway.fail = True
    verifier = remote(manifest, gateway, Clock(v["now"]))
    for _ in range(3):
        with pytest.raises(VerificationError) as err:
            verifier.verify(v["token"])
        assert err.value.reason is Reason.KEYS_UNAVAILABLE
    assert gateway.fetches == 1


def test_refused_before_any_fetch(manifest, gateway):
    verifier = remote(manifest, gateway, Clock(0))
    for name in ("alg_none", "hs256_public_key", "rs256", "malformed_two_parts"):
        with pytest.raises(VerificationError):
            verifier.verify(vector(manifest, name)["token"])
    with pytest.raises(VerificationError) as err:
        verifier.verify("a" * 40000 + ".b.c")
    assert err.value.reason is Reason.MALFORMED
    assert gateway.fetches == 0


def test_configuration_errors(manifest):
    with pytest.raises(ValueError):
        Verifier(jwks=manifest["jwks"], issuer="", audience="a")
    with pytest.raises(ValueError):
        Verifier(issuer="i", audience="a")
    with pytest.raises(ValueError):
        Verifier(jwks=manifest["jwks"], jwks_url="http://127.0.0.1:1/", issuer="i", audience="a")
    with pytest.raises(ValueError):
        Verifier(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}]}, issuer="i", audience="a")
    # Two keys under one kid: ambiguous, neither is trusted.
    k = manifest["jwks"]["keys"][0]
    other = dict(manifest["jwks"]["keys"][1], kid=k["kid"])
    with pytest.raises(ValueError):
        Verifier(jwks={"keys": [k, other]}, issuer="i", audience="a")
