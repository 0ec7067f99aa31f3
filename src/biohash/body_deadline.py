"""ASGI middleware that gives a request body a deadline: 300 clients that stop mid-body would otherwise hold 300
connections (and their buffers) open for as long as they like."""
from __future__ import annotations

import asyncio

from fastapi.responses import JSONResponse


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
            late = JSONResponse({"detail": f"request body not received within {self.seconds:g} s"}, status_code=408,
                                headers={"Connection": "close"})
            return await late(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the client to go
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)
