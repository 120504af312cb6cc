"""A small HTTP/1.1 server on 127.0.0.1, written on trio, that serves canned LLM replies.

Each request is recorded; the reply comes from a queue of :class:`Reply` values (or a
handler). A reply is JSON with a status and headers, or a server-sent-event stream sent with
chunked encoding, which can be cut off (connection closed without the last chunk) or left
hanging after some events. Connections are kept alive, as a real server's are.

A successful JSON completion (OpenAI's ``chat.completion`` or Anthropic's ``message``)
answering a request that asked for a stream is sent as the event stream the real API would
send for it (see :func:`openai_sse_of` and :func:`anthropic_sse_of`), unless the reply says
``as_json=True``. A :class:`Reply` with ``generate=N`` behaves like an inference server: it
produces N tokens on the clock, streaming each when asked to stream (and stopping when the
client has gone), or all of them before answering a non-streamed request (as llama.cpp does:
it does not watch the connection while it generates).
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
    as_json: bool = False
    """Answer with the JSON ``body`` even when the request asked for a stream."""
    pieces: int = 3
    """Into how many chunks each text and each tool call's arguments are split when a JSON
    body is sent as a stream."""
    generate: int | None = None
    """Generate this many tokens, one per ``tick`` seconds (see the module docstring)."""
    tick: float = 0.01


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
        self.generating = trio.Event()
        """Set when a ``generate`` reply has produced its first token."""
        self.generations: list[tuple[str, int]] = []
        """``("completed" | "aborted", tokens generated)`` per ``generate`` reply."""
        self.generation_ended = trio.Event()
        """Set when a ``generate`` reply ends, completed or aborted."""

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
                if reply.generate is not None:
                    if not await self._generate(stream, request, reply):
                        return
                    continue
                reply = _as_stream(request, reply)
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

    async def _generate(self, stream: trio.SocketStream, request: Recorded, reply: Reply) -> bool:
        assert reply.generate is not None
        anthropic = request.path.endswith("/messages")
        streamed = bool((request.body or {}).get("stream"))
        tokens = 0
        try:
            if streamed:
                headers = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}
                await stream.send_all(_head(200, "OK", headers))
                for event in _token_events(anthropic, start=True):
                    await _send_chunk(stream, event)
            for _ in range(reply.generate):
                await trio.sleep(reply.tick)
                tokens += 1
                self.generating.set()
                if streamed:
                    for event in _token_events(anthropic, token="tok "):
                        await _send_chunk(stream, event)
            content = "tok " * tokens
            if streamed:
                for event in _token_events(anthropic, finish=tokens):
                    await _send_chunk(stream, event)
                await stream.send_all(b"0\r\n\r\n")
            self.generations.append(("completed", tokens))
            self.generation_ended.set()
            if not streamed:
                body = _generated_body(anthropic, content, tokens)
                payload = json.dumps(body).encode()
                headers = {"content-type": "application/json", "content-length": str(len(payload))}
                await stream.send_all(_head(200, "OK", headers) + payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            if not self.generation_ended.is_set():
                self.generations.append(("aborted", tokens))
                self.generation_ended.set()
            return False
        return True

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


async def _send_chunk(stream: trio.SocketStream, event: str) -> None:
    data = event.encode()
    await stream.send_all(b"%x\r\n%s\r\n" % (len(data), data))


def _token_events(
    anthropic: bool, *, start: bool = False, token: str | None = None, finish: int | None = None
) -> list[str]:
    if anthropic:
        if start:
            message = {
                "id": "msg_gen",
                "type": "message",
                "role": "assistant",
                "model": "fake",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 5, "output_tokens": 0},
            }
            return sse_events(
                ("message_start", {"type": "message_start", "message": message}),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
            )
        if token is not None:
            delta = {"type": "text_delta", "text": token}
            return sse_events(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        return sse_events(
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": finish},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        )
    base = {"id": "chatcmpl-gen", "object": "chat.completion.chunk", "created": 1, "model": "f"}
    if start:
        delta: dict[str, Any] = {"role": "assistant", "content": ""}
        return sse_data({**base, "choices": [{"index": 0, "delta": delta}]}, done=False)
    if token is not None:
        delta = {"content": token}
        return sse_data({**base, "choices": [{"index": 0, "delta": delta}]}, done=False)
    usage = {"prompt_tokens": 5, "completion_tokens": finish, "total_tokens": 5 + (finish or 0)}
    return sse_data(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {**base, "choices": [], "usage": usage},
    )


def _generated_body(anthropic: bool, content: str, tokens: int) -> dict[str, Any]:
    if anthropic:
        return {
            "id": "msg_gen",
            "type": "message",
            "role": "assistant",
            "model": "fake",
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": tokens},
        }
    return {
        "id": "chatcmpl-gen",
        "object": "chat.completion",
        "created": 1,
        "model": "f",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


def split_text(text: str, pieces: int) -> list[str]:
    """``text`` in at most ``pieces`` non-empty consecutive parts (none for ``""``)."""
    if not text:
        return []
    size = -(-len(text) // max(pieces, 1))
    return [text[i : i + size] for i in range(0, len(text), size)]


def openai_sse_of(completion: dict[str, Any], *, pieces: int = 3, usage: bool = True) -> list[str]:
    """The event stream OpenAI sends for ``completion``: a role chunk, reasoning, content or
    refusal and each tool call in ``pieces`` chunks (a call's id and name first, its
    arguments after), the finish reason, then (``usage``) a usage chunk with no choices."""
    choice = completion["choices"][0]
    message = choice["message"]
    base = {key: completion[key] for key in ("id", "created", "model") if key in completion}
    base["object"] = "chat.completion.chunk"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    for part in split_text(message.get("reasoning_content") or "", pieces):
        chunks.append(chunk({"reasoning_content": part}))
    for part in split_text(message.get("content") or "", pieces):
        chunks.append(chunk({"content": part}))
    if not message.get("content"):
        for part in split_text(message.get("refusal") or "", pieces):
            chunks.append(chunk({"refusal": part}))
    for index, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        head = {"name": function["name"], "arguments": ""}
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {"index": index, "id": call["id"], "type": "function", "function": head}
                    ]
                }
            )
        )
        for part in split_text(function["arguments"], pieces):
            chunks.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
            )
    chunks.append(chunk({}, choice["finish_reason"]))
    if usage and completion.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return sse_data(*chunks)


def anthropic_sse_of(message: dict[str, Any], *, pieces: int = 3) -> list[str]:
    """The event stream the Messages API sends for ``message``: ``message_start`` with the
    input usage, each block's start, deltas in ``pieces`` and stop, ``message_delta`` with the
    stop reason and output usage, ``message_stop``."""
    usage = message.get("usage")
    start = {**message, "content": [], "stop_reason": None}
    if usage is not None:
        start["usage"] = {**usage, "output_tokens": min(usage.get("output_tokens", 0), 1)}
    pairs: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        deltas: list[dict[str, Any]] = []
        if kind == "text":
            first: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in split_text(block["text"], pieces)]
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in split_text(block["thinking"], pieces)
            ]
            if block.get("signature"):
                deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif kind == "tool_use":
            first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in split_text(json.dumps(block["input"]), pieces)
            ]
        elif kind == "redacted_thinking":
            first = dict(block)
        else:
            raise ValueError(f"no stream form for a {kind!r} block")
        pairs.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": first},
            )
        )
        pairs.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        pairs.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    end: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": message.get("stop_reason"), "stop_sequence": None},
    }
    if usage is not None:
        end["usage"] = {"output_tokens": usage.get("output_tokens", 0)}
    pairs.append(("message_delta", end))
    pairs.append(("message_stop", {"type": "message_stop"}))
    return sse_events(*pairs)


def _as_stream(request: Recorded, reply: Reply) -> Reply:
    """``reply`` as the stream a real API sends, when the request asked for one."""
    body = request.body if isinstance(request.body, dict) else {}
    if (
        not body.get("stream")
        or reply.as_json
        or reply.sse is not None
        or reply.status != 200
        or not isinstance(reply.body, dict)
    ):
        return reply
    if "choices" in reply.body:
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        sse = openai_sse_of(reply.body, pieces=reply.pieces, usage=usage)
    elif reply.body.get("type") == "message":
        sse = anthropic_sse_of(reply.body, pieces=reply.pieces)
    else:
        return reply
    return attrs.evolve(reply, body=None, sse=sse)


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
