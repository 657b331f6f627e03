import json
import os
import pathlib
import shutil
import subprocess
import time
import uuid

import jwt
import pytest

REPO = pathlib.Path(__file__).resolve().parents[3]
VECTORS = REPO / "testdata" / "assertions"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def gateway_keys(settings):
    """The app trusts the key set of the shared vectors (the gateway's JWKS route in production)."""
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "JWKS_URL": None, "JWKS": MANIFEST["jwks"],
                                "ISSUER": MANIFEST["issuer"], "AUDIENCE": MANIFEST["audience"],
                                "TOKEN_ISSUER": MANIFEST["token_issuer"]}


def assertion(sub, organization, *, email, name):
    """An assertion as userinfo signs it, with the committed test key the key set publishes."""
    now = int(time.time())
    claims = {"iss": MANIFEST["issuer"], "aud": MANIFEST["audience"], "token_iss": MANIFEST["token_issuer"], "sub": sub,
              "iat": now, "exp": now + 60, "jti": uuid.uuid4().hex, "email": email, "email_verified": True,
              "name": name, "organization": organization,
              "organization_source": "keycloak"}
    kid = next(k["kid"] for k in MANIFEST["jwks"]["keys"] if k["alg"] == "ES256")
    return jwt.encode(claims, (VECTORS / "keys" / "es256.pem").read_bytes(), algorithm="ES256",
                      headers={"kid": kid, "typ": "JWT"})


@pytest.fixture
def runner_feed(tmp_path_factory, settings):
    """Writes membership changes to the real Redis through the runner's own code
    (demo/feedwriter), under a prefix of this test's own."""
    import redis

    url = os.environ.get("REDIS_TEST_URL")
    if not url:
        pytest.fail("REDIS_TEST_URL is not set: the demo follows the feed on a real Redis")
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the feed entries are written by the runner's code")
    binary = tmp_path_factory.mktemp("bin") / "feedwriter"
    subprocess.run([go, "build", "-o", str(binary), "./demo/feedwriter"], cwd=REPO, check=True)
    prefix = f"django-demo-{uuid.uuid4().hex[:10]}:"
    settings.APISIX_IDENTITY = {**settings.APISIX_IDENTITY, "FEED_REDIS_URL": url, "FEED_PREFIX": prefix}

    def write(user, added=(), removed=()):
        subprocess.run([str(binary), "-redis", url, "-prefix", prefix, "-user", user,
                        "-key", str(VECTORS / "keys" / "es256.pem"),
                        "-added", ",".join(added), "-removed", ",".join(removed)], check=True)

    yield write
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()
