"""The Anthropic Messages API on the official ``anthropic`` SDK.

Install with ``pip install 'trio-agents[anthropic]'``. The SDK's async client runs under trio
(httpx2 and anyio); this module never touches asyncio.

Rules (besides the error rules of :mod:`trio_agents.models`):

* The SDK client's lifecycle, retries (off), cancellation, timeouts and the JSON-instead-of-
  stream fallback are as for :class:`~trio_agents.models.openai.OpenAIModel`: every request
  is streamed underneath so that cancelling it stops the server generating, and
  :meth:`AnthropicModel.request` assembles the same message the non-streamed response would
  give. ``ANTHROPIC_BASE_URL`` in the environment counts as a ``base_url`` passed explicitly.
* Usage in a stream comes from ``message_start`` (input and cache counts) and
  ``message_delta`` (the final output count, and any input counts it repeats). A server that
  sends none gives ``Usage(requests=1)`` with zero token counts: unknown, not zero.
* Messages: system messages (and ``ModelRequest.system``) go to ``system``; text and images to
  ``text``/``image`` blocks; the model's thinking, text and tool calls to ``thinking``,
  ``text`` and ``tool_use`` blocks, in order (thinking with its signature, which the API
  requires back); tool results to ``tool_result`` blocks of a user turn. Consecutive turns of
  the same role are merged, as the API wants strict alternation.
* ``max_tokens`` is required by the API: a request without one uses the model's
  ``max_tokens`` (default 4096). ``temperature`` is sent in the body (the SDK has no argument
  for it any more; newer models may reject it); ``seed`` is not supported and not sent.
  ``ModelSettings.extra`` is merged into the body (e.g. ``{"thinking": {"type": "enabled",
  "budget_tokens": 1024}}``).
* ``cache_control`` marks prompt-cache breakpoints: ``"system"`` (the system prompt),
  ``"tools"`` (the last tool definition), ``"messages"`` (the last block of the last message).
* Usage: ``input_tokens`` (without cache), ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens`` map to input, cache read and cache write.
* Stop reasons: ``end_turn``, ``stop_sequence``, ``pause_turn`` → STOP; ``max_tokens``,
  ``model_context_window_exceeded`` → LENGTH; ``tool_use`` → TOOL_USE; ``refusal`` raises
  :class:`~trio_agents.ContentFiltered`. A stream that ends before ``message_stop`` raises
  :class:`~trio_agents.NetworkError`. ``redacted_thinking`` blocks are dropped.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    import anthropic
    import httpx2
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "trio_agents.models.anthropic needs the Anthropic SDK: pip install 'trio-agents[anthropic]'"
    ) from _exc

from .._errors import (
    AuthenticationError,
    ContentFiltered,
    InvalidArgumentError,
    ModelError,
    ModelTimeout,
    NetworkError,
)
from .._messages import (
    AssistantContent,
    AssistantMessage,
    ImageBlock,
    JSONValue,
    StopReason,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from .._models import (
    ModelRequest,
    OutputMode,
    StreamDone,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)
from . import check_model_requests_allowed
from ._common import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    ClientOwner,
    SSEReader,
    base_url_from,
    check_timeout,
    classify_status,
    deltas_of,
    error_fields,
    open_sse,
    timeout_error,
)

__all__ = ["AnthropicModel"]

_SDK_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError)

_PLACEHOLDER_KEY = "no-key-needed"
_ANTHROPIC_URL = "https://api.anthropic.com"
_CACHE_POINTS = frozenset({"system", "tools", "messages"})
_EPHEMERAL = {"type": "ephemeral"}

_STOP_REASONS = {
    "end_turn": StopReason.STOP,
    "stop_sequence": StopReason.STOP,
    "pause_turn": StopReason.STOP,
    "max_tokens": StopReason.LENGTH,
    "model_context_window_exceeded": StopReason.LENGTH,
    "tool_use": StopReason.TOOL_USE,
}


class AnthropicModel:
    """A model of the Anthropic Messages API (or a server that speaks it, e.g. llama.cpp).

    :param model_name: the model, e.g. ``"claude-haiku-4-5"``.
    :param base_url: the server (without ``/v1``); default ``ANTHROPIC_BASE_URL`` if set
        (treated exactly like a ``base_url`` argument), else Anthropic's.
    :param api_key: the key; default ``ANTHROPIC_API_KEY``. A server given by ``base_url`` (or
        ``ANTHROPIC_BASE_URL``) may go without one.
    :param read_timeout: seconds the server may stay silent, before its first event or between
        two events (``None``: no limit); default 120.
    :param connect_timeout: seconds to establish a connection (``None``: no limit); default 10.
    :param max_tokens: output limit of requests whose settings give none.
    :param cache_control: where to put prompt-cache breakpoints: any of ``"system"``,
        ``"tools"``, ``"messages"``.
    :param default_headers: extra headers for every request (e.g. ``anthropic-beta``).

    Use ``async with model:`` to keep one connection pool for many requests.
    """

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        max_tokens: int = 4096,
        cache_control: Collection[str] = (),
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise InvalidArgumentError(f"model_name must be a non-empty str, got {model_name!r}")
        base_url = base_url_from(base_url, "ANTHROPIC_BASE_URL")
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidArgumentError(f"max_tokens must be an int >= 1, got {max_tokens!r}")
        points = {cache_control} if isinstance(cache_control, str) else set(cache_control)
        if not points <= _CACHE_POINTS:
            raise InvalidArgumentError(
                f"cache_control may hold 'system', 'tools', 'messages'; got "
                f"{sorted(points - _CACHE_POINTS)}"
            )
        self._name = model_name
        self._base_url = base_url
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        if key is None and base_url is not None:
            key = _PLACEHOLDER_KEY
        self._api_key = key
        self._timeouts = {
            "read_timeout": check_timeout(read_timeout, "read_timeout"),
            "connect_timeout": check_timeout(connect_timeout, "connect_timeout"),
        }
        self._max_tokens = max_tokens
        self._cache = frozenset(points)
        self._default_headers = dict(default_headers or {})
        self._id = f"anthropic:{model_name}" + (f"@{base_url}" if base_url is not None else "")
        self._clients: ClientOwner[anthropic.AsyncAnthropic] = ClientOwner(
            self._make_client, f"AnthropicModel({self._id!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=self._base_url or _ANTHROPIC_URL,
            timeout=anthropic.Timeout(
                self._timeouts["read_timeout"], connect=self._timeouts["connect_timeout"]
            ),
            max_retries=0,
            default_headers=self._default_headers or None,
        )

    async def __aenter__(self) -> AnthropicModel:
        await self._clients.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._clients.close()

    # ------------------------------------------------------------------ Model protocol

    @property
    def model_id(self) -> str:
        """``"anthropic:NAME"``, with ``"@BASE_URL"`` when a ``base_url`` was given."""
        return self._id

    @property
    def model_name(self) -> str:
        """The model name sent to the server."""
        return self._name

    @property
    def base_url(self) -> str | None:
        """The server given at construction or by ``ANTHROPIC_BASE_URL``, if any."""
        return self._base_url

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Send one Messages request and return the response.

        The response is streamed underneath (so cancelling reaches the server) and assembled
        into the message a non-streamed request would return.
        """
        async with self._stream(request) as events:
            async for event in events:
                if isinstance(event, StreamDone):
                    return event.message
        raise ModelError(f"{self._id}: the stream ended without a message")  # pragma: no cover

    def _map_error(self, exc: BaseException) -> ModelError:
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return timeout_error(
                exc,
                model_id=self._id,
                server=self._base_url or _ANTHROPIC_URL,
                timeouts=self._timeouts,
            )
        return map_anthropic_error(exc)

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """Stream one Messages response: text, thinking and tool-input deltas, then the message."""
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        params = self._prepare(request)
        params["stream"] = True
        async with (
            self._clients.client() as client,
            open_sse(
                client.messages.with_streaming_response.create(**params),
                self._map_error,
                _SDK_ERRORS,
            ) as events,
        ):
            yield _EventStream(events, self._id, self._map_error, self._parse_json)

    # ------------------------------------------------------------------ building

    def _prepare(self, request: ModelRequest) -> dict[str, Any]:
        check_model_requests_allowed(self._id)
        if self._api_key is None:
            raise AuthenticationError(
                f"{self._id}: no API key; pass api_key= or set ANTHROPIC_API_KEY"
            )
        return self.build_params(request)

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of ``messages.create`` for ``request`` (no I/O)."""
        system_parts = [request.system] if request.system else []
        system_parts += [m.content for m in request.messages if isinstance(m, SystemMessage)]
        messages = build_messages(request)
        if "messages" in self._cache and messages:
            last = messages[-1]["content"]
            if last:
                last[-1] = {**last[-1], "cache_control": _EPHEMERAL}
        settings = request.settings
        params: dict[str, Any] = {
            "model": self._name,
            "max_tokens": (
                settings.max_tokens if settings.max_tokens is not None else self._max_tokens
            ),
            "messages": messages,
        }
        if system_parts:
            system = "\n\n".join(system_parts)
            if "system" in self._cache:
                params["system"] = [{"type": "text", "text": system, "cache_control": _EPHEMERAL}]
            else:
                params["system"] = system
        if request.tools:
            tools: list[dict[str, Any]] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
            if "tools" in self._cache:
                tools[-1] = {**tools[-1], "cache_control": _EPHEMERAL}
            params["tools"] = tools
        if request.output is not None and request.output.mode is OutputMode.TOOL:
            # Structured output through the final-result tool: the model must call a tool.
            params["tool_choice"] = {"type": "any"}
        # The SDK no longer takes sampling arguments (newer models reject them); servers
        # that accept a temperature get it in the body.
        body: dict[str, Any] = {}
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        body.update(settings.extra)
        if body:
            params["extra_body"] = body
        return params

    # ------------------------------------------------------------------ parsing

    def _parse_json(self, body: object) -> AssistantMessage:
        if not isinstance(body, dict):
            raise ModelError(f"{self._id}: unexpected JSON response {str(body)[:200]!r}")
        return self._parse_message(anthropic.types.Message.model_construct(**body))

    def _parse_message(self, response: Any) -> AssistantMessage:
        content: list[AssistantContent] = []
        for block in getattr(response, "content", None) or ():
            kind = getattr(block, "type", None)
            if kind == "text":
                if block.text:  # as in a stream, an empty text block carries nothing
                    content.append(TextBlock(block.text))
            elif kind == "thinking":
                content.append(ThinkingBlock(block.thinking, getattr(block, "signature", None)))
            elif kind == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {}
                raw = None if isinstance(block.input, dict) else json.dumps(block.input)
                content.append(
                    ToolCallBlock(
                        id=block.id, name=block.name, arguments=arguments, raw_arguments=raw
                    )
                )
        return AssistantMessage(
            content=content,
            usage=parse_usage(getattr(response, "usage", None)),
            stop_reason=stop_reason(getattr(response, "stop_reason", None), self._id),
            model=self._id,
        )

    def __repr__(self) -> str:
        return f"AnthropicModel({self._name!r}, base_url={self._base_url!r})"


# --------------------------------------------------------------------------- helpers


def _user_blocks(message: UserMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            blocks.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            if block.url is not None:
                source: dict[str, Any] = {"type": "url", "url": block.url}
            else:
                source = {"type": "base64", "media_type": block.media_type, "data": block.data}
            blocks.append({"type": "image", "source": source})
    return blocks


def _assistant_blocks(message: AssistantMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, ThinkingBlock):
            if block.signature is None:
                continue  # the API rejects thinking without its signature
            blocks.append(
                {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
            )
        elif isinstance(block, TextBlock):
            if block.text:
                blocks.append({"type": "text", "text": block.text})
        elif isinstance(block, ToolCallBlock):
            arguments: JSONValue = block.arguments
            if block.raw_arguments is not None:
                arguments = {}
            blocks.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": arguments}
            )
    return blocks


def build_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The ``messages`` list for ``request`` (system messages excluded, same roles merged)."""
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for message in request.messages:
        if isinstance(message, UserMessage):
            add("user", _user_blocks(message))
        elif isinstance(message, AssistantMessage):
            add("assistant", _assistant_blocks(message))
        elif isinstance(message, ToolResultMessage):
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": result.tool_call_id,
                        "content": result.content,
                        "is_error": result.is_error,
                    }
                    for result in message.results
                ],
            )
    return out


