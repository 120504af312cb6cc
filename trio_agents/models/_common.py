"""What the providers share: the SDK client's lifecycle and HTTP error classification.

Error rules (both providers; the SDK's own retries are always off):

* 429 → :class:`~trio_agents.ModelThrottled` with ``retry_after`` from ``retry-after-ms``
  (milliseconds) or ``retry-after`` (seconds or an HTTP date); OpenAI's
  ``insufficient_quota`` 429 is a billing problem, not a rate, so it is a
  :class:`~trio_agents.BadRequestError`.
* 500 and every other 5xx, 503, 529 → :class:`~trio_agents.ModelOverloaded` (retryable), with
  ``retry_after`` when the server sent one.
* a connection error → :class:`~trio_agents.NetworkError`; a connect or read timeout →
  :class:`~trio_agents.ModelTimeout` (a ``NetworkError``) naming the server and the timeout
  that fired; both retryable.
* a 4xx whose error says the prompt does not fit → :class:`~trio_agents.ContextWindowExceeded`.
* a 4xx whose error says a content filter fired → :class:`~trio_agents.ContentFiltered`.
* 401, 403 → :class:`~trio_agents.AuthenticationError`; any other 4xx →
  :class:`~trio_agents.BadRequestError`.
* an error event inside a stream is classified by its error ``type``/``code`` the same way.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import trio

from .._errors import (
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidArgumentError,
    ModelError,
    ModelOverloaded,
    ModelThrottled,
    ModelTimeout,
    UsageError,
)
from .._messages import AssistantMessage, TextBlock, ThinkingBlock, ToolCallBlock
from .._models import StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta

ClientT = TypeVar("ClientT")

DEFAULT_CONNECT_TIMEOUT = 10.0
"""Seconds to open a connection: a reachable server accepts in milliseconds; ten seconds
leaves room for DNS, TLS and a slow network without hiding a dead host for long."""

DEFAULT_READ_TIMEOUT = 120.0
"""Seconds the server may stay silent (between two reads of the response). Responses are
streamed, so this bounds the wait for the first token (prompt processing: long prompts on a
CPU server, hidden reasoning) and every gap after it, not the whole response. Two minutes
covers prompt processing of a long prompt on a small CPU server; a model that thinks longer
before its first token needs a larger ``read_timeout``."""

_TIMEOUT_KINDS = {
    # httpx's timeout classes, by name (this module does not import the SDKs' httpx).
    "ConnectTimeout": ("could not connect to", "connect_timeout"),
    "PoolTimeout": ("waited for a free connection to", "read_timeout"),
    "WriteTimeout": ("could not send the request to", "read_timeout"),
    "ReadTimeout": ("got no answer from", "read_timeout"),
}


def base_url_from(base_url: str | None, env_var: str) -> str | None:
    """``base_url``, else the environment variable ``env_var`` (unset or empty: ``None``).

    A URL from the environment is treated exactly like one passed explicitly, and is
    validated the same way, naming the variable when it is bad.
    """
    source = "base_url"
    if base_url is None:
        base_url = os.environ.get(env_var) or None
        source = env_var
        if base_url is None:
            return None
    if not (isinstance(base_url, str) and base_url.startswith(("http://", "https://"))):
        raise InvalidArgumentError(
            f"{source} must be an http:// or https:// URL or None, got {base_url!r}"
        )
    return base_url


def deltas_of(message: AssistantMessage) -> list[StreamEvent]:
    """The deltas a stream would have sent for ``message``, one per block (used when a
    server answers a stream request with one JSON body)."""
    events: list[StreamEvent] = []
    position = 0
    for block in message.content:
        if isinstance(block, ThinkingBlock):
            events.append(ThinkingDelta(block.thinking))
        elif isinstance(block, TextBlock):
            events.append(TextDelta(block.text))
        elif isinstance(block, ToolCallBlock):
            arguments = (
                block.raw_arguments
                if block.raw_arguments is not None
                else json.dumps(block.arguments)
            )
            events.append(
                ToolCallDelta(index=position, id=block.id, name=block.name, arguments=arguments)
            )
            position += 1
    return events


def timeout_error(
    exc: BaseException,
    *,
    model_id: str,
    server: str,
    timeouts: Mapping[str, float | None],
) -> ModelTimeout:
    """A :class:`~trio_agents.ModelTimeout` for the SDK's or httpx's timeout ``exc``.

    It names the model, the server and the timeout that fired (``connect_timeout`` or
    ``read_timeout``) with its value, so a hung server is told apart from a slow network.
    """
    cause: BaseException | None = exc
    what, argument = "got no answer from", "read_timeout"
    while cause is not None:
        kind = _TIMEOUT_KINDS.get(type(cause).__name__)
        if kind is not None:
            what, argument = kind
            break
        cause = cause.__cause__ or cause.__context__
    seconds = timeouts.get(argument)
    return ModelTimeout(
        f"{model_id}: {what} {server} within {argument}={seconds} s; the error is retryable; "
        f"pass a larger {argument}= if the server is just slow"
    )


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "exceed_context_size",
    "context length",
    "context_length",
    "context window",
    "context size",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input is too long",
)
_FILTER_MARKERS = (
    "content_filter",
    "content_policy",
    "content policy",
    "content management policy",
    "safety system",
    "responsibleaipolicyviolation",
)


def retry_after_from_headers(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            pass
        else:
            if value >= 0:
                return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw.strip() else None
        if parsed is None:
            return None
        return max(parsed.timestamp() - time.time(), 0.0)
    return value if value >= 0 else None


def _text_of(*parts: object) -> str:
    return " ".join(str(p) for p in parts if p).lower()


def classify_status(
    status: int | None,
    message: str,
    *,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    provider: str,
) -> ModelError:
    """The library error for an HTTP error (or a stream error event when ``status`` is None)."""
    text = _text_of(message, error_type, code)
    detail = f"{provider}: {message}" if message else f"{provider}: HTTP {status}"
    retry_after = retry_after_from_headers(headers)
    if status == 429 or error_type in {"rate_limit_error", "rate_limit_exceeded"}:
        if code == "insufficient_quota" or error_type == "insufficient_quota":
            return BadRequestError(detail)
        return ModelThrottled(detail, retry_after=retry_after)
    if (status is not None and status >= 500) or error_type in {
        "overloaded_error",
        "api_error",
        "server_error",
        "unavailable_error",
    }:
        return ModelOverloaded(detail, retry_after=retry_after)
    if any(marker in text for marker in _CONTEXT_MARKERS):
        return ContextWindowExceeded(detail)
    if any(marker in text for marker in _FILTER_MARKERS):
        return ContentFiltered(detail)
    if status in {401, 403} or error_type in {"authentication_error", "permission_error"}:
        return AuthenticationError(detail)
    return BadRequestError(detail)


def error_fields(body: object) -> tuple[str | None, str | None]:
    """``(type, code)`` from an error body (``{"error": {...}}`` or the inner object)."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if not isinstance(body, Mapping):
        return None, None
    error_type = body.get("type")
    code = body.get("code")
    return (
        str(error_type) if error_type is not None else None,
        str(code) if code is not None else None,
    )


