"""ASGI middleware around the service's routes, written as plain ASGI (Starlette's BaseHTTPMiddleware cost
more than the routes themselves): body size checked before reading and one audit line per request
(GuardAndAudit), and a deadline for the body (BodyDeadline: 300 clients that stop mid-body would otherwise
hold 300 connections open for as long as they like)."""
from __future__ import annotations

import asyncio
import logging

from fastapi.responses import JSONResponse

audit = logging.getLogger("biohash.audit")


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=headers)


class GuardAndAudit:
    """Refuse bodies without (411) or over (413) the size limit before reading them; one audit line per
    request: method, the route's template (a path may carry the caller's bytes), key id, status, and the
    fields routes noted in scope["state"]["audit"] (never an image or a code)."""

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app, self.limit = app, max_body_bytes

    def _refusal(self, scope) -> JSONResponse | None:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return None
        length = dict(scope["headers"]).get(b"content-length")
        if length is None:
            return _error(411, "Content-Length required")
        if not length.isdigit() or int(length) > self.limit:
            return _error(413, f"body larger than {self.limit} bytes")
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        state["audit"] = {}
        status = 500  # unless a response starts: an exception passes through here to the server's handler

        async def tracked(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            refused = self._refusal(scope)
            await (refused(scope, receive, tracked) if refused else self.app(scope, receive, tracked))
        finally:
            route = scope.get("route")
            path = route.path if route else _one_line(scope["path"].encode("unicode_escape").decode(), 80)
            fields = " ".join(f"{k}={v}" for k, v in state["audit"].items())
            audit.info("%s %s key=%s status=%d %s", scope["method"], path, state.get("key_id", "-"), status, fields)


class BodyDeadline:
    """ASGI middleware: a request body must arrive whole within `seconds` (else 408 and the connection closes),
    so clients that stop mid-body cannot hold connections open. The body (already capped by Content-Length)
    is then replayed to the app."""

    def __init__(self, app, seconds: float = 10.0) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        chunks = []
        try:
            async with asyncio.timeout(self.seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
        except TimeoutError:
            late = _error(408, f"request body not received within {self.seconds:g} s", {"Connection": "close"})
            return await late(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client to go
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
