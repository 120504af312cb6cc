"""A small HTTP/1.1 server on 127.0.0.1, written on trio, that serves canned LLM replies.

Each request is recorded; the reply comes from a queue of :class:`Reply` values (or a
handler). A reply is JSON with a status and headers, or a server-sent-event stream sent with
chunked encoding, which can be cut off (connection closed without the last chunk) or left
hanging after some events. Connections are kept alive, as a real server's are.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden"}


@attrs.define
class Reply:
    """What the server answers to one request."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.Factory(dict)
    sse: list[str] | None = None
    """Raw SSE events (each a complete ``"event: ...\\ndata: ...\\n\\n"`` text)."""
    cut_after: int | None = None
    """Close the connection abruptly after this many SSE events."""
    hang_after: int | None = None
    """Stop after this many SSE events (or before answering, for JSON) and keep the
    connection open until the client goes away."""


@attrs.define
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def sse_data(*payloads: Any, done: bool = True) -> list[str]:
    """OpenAI-style events: ``data: {json}`` per payload, then ``data: [DONE]``."""
    events = [f"data: {json.dumps(p)}\n\n" for p in payloads]
    if done:
        events.append("data: [DONE]\n\n")
    return events


def sse_events(*pairs: tuple[str, Any]) -> list[str]:
    """Anthropic-style events: ``event: NAME`` and ``data: {json}`` per pair."""
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in pairs]


class FakeLLMServer:
    """The server; use :func:`open_fake_llm_server`."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.handler: Callable[[Recorded], Reply] | None = None
        self.requests: list[Recorded] = []
        self.connections = 0
        self.port = 0
        self.disconnected = trio.Event()
        """Set when a client closes a connection while the server hangs on it."""
        self.hanging = trio.Event()
        """Set when the server starts hanging on a reply."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                raw, buffer = buffer[:length], buffer[length:]
                body = json.loads(raw) if raw else None
                request = Recorded(method, path, headers, body)
                self.requests.append(request)
                if self.handler is not None:
                    reply = self.handler(request)
                elif self.replies:
                    reply = self.replies.pop(0)
                else:
                    reply = Reply(500, {"error": {"message": "fake server: no reply queued"}})
                if not await self._send(stream, reply):
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await stream.aclose()

    async def _hang(self, stream: trio.SocketStream) -> None:
        self.hanging.set()
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.disconnected.set()

    async def _send(self, stream: trio.SocketStream, reply: Reply) -> bool:
        reason = _REASONS.get(reply.status, "Status")
        headers = dict(reply.headers)
        if reply.sse is None:
            if reply.hang_after is not None:
                await self._hang(stream)
                return False
            payload = json.dumps(reply.body).encode() if reply.body is not None else b""
            headers.setdefault("content-type", "application/json")
            headers["content-length"] = str(len(payload))
            await stream.send_all(_head(reply.status, reason, headers) + payload)
            return True
        headers["content-type"] = "text/event-stream"
        headers["transfer-encoding"] = "chunked"
        await stream.send_all(_head(reply.status, reason, headers))
        for number, event in enumerate(reply.sse):
            if reply.cut_after is not None and number == reply.cut_after:
                return False  # closed without the terminating chunk
            if reply.hang_after is not None and number == reply.hang_after:
                await self._hang(stream)
                return False
            data = event.encode()
            await stream.send_all(b"%x\r\n%s\r\n" % (len(data), data))
        if reply.hang_after is not None and reply.hang_after >= len(reply.sse):
            await self._hang(stream)
            return False
        if reply.cut_after is not None:
            return False
        await stream.send_all(b"0\r\n\r\n")
        return True


def _head(status: int, reason: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@asynccontextmanager
async def open_fake_llm_server() -> AsyncIterator[FakeLLMServer]:
    """Serve on a free port of 127.0.0.1 until the block ends."""
    server = FakeLLMServer()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, server._handle, 0, host="127.0.0.1")
        )
        server.port = listeners[0].socket.getsockname()[1]
        yield server
        nursery.cancel_scope.cancel(reason="fake server closed")