class ClientOwner(Generic[ClientT]):
    """Opens the SDK client with ``async with``, once for an opened model or per request.

    ``async with model:`` keeps one client (one connection pool) for every request until the
    block ends; a model used without it opens and closes a client around each request. Either
    way the client is closed by ``async with`` on the running trio loop, never by its
    asyncio-only ``__del__``.
    """

    def __init__(self, factory: Callable[[], ClientT], owner: str) -> None:
        self._factory = factory
        self._owner = owner
        self._shared: ClientT | None = None
        self._opened = False
        self._closed = False

    async def open(self) -> None:
        if self._opened:
            raise UsageError(f"{self._owner} is already open; use 'async with model:' once")
        if self._closed:
            raise UsageError(f"{self._owner} was closed; make a new model")
        client: Any = self._factory()
        self._shared = await client.__aenter__()
        self._opened = True

    async def close(self) -> None:
        shared, self._shared = self._shared, None
        self._closed = self._opened
        self._opened = False
        if shared is not None:
            with trio.CancelScope(shield=True):
                await shared.__aexit__(None, None, None)  # type: ignore[attr-defined]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[ClientT]:
        if self._shared is not None:
            yield self._shared
            return
        if self._closed:
            raise UsageError(f"{self._owner} was closed; make a new model")
        client: Any = self._factory()
        async with client as opened:
            yield opened


