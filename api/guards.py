"""ASGI middleware that runs before routing: the bearer token and the request size limit.

Both are middleware rather than FastAPI dependencies so they answer before the body is read
or parsed: an unauthenticated caller learns nothing from validation messages, and a huge
body is refused without being buffered.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.error_handlers import error_response

MAX_BODY_BYTES = 1024 * 1024

# Reachable without a token: only the health check (for compose and load balancers). Issue 5
# asks for every other endpoint to require the token, the OpenAPI pages included: on a public
# address they would tell anyone what to try. (Without a token, on loopback, they stay open.)
OPEN_PATHS = frozenset({"/healthz"})


class BearerAuth:
    """Require `Authorization: Bearer <token>` on every path but OPEN_PATHS."""

    def __init__(self, app: ASGIApp, token: str):
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        response = error_response(
            401, "missing or wrong API token: send `Authorization: Bearer <token>` "
            "(the CLI does when LITESHIFT_API_TOKEN is set)",
            headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization")
        scheme, _, given = header.partition(b" ")
        # compare_digest takes time independent of where the strings differ.
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        # Chunked bodies declare no length: read them here, up to the limit (requests are
        # small JSON), then hand the app a receive that replays what was read.
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        await self.app(scope, _replay(messages, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"request body is larger than {self.limit // 1024} KiB: send less")
        await response(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()  # after the body: wait for the disconnect as usual

    return replay


def _header(scope: Scope, name: bytes) -> bytes:
    headers: Any = scope.get("headers") or ()
    for key, value in headers:
        if key.lower() == name:
            return bytes(value)
    return b""