def parse_usage(usage: Any) -> Usage:
    """Our :class:`Usage` from the SDK's ``Usage`` (``None``: one request, no tokens)."""
    if usage is None:
        return Usage(requests=1)
    return Usage(
        requests=1,
        input_tokens=int(getattr(usage, "input_tokens", 0) or 0),
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        cache_read_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
        cache_write_tokens=int(getattr(usage, "cache_creation_input_tokens", 0) or 0),
    )


def stop_reason(reason: str | None, model_id: str) -> StopReason:
    """Our :class:`StopReason` for Anthropic's ``stop_reason``; ``refusal`` raises."""
    if reason == "refusal":
        raise ContentFiltered(f"{model_id}: the model refused (stop_reason 'refusal')")
    return _STOP_REASONS.get(reason or "end_turn", StopReason.STOP)


def map_anthropic_error(exc: BaseException) -> ModelError:
    """The library error for an ``anthropic`` SDK (or transport) error."""
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return ModelTimeout(f"anthropic: the request timed out ({exc})")
    if isinstance(exc, anthropic.APIConnectionError):
        return NetworkError(f"anthropic: connection error: {exc.__cause__ or exc}")
    if isinstance(exc, httpx2.TransportError):
        return NetworkError(f"anthropic: connection error: {type(exc).__name__}: {exc}")
    if isinstance(exc, anthropic.APIStatusError):
        error_type, code = error_fields(exc.body)
        message = exc.message
        if isinstance(exc.body, Mapping) and isinstance(exc.body.get("error"), Mapping):
            message = str(exc.body["error"].get("message") or message)
        status = exc.status_code if exc.status_code >= 400 else None  # error event in a stream
        return classify_status(
            status,
            message,
            error_type=error_type,
            code=code,
            headers=exc.response.headers,
            provider="anthropic",
        )
    if isinstance(exc, anthropic.APIResponseValidationError):
        return ModelError(f"anthropic: unexpected response: {exc}")
    if isinstance(exc, anthropic.APIError):
        error_type, code = error_fields(exc.body)
        return classify_status(
            None, exc.message, error_type=error_type, code=code, provider="anthropic"
        )
    if isinstance(exc, anthropic.AnthropicError) and "api_key" in str(exc).lower():
        return AuthenticationError(f"anthropic: {exc}")
    return ModelError(f"anthropic: {type(exc).__name__}: {exc}")