class SSEReader:
    """Server-sent events from a byte iterator, as ``(event, data)`` pairs.

    Not an async generator (nothing to finalise when abandoned). An event without an
    ``event:`` field has event ``""``; comment lines and ``id:``/``retry:`` are ignored; a
    partial event at the end of the body is dropped, as the SSE specification says.
    """

    def __init__(self, chunks: AsyncIterator[bytes], json_body: object = None) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._eof = json_body is not None
        self._events: list[tuple[str, str]] = []
        self.json_body = json_body
        """The decoded body when the server answered with JSON instead of an event stream
        (some proxies ignore ``stream: true``); the reader then yields no events."""

    @property
    def exhausted(self) -> bool:
        """Whether the body was read to its end."""
        return self._eof

    def __aiter__(self) -> SSEReader:
        return self

    async def __anext__(self) -> tuple[str, str]:
        while not self._events:
            if self._eof:
                raise StopAsyncIteration
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._eof = True
                continue
            buffer = self._buffer + chunk
            # A "\r" at the end may be the first half of a "\r\n" split across chunks.
            keep = b"\r" if buffer.endswith(b"\r") else b""
            work = (buffer[:-1] if keep else buffer).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            while b"\n\n" in work:
                raw, _, work = work.partition(b"\n\n")
                event = self._parse(raw.decode("utf-8", errors="replace"))
                if event is not None:
                    self._events.append(event)
            self._buffer = work + keep
        return self._events.pop(0)

    @staticmethod
    def _parse(raw: str) -> tuple[str, str] | None:
        name = ""
        data: list[str] = []
        for line in raw.split("\n"):
            if not line or line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if not data and not name:
            return None
        return name, "\n".join(data)


@asynccontextmanager
async def open_sse(
    response_cm: Any,
    map_error: Callable[[BaseException], ModelError],
    errors: tuple[type[BaseException], ...],
) -> AsyncIterator[SSEReader]:
    """Enter an SDK ``with_streaming_response`` call and read its body as SSE.

    The SDKs' own stream classes nest async generators without ``aclosing`` (a half-read
    stream leaves them for the garbage collector, and trio warns); this reads the HTTP body
    through httpx's ``aiter_bytes``, which closes its chain properly, and closes it
    explicitly. Cleanup is shielded (bounded to 5 s) so it also runs on cancellation.

    A server that answers with a JSON body instead of an event stream gets its body read
    whole and exposed as :attr:`SSEReader.json_body`.
    """
    try:
        response = await response_cm.__aenter__()
    except errors as exc:
        raise map_error(exc) from exc
    http_response = response.http_response
    if "json" in http_response.headers.get("content-type", ""):
        async with _exiting(response_cm):
            try:
                body = await http_response.aread()
            except errors as exc:
                raise map_error(exc) from exc
            try:
                decoded = json.loads(body)
            except ValueError as exc:
                raise ModelError(f"undecodable JSON response: {body[:200]!r}") from exc
            yield SSEReader(_no_chunks(), decoded)
        return
    chunks = http_response.aiter_bytes()
    reader = SSEReader(chunks)
    try:
        yield reader
    finally:
        await _close_sse(response_cm, http_response, chunks, exhausted=reader.exhausted)


@asynccontextmanager
async def _exiting(response_cm: Any) -> AsyncIterator[None]:
    try:
        yield
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await response_cm.__aexit__(None, None, None)


class _NoChunks:
    def __aiter__(self) -> _NoChunks:
        return self

    async def __anext__(self) -> bytes:
        raise StopAsyncIteration


def _no_chunks() -> AsyncIterator[bytes]:
    return _NoChunks()


async def _close_sse(response_cm: Any, http_response: Any, chunks: Any, *, exhausted: bool) -> None:
    with trio.CancelScope(shield=True), trio.move_on_after(5):
        try:
            if not exhausted:
                # httpx iterates the pool's byte stream without aclosing: closing only
                # the outer generators would leave the inner one to the garbage
                # collector. Close the response first, then pull until the closed
                # connection ends every generator of the chain.
                await http_response.aclose()
                with contextlib.suppress(Exception):
                    for _ in range(10_000):
                        await chunks.__anext__()
            await chunks.aclose()
        finally:
            await response_cm.__aexit__(None, None, None)


def check_timeout(value: float | None, argument: str) -> float | None:
    """Validate an optional positive timeout."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(f"{argument} must be a number > 0 or None, got {value!r}")
    return float(value)
