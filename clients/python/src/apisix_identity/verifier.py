"""The assertion verifier: the same checks as the Go package verify/, held to the same vectors
(testdata/assertions/manifest.json)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import logging
import math
import re
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import jwt
from jwt.exceptions import InvalidSignatureError, PyJWTError

log = logging.getLogger("apisix_identity")

DEFAULT_HEADER = "X-Identity-Assertion"
DEFAULT_LEEWAY = 5.0
DEFAULT_REFRESH_INTERVAL = 10.0
#: Matches the Cache-Control max-age of the gateway's JWKS route.
DEFAULT_CACHE_TTL = 300.0
#: An assertion with a handful of organizations is well under 4 KiB.
MAX_TOKEN_BYTES = 32 << 10
MAX_JWKS_BYTES = 1 << 20
MAX_KEYS = 100
#: 9999-12-31T23:59:59Z: a time claim beyond it is nonsense.
MAX_TIMESTAMP = 253402300799

_ALGORITHMS = ("ES256", "EdDSA")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class Reason(str, enum.Enum):
    """Why an assertion was refused; the manifest's ``expect.reason`` values."""

    MISSING = "missing"
    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    UNKNOWN_KEY = "unknown_key"
    SIGNATURE = "signature"
    ISSUER = "issuer"
    AUDIENCE = "audience"
    #: ``token_issuer`` is set and the assertion's ``token_iss`` (the subject's realm) is another
    #: one, or missing.
    TOKEN_ISSUER = "token_issuer"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    CLAIMS = "claims"
    #: The key set could not be fetched: the gateway's fault, not the client's.
    KEYS_UNAVAILABLE = "keys_unavailable"