class _Block:
    __slots__ = ("id", "kind", "name", "parts", "signature")

    def __init__(self, kind: str, id: str | None = None, name: str | None = None) -> None:
        self.kind = kind
        self.id = id
        self.name = name
        self.parts: list[str] = []
        self.signature: str | None = None


class _EventStream:
    """Turns the SSE events into :data:`StreamEvent` values (not an async generator, so an
    unfinished stream leaves nothing to finalise)."""

    def __init__(
        self,
        events: SSEReader,
        model_id: str,
        map_error: Callable[[BaseException], ModelError],
        parse_json: Callable[[object], AssistantMessage],
    ) -> None:
        self._events = events
        self._model_id = model_id
        self._map_error = map_error
        self._parse_json = parse_json
        self._pending: collections.deque[StreamEvent] = collections.deque()
        self._done = False
        self._stopped = False
        self._blocks: dict[int, _Block] = {}
        self._tool_index: dict[int, int] = {}
        self._usage: dict[str, int] = {}
        self._stop_reason: str | None = None

    def __aiter__(self) -> _EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            try:
                name, data = await self._events.__anext__()
            except StopAsyncIteration:
                self._done = True
                if self._events.json_body is not None:
                    whole = self._parse_json(self._events.json_body)
                    self._pending.extend(deltas_of(whole))
                else:
                    whole = self._finish_message()
                self._pending.append(StreamDone(whole))
                break
            except _SDK_ERRORS as exc:
                self._done = True
                raise self._map_error(exc) from exc
            if name == "ping" or not data:
                continue
            try:
                event = json.loads(data)
            except ValueError as exc:
                self._done = True
                raise ModelError(
                    f"{self._model_id}: undecodable stream event {data[:200]!r}"
                ) from exc
            if not isinstance(event, dict):
                continue
            if name == "error" or event.get("type") == "error":
                self._done = True
                error_type, code = error_fields(event)
                error = event.get("error")
                message = str(error.get("message") if isinstance(error, dict) else error)
                raise classify_status(
                    None, message, error_type=error_type, code=code, provider="anthropic"
                )
            self._feed(event)
        return self._pending.popleft()

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for field in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = usage.get(field)
            if value is not None:
                self._usage[field] = int(value)

    def _feed(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        index = int(event.get("index", 0) or 0)
        if kind == "message_start":
            self._take_usage((event.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            btype = str(block.get("type", ""))
            entry = _Block(btype, block.get("id"), block.get("name"))
            self._blocks[index] = entry
            if btype == "text" and block.get("text"):
                entry.parts.append(block["text"])
                self._pending.append(TextDelta(block["text"]))
            elif btype == "thinking":
                if block.get("thinking"):
                    entry.parts.append(block["thinking"])
                    self._pending.append(ThinkingDelta(block["thinking"]))
                if block.get("signature"):
                    entry.signature = block["signature"]
            elif btype == "tool_use":
                position = len(self._tool_index)
                self._tool_index[index] = position
                self._pending.append(ToolCallDelta(index=position, id=entry.id, name=entry.name))
        elif kind == "content_block_delta":
            entry = self._blocks.get(index) or _Block("text")
            self._blocks[index] = entry
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                entry.parts.append(delta.get("text", ""))
                self._pending.append(TextDelta(delta.get("text", "")))
            elif dtype == "thinking_delta":
                entry.parts.append(delta.get("thinking", ""))
                self._pending.append(ThinkingDelta(delta.get("thinking", "")))
            elif dtype == "signature_delta":
                entry.signature = (entry.signature or "") + delta.get("signature", "")
            elif dtype == "input_json_delta":
                fragment = delta.get("partial_json", "")
                entry.parts.append(fragment)
                position = self._tool_index.get(index, index)
                self._pending.append(ToolCallDelta(index=position, arguments=fragment))
        elif kind == "message_delta":
            self._stop_reason = (event.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._take_usage(event.get("usage"))
        elif kind == "message_stop":
            self._stopped = True

    def _finish_message(self) -> AssistantMessage:
        if not self._stopped:
            raise NetworkError(
                f"{self._model_id}: the stream ended before the model finished (no message_stop)"
            )
        content: list[AssistantContent] = []
        for index in sorted(self._blocks):
            block = self._blocks[index]
            text = "".join(block.parts)
            if block.kind == "text":
                if text:
                    content.append(TextBlock(text))
            elif block.kind == "thinking":
                content.append(ThinkingBlock(text, block.signature))
            elif block.kind == "tool_use":
                content.append(_tool_use(block.id, block.name, text))
        u = self._usage
        return AssistantMessage(
            content=content,
            usage=Usage(
                requests=1,
                input_tokens=u.get("input_tokens", 0),
                output_tokens=u.get("output_tokens", 0),
                cache_read_tokens=u.get("cache_read_input_tokens", 0),
                cache_write_tokens=u.get("cache_creation_input_tokens", 0),
            ),
            stop_reason=stop_reason(self._stop_reason, self._model_id),
            model=self._model_id,
        )


def _tool_use(call_id: str | None, name: str | None, text: str) -> ToolCallBlock:
    try:
        decoded = json.loads(text) if text.strip() else {}
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        return ToolCallBlock(id=call_id or "", name=name or "", arguments=decoded)
    return ToolCallBlock(id=call_id or "", name=name or "", raw_arguments=text)
