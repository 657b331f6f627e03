"""The shared vectors (testdata/assertions), made by the runner's own signer: this client must
accept and refuse exactly what the manifest says, as the Go verifier does."""

import json

import pytest

from apisix_identity import Verifier, VerificationError

from .conftest import MANIFEST

_VECTORS = json.loads(MANIFEST.read_text(encoding="utf-8"))


def as_expected(identity):
    return {
        "sub": identity.subject,
        "token_iss": identity.token_issuer,
        "email": identity.email,
        "email_verified": identity.email_verified,
        "name": identity.name,
        "preferred_username": identity.preferred_username,
        "groups": list(identity.groups),
        "roles": list(identity.roles),
        "organizations": identity.organization_map(),
        "organization_source": identity.organization_source,
        "jti": identity.jti,
        "iat": int(identity.issued_at),
        "exp": int(identity.expires_at),
    }


def test_the_manifest_covers_every_case():
    reasons = {v["expect"].get("reason") for v in _VECTORS["vectors"]}
    assert {"expired", "not_yet_valid", "audience", "issuer", "token_issuer", "unknown_key", "signature",
            "algorithm"} <= reasons
    assert sum(v["expect"]["accept"] for v in _VECTORS["vectors"]) >= 10


@pytest.mark.parametrize("vec", _VECTORS["vectors"], ids=[v["name"] for v in _VECTORS["vectors"]])
def test_vector(vec):
    m = _VECTORS
    verifier = Verifier(
        jwks=vec.get("jwks", m["jwks"]),
        issuer=m["issuer"],
        audience=m["audience"],
        token_issuer=vec.get("token_issuer", m["token_issuer"]),
        leeway=m["leeway_seconds"],
        clock=lambda: float(vec["now"]),
    )
    if not vec["expect"]["accept"]:
        with pytest.raises(VerificationError) as err:
            verifier.verify(vec["token"])
        assert err.value.reason.value == vec["expect"]["reason"], f"{vec['description']}: {err.value}"
        return
    identity = verifier.verify(vec["token"])
    assert as_expected(identity) == vec["expect"]["identity"]
