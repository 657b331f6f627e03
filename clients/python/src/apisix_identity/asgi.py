"""An ASGI middleware (Starlette, FastAPI, any ASGI app): verifies the assertion without blocking
the event loop and puts the identity in the scope.

    app.add_middleware(AssertionMiddleware, verifier=verifier)   # Starlette / FastAPI
    app = AssertionMiddleware(app, verifier)                      # any ASGI app

In the app: ``identity(scope)``, or ``request.state.identity`` in Starlette and FastAPI.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Iterable, MutableMapping

from .verifier import Identity, Reason, VerificationError, Verifier

log = logging.getLogger("apisix_identity")

SCOPE_KEY = "apisix_identity.identity"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def identity(scope: Scope) -> Identity | None:
    """The identity the middleware verified for this connection, or None."""
    return scope.get(SCOPE_KEY)


class AssertionMiddleware:
    """Wraps an ASGI app; HTTP requests and WebSocket handshakes are checked, lifespan events
    pass through.

    With ``required`` (the default) a connection without a valid assertion is answered 401 (503
    when the gateway's key set cannot be fetched; a WebSocket handshake is closed, 1008 or 1013)
    and never reaches the app. Without it such a connection reaches the app with no identity.
    ``exempt_paths``: path prefixes never checked (health probes). The key set is fetched in a
    worker thread: while one request waits for it, the loop serves every other one.
    """

    def __init__(self, app: ASGIApp, verifier: Verifier, *, required: bool = True,
                 exempt_paths: Iterable[str] = ()):
        self.app = app
        self.verifier = verifier
        self.required = required
        self.exempt_paths = tuple(exempt_paths)
        self._header = verifier.header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        # A copy: the server's scope, and a lifespan state shared by every request, stay as they were.
        scope = dict(scope)
        scope.pop(SCOPE_KEY, None)
        state = dict(scope.get("state") or {})
        state.pop("identity", None)
        if self.exempt_paths and scope.get("path", "").startswith(self.exempt_paths):
            scope["state"] = state
            await self.app(scope, receive, send)
            return
        try:
            found = await self._verify(scope)
        except VerificationError as e:
            if e.reason is not Reason.MISSING:
                log.info("identity assertion refused: %s (path %s)", e, scope.get("path", ""))
            if self.required or e.reason is Reason.KEYS_UNAVAILABLE:
                await _refuse(scope, send, e.reason)
                return
            found = None
        scope[SCOPE_KEY] = found
        state["identity"] = found
        scope["state"] = state
        await self.app(scope, receive, send)

    async def _verify(self, scope: Scope) -> Identity:
        values = [v for k, v in scope.get("headers", ()) if k.lower() == self._header]
        if not values or not values[0]:
            raise VerificationError(Reason.MISSING, f"no {self.verifier.header} header")
        if len(values) > 1:
            raise VerificationError(Reason.MALFORMED, f"several {self.verifier.header} headers")
        try:
            token = values[0].decode("ascii")
        except UnicodeDecodeError:
            raise VerificationError(Reason.MALFORMED, "not ASCII") from None
        return await self.verifier.verify_async(token)


async def _refuse(scope: Scope, send, reason: Reason) -> None:
    if scope["type"] == "websocket":
        # Closing before accepting answers the handshake with 403; 1013: try again later.
        await send({"type": "websocket.close", "code": 1013 if reason is Reason.KEYS_UNAVAILABLE else 1008})
        return
    status = 503 if reason is Reason.KEYS_UNAVAILABLE else 401
    body = json.dumps({"error": "identity_assertion", "reason": reason.value}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]})
    await send({"type": "http.response.body", "body": body})


__all__ = ["AssertionMiddleware", "SCOPE_KEY", "identity"]