class VerificationError(Exception):
    """A refused assertion. ``reason`` is a :class:`Reason`; the message never holds the token."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(f"assertion {reason.value}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Organization:
    alias: str
    #: Keycloak's organization id; "" when the gateway only knew aliases.
    id: str = ""
    #: Keycloak's attributes, e.g. {"tier": ["gold"]}.
    attributes: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Identity:
    #: Keycloak's user id: unique within ``token_issuer`` only.
    subject: str
    #: The iss of the access token the gateway verified (``token_iss``): the Keycloak realm URL
    #: the subject belongs to; "" when the route verified no token (verify_token false).
    token_issuer: str = ""
    email: str = ""
    #: Keycloak checked that the user controls ``email``; False when the assertion does not say.
    #: An unverified email may be anyone's: never let it name an account.
    email_verified: bool = False
    name: str = ""
    preferred_username: str = ""
    #: Sorted by alias.
    organizations: tuple[Organization, ...] = ()
    #: "token", "keycloak", "cache" or "stale" (see the runner's orgsync); "" when not said.
    organization_source: str = ""
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    jti: str = ""
    issued_at: float = 0
    expires_at: float = 0
    #: Every claim of the payload, decoded.
    claims: Mapping[str, Any] = field(default_factory=dict)

    def organization_map(self) -> dict[str, dict[str, Any]]:
        """The organizations as alias -> {"id": ..., "attributes": {...}}."""
        return {
            o.alias: {"id": o.id, "attributes": {k: list(v) for k, v in o.attributes.items()}}
            for o in self.organizations
        }

    def aliases(self) -> list[str]:
        return [o.alias for o in self.organizations]


def _refuse(reason: Reason, message: str) -> VerificationError:
    return VerificationError(reason, message)


def _b64decode(segment: str, what: str) -> bytes:
    if not _B64URL.match(segment) or len(segment) % 4 == 1:
        raise _refuse(Reason.MALFORMED, f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _refuse(Reason.MALFORMED, f"{what} is not base64url") from None


def _loads_object(data: bytes) -> dict | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def parse_key_set(data: bytes | str | Mapping) -> dict[str, tuple[str, Any]]:
    """kid -> (algorithm, public key) for the P-256 and Ed25519 signature keys of a JWKS.

    Other keys (RSA, encryption keys, keys without kid) are ignored, as are keys whose own alg
    disagrees with their type; two keys under one kid are both dropped (ambiguous).
    """
    if isinstance(data, Mapping):
        doc = data
    else:
        try:
            doc = json.loads(data)
        except ValueError as e:
            raise ValueError(f"not a JWKS: {e}") from None
    keys = doc.get("keys") if isinstance(doc, Mapping) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS: no keys list")
    if len(keys) > MAX_KEYS:
        raise ValueError(f"{len(keys)} keys, more than {MAX_KEYS}")
    out: dict[str, tuple[str, Any] | None] = {}
    for jwk in keys:
        if not isinstance(jwk, Mapping):
            continue
        kid = jwk.get("kid")
        if not isinstance(kid, str) or not kid or jwk.get("use", "sig") != "sig":
            continue
        if "d" in jwk:  # a private key has no business in a published set
            continue
        kty, crv = jwk.get("kty"), jwk.get("crv")
        if kty == "EC" and crv == "P-256":
            alg = "ES256"
        elif kty == "OKP" and crv == "Ed25519":
            alg = "EdDSA"
        else:
            continue
        if jwk.get("alg", alg) != alg:
            continue
        try:
            key = jwt.PyJWK(dict(jwk), algorithm=alg).key
        except (PyJWTError, ValueError, TypeError):
            continue
        out[kid] = None if kid in out else (alg, key)
    usable = {kid: k for kid, k in out.items() if k is not None}
    if not usable:
        raise ValueError("no usable key (P-256 or Ed25519 signature keys with a kid)")
    return usable


class _KeySource:
    """The key set: static, or fetched from the gateway's JWKS route and refreshed when it is
    older than cache_ttl or lacks a kid, at most once per refresh_interval."""

    def __init__(self, *, static=None, url=None, refresh_interval, cache_ttl, timeout, clock, fetch):
        self._static = static
        self._url = url
        self._refresh = refresh_interval
        self._ttl = cache_ttl
        self._timeout = timeout
        self._clock = clock
        self._fetch_fn = fetch or self._http_get
        self._fetching = threading.Lock()
        self._lock = threading.Lock()
        self._set: dict | None = None
        self._fetched_at = 0.0
        self._last_try: float | None = None
        self._inflight: asyncio.Task | None = None

    def _current(self):
        with self._lock:
            return self._set, self._fetched_at

    def lookup(self, kid: str) -> tuple[str, Any]:
        found, had = self._cached(kid)
        if found is not None:
            return found
        return self._resolve(kid, had, self._fetch())

    async def lookup_async(self, kid: str) -> tuple[str, Any]:
        """lookup for an event loop: a fetch runs in a worker thread, one at a time per loop,
        and the loop serves other requests meanwhile."""
        found, had = self._cached(kid)
        if found is not None:
            return found
        return self._resolve(kid, had, await self._fetch_async())

    def _cached(self, kid: str):
        """(key, None) when the set holds kid and is fresh; else (None, the stale key or None)."""
        if self._static is not None:
            if kid in self._static:
                return self._static[kid], None
            raise _refuse(Reason.UNKNOWN_KEY, f"unknown kid {kid!r}")
        keys, fetched_at = self._current()
        had = keys.get(kid) if keys else None
        if had and self._clock() - fetched_at < self._ttl:
            return had, None
        return None, had

    def _resolve(self, kid: str, had, error: str | None) -> tuple[str, Any]:
        keys, _ = self._current()
        if keys is None:
            raise _refuse(Reason.KEYS_UNAVAILABLE, error or "no key set yet: the last fetch failed")
        if kid in keys:
            return keys[kid]
        if had:
            raise _refuse(Reason.UNKNOWN_KEY, f"unknown kid {kid!r} (no longer published)")
        raise _refuse(Reason.UNKNOWN_KEY, f"unknown kid {kid!r}")

    async def _fetch_async(self) -> str | None:
        loop = asyncio.get_running_loop()
        task = self._inflight
        # One fetch in flight per loop: the requests that need the set meanwhile await it rather
        # than each taking a worker thread to wait on the fetch lock.
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._inflight = loop.create_task(asyncio.to_thread(self._fetch))
        # shield: a request that is cancelled (its client left) does not cancel the others' fetch.
        return await asyncio.shield(task)

    def _fetch(self) -> str | None:
        with self._fetching:
            with self._lock:
                now = self._clock()
                if self._last_try is not None and now - self._last_try < self._refresh:
                    return None
                self._last_try = now
            try:
                body = self._fetch_fn(self._url, self._timeout)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
                keys = parse_key_set(body)
            except Exception as e:  # noqa: BLE001 - any failure keeps the previous set
                log.warning("identity assertion key set fetch failed: %s: %s", self._url, e)
                return f"key set {self._url}: {e}"
            with self._lock:
                self._set, self._fetched_at = keys, self._clock()
            return None

    @staticmethod
    def _http_get(url: str, timeout: float) -> bytes:
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - the operator's URL
            if resp.status != 200:
                raise ValueError(f"status {resp.status}")
            return resp.read(MAX_JWKS_BYTES + 1)


class Verifier:
    """Checks identity assertions; safe to share between threads.

    Give exactly one of ``jwks_url`` (the gateway's route, userinfo ``{"jwks":true}``) and
    ``jwks`` (a static key set: JSON text, bytes or a dict). ``issuer`` and ``audience`` are the
    userinfo route's ``assertion.issuer`` and ``assertion.audience``.

    ``token_issuer``, when given, must equal the assertion's ``token_iss``: the iss of the access
    token the gateway verified, the realm URL (the userinfo route's ``issuer``). Another one, or
    none (a route with verify_token false), is refused with :attr:`Reason.TOKEN_ISSUER`. Give it:
    a sub is unique only within its realm, and ``iss`` names the gateway, not the realm. Without
    it ``token_iss`` is not checked (``Identity.token_issuer`` still says it) and the app must key
    users by (token_issuer, subject), or be sure only one realm's routes sign for ``audience``.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        token_issuer: str | None = None,
        jwks_url: str | None = None,
        jwks: bytes | str | Mapping | None = None,
        header: str = DEFAULT_HEADER,
        leeway: float = DEFAULT_LEEWAY,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        fetch: Callable[[str, float], bytes] | None = None,
    ):
        if not issuer or not audience:
            raise ValueError("apisix_identity: issuer and audience are required")
        if (jwks_url is None) == (jwks is None):
            raise ValueError("apisix_identity: give exactly one of jwks_url and jwks")
        self.issuer = issuer
        self.audience = audience
        self.token_issuer = token_issuer or None
        self.header = header
        self.leeway = max(0.0, float(leeway))
        self._clock = clock
        static = None
        if jwks is not None:
            try:
                static = parse_key_set(jwks)
            except ValueError as e:
                raise ValueError(f"apisix_identity: static key set: {e}") from None
        self._keys = _KeySource(
            static=static,
            url=jwks_url,
            refresh_interval=refresh_interval,
            cache_ttl=cache_ttl,
            timeout=timeout,
            clock=clock,
            fetch=fetch,
        )

    @property
    def meta_key(self) -> str:
        """The WSGI environ / Django request.META key of the header."""
        return "HTTP_" + self.header.upper().replace("-", "_")

    def verify_environ(self, environ: Mapping[str, Any]) -> Identity:
        """Checks the assertion of a WSGI environ (or Django's request.META)."""
        value = environ.get(self.meta_key)
        if not value:
            raise _refuse(Reason.MISSING, f"no {self.header} header")
        if "," in value:
            # WSGI servers join repeated headers with ","; a JWS never holds one.
            raise _refuse(Reason.MALFORMED, f"several {self.header} headers")
        return self.verify(value)

    def verify(self, token: str) -> Identity:
        """Checks one assertion (compact JWS) and returns its identity. May fetch the key set
        (blocking): on an event loop use :meth:`verify_async`."""
        alg, kid = self._header(token)
        return self._signed(token, alg, kid, self._keys.lookup(kid))

    async def verify_async(self, token: str) -> Identity:
        """:meth:`verify` for asyncio: a key set fetch runs in a worker thread and never blocks the
        event loop (the signature check itself is a fraction of a millisecond)."""
        alg, kid = self._header(token)
        return self._signed(token, alg, kid, await self._keys.lookup_async(kid))

    def _header(self, token: str) -> tuple[str, str]:
        if not isinstance(token, str):
            raise _refuse(Reason.MALFORMED, "not a string")
        if len(token) > MAX_TOKEN_BYTES:
            raise _refuse(Reason.MALFORMED, f"assertion of {len(token)} bytes, more than {MAX_TOKEN_BYTES}")
        parts = token.split(".")
        if len(parts) != 3:
            raise _refuse(Reason.MALFORMED, f"not a compact JWS ({len(parts)} parts)")
        header = _loads_object(_b64decode(parts[0], "header"))
        if header is None:
            raise _refuse(Reason.MALFORMED, "header is not a JSON object")
        for name in ("crit", "b64"):
            if name in header:
                raise _refuse(Reason.MALFORMED, f"header parameter {name!r} is not accepted")
        alg, kid = header.get("alg"), header.get("kid", "")
        if not isinstance(alg, str) or not isinstance(kid, str):
            raise _refuse(Reason.MALFORMED, "header alg and kid must be strings")
        # The algorithm is refused before any key is chosen: "none", HS256 keyed with the public
        # key, RS256 ... never reach a signature check.
        if alg not in _ALGORITHMS:
            raise _refuse(Reason.ALGORITHM, f"algorithm {alg!r} is not accepted (ES256 or EdDSA only)")
        if not kid:
            raise _refuse(Reason.UNKNOWN_KEY, "no kid in the header")
        return alg, kid

    def _signed(self, token: str, alg: str, kid: str, found: tuple[str, Any]) -> Identity:
        key_alg, key = found
        if key_alg != alg:
            raise _refuse(Reason.ALGORITHM, f"key {kid!r} is an {key_alg} key, the header says {alg}")
        parts = token.split(".")
        _b64decode(parts[1], "payload")
        _b64decode(parts[2], "signature")
        try:
            decoded = jwt.PyJWS().decode_complete(token, key=key, algorithms=[alg])
        except InvalidSignatureError:
            raise _refuse(Reason.SIGNATURE, f"signature does not verify with key {kid!r}") from None
        except PyJWTError as e:
            raise _refuse(Reason.MALFORMED, str(e)) from None
        claims = _loads_object(decoded["payload"])
        if claims is None:
            raise _refuse(Reason.CLAIMS, "payload is not a JSON object")
        return self._check_claims(claims)

    def _check_claims(self, claims: dict) -> Identity:
        iss = claims.get("iss")
        if not isinstance(iss, str):
            raise _refuse(Reason.CLAIMS, "iss must be a string")
        if iss != self.issuer:
            raise _refuse(Reason.ISSUER, f"issuer {iss!r}, want {self.issuer!r}")
        aud = claims.get("aud")
        if isinstance(aud, str):
            if aud != self.audience:
                raise _refuse(Reason.AUDIENCE, f"audience {aud!r}, want {self.audience!r}")
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            if self.audience not in aud:
                raise _refuse(Reason.AUDIENCE, f"audience {aud!r} does not include {self.audience!r}")
        else:
            raise _refuse(Reason.CLAIMS, "aud must be a string or a list of strings")
        token_iss = claims.get("token_iss")
        if "token_iss" in claims and not isinstance(token_iss, str):
            raise _refuse(Reason.CLAIMS, "token_iss must be a string")
        if self.token_issuer is not None:
            if token_iss is None:
                raise _refuse(Reason.TOKEN_ISSUER,
                              f"no token_iss: the gateway verified no token of {self.token_issuer!r} for this assertion")
            if token_iss != self.token_issuer:
                raise _refuse(Reason.TOKEN_ISSUER, f"token issuer {token_iss!r}, want {self.token_issuer!r}")
        exp = _time_claim(claims, "exp", required=True)
        iat = _time_claim(claims, "iat", required=True)
        nbf = _time_claim(claims, "nbf", required=False)
        now = self._clock()
        if not now < exp + self.leeway:
            raise _refuse(Reason.EXPIRED, f"expired at {exp}")
        if iat > now + self.leeway:
            raise _refuse(Reason.NOT_YET_VALID, f"issued in the future ({iat})")
        if nbf is not None and nbf > now + self.leeway:
            raise _refuse(Reason.NOT_YET_VALID, f"not valid before {nbf}")
        sub = claims.get("sub")
        if not isinstance(sub, str):
            raise _refuse(Reason.CLAIMS, "sub must be a string")
        if not sub:
            raise _refuse(Reason.CLAIMS, "empty sub")
        try:
            organizations = parse_organizations(claims.get("organization"))
        except ValueError as e:
            raise _refuse(Reason.CLAIMS, f"organization: {e}") from None
        email_verified = claims.get("email_verified")
        if email_verified is not None and not isinstance(email_verified, bool):
            raise _refuse(Reason.CLAIMS, "email_verified must be a boolean")
        return Identity(
            subject=sub,
            token_issuer=token_iss or "",
            email=_optional_string(claims, "email"),
            email_verified=bool(email_verified),
            name=_optional_string(claims, "name"),
            preferred_username=_optional_string(claims, "preferred_username"),
            organization_source=_optional_string(claims, "organization_source"),
            jti=_optional_string(claims, "jti"),
            groups=_string_list(claims, "groups"),
            roles=_string_list(claims, "roles"),
            organizations=organizations,
            issued_at=iat,
            expires_at=exp,
            claims=claims,
        )


def _time_claim(claims: dict, name: str, *, required: bool) -> float | None:
    if name not in claims:
        if required:
            raise _refuse(Reason.CLAIMS, f"no {name}")
        return None
    v = claims[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= MAX_TIMESTAMP:
        raise _refuse(Reason.CLAIMS, f"{name} must be a number of seconds since 1970 before 10000")
    return float(v)


def _optional_string(claims: dict, name: str) -> str:
    v = claims.get(name)
    if v is None:
        return ""
    if not isinstance(v, str):
        raise _refuse(Reason.CLAIMS, f"{name} must be a string")
    return v


def _string_or_list(v: Any) -> tuple[str, ...] | None:
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return tuple(v)
    return None


def _string_list(claims: dict, name: str) -> tuple[str, ...]:
    v = claims.get(name)
    if v is None:
        return ()
    values = _string_or_list(v)
    if values is None:
        raise _refuse(Reason.CLAIMS, f"{name} must be a string or a list of strings")
    return values


def parse_organizations(raw: Any) -> tuple[Organization, ...]:
    """Reads the organization claim in each shape Keycloak's mapper writes:
    {"alias": {"id": "..", "attr": ["v"]}} (what the runner signs), ["alias"], "alias", {}."""
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        return (Organization(alias=raw),)
    orgs: list[Organization] = []
    if isinstance(raw, list):
        for alias in raw:
            if not isinstance(alias, str) or not alias:
                raise ValueError("a list must hold aliases (non-empty strings)")
            orgs.append(Organization(alias=alias))
    elif isinstance(raw, dict):
        for alias, entry in raw.items():
            if not alias:
                raise ValueError("empty alias")
            if not isinstance(entry, dict):
                raise ValueError(f"{alias} must be an object")
            org_id = ""
            attributes: dict[str, list[str]] = {}
            for name, value in entry.items():
                if name == "id":
                    if not isinstance(value, str):
                        raise ValueError(f"{alias}.id must be a string")
                    org_id = value
                    continue
                values = _string_or_list(value)
                if values is None:
                    raise ValueError(f"{alias}.{name} must be a string or a list of strings")
                attributes[name] = list(values)
            orgs.append(Organization(alias=alias, id=org_id, attributes=attributes))
    else:
        raise ValueError("expected an object, a list or a string")
    orgs.sort(key=lambda o: o.alias)
    for a, b in zip(orgs, orgs[1:]):
        if a.alias == b.alias:
            raise ValueError(f"alias {a.alias!r} twice")
    return tuple(orgs)
