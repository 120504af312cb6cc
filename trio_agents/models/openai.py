"""OpenAI chat completions, and any OpenAI-compatible server, on the official ``openai`` SDK.

Install with ``pip install 'trio-agents[openai]'``. The SDK's async client runs under trio
(httpx2 and anyio); this module never touches asyncio.

Rules (besides the error rules of :mod:`trio_agents.models`):

* The SDK client is opened and closed with ``async with``: once for the whole block when the
  model is used as ``async with model:``, else once around each request. The SDK's retries
  are off (``max_retries=0``): the agent's :class:`~trio_agents.RetryPolicy` and the tree's
  :class:`~trio_agents.RateLimiter` are the only retry and rate control.
* Every request is streamed underneath: :meth:`OpenAIModel.request` reads the event stream
  and assembles the same message (content, tool calls, usage, stop reason) the non-streamed
  response would give. Cancelling the calling scope closes the connection at once, and
  because the server is writing a stream it notices the closed connection and stops
  generating (a server answering a non-streamed request keeps generating, and billing,
  until it is done). The model stays usable. A server that ignores ``stream: true`` and
  answers with one JSON body is understood too.
* Usage is requested in the stream (``stream_options={"include_usage": true}``). A server
  that sends no usage in its stream gives ``Usage(requests=1)`` with zero token counts: the
  counts are unknown, not zero, and token budgets cannot see them.
* Timeouts: ``connect_timeout`` (default 10 s) to open a connection and ``read_timeout``
  (default 120 s) for the server to send anything, the first token included; a server that
  accepts the connection and stays silent raises a retryable
  :class:`~trio_agents.ModelTimeout` naming the server and the timeout.
* ``OPENAI_BASE_URL`` in the environment counts as a ``base_url`` passed explicitly.
* ``max_tokens`` is sent as ``max_completion_tokens`` to OpenAI itself and as ``max_tokens``
  to a server given by ``base_url`` (what compatible servers understand); override with
  ``max_tokens_parameter``. ``ModelSettings.extra`` is merged into the request body.
* Usage: ``input_tokens`` is the prompt minus its cached part, ``cache_read_tokens`` the cached
  part; output includes reasoning tokens.
* Stop reasons: ``stop`` → STOP, ``length`` → LENGTH, ``tool_calls``/``function_call`` →
  TOOL_USE (also whenever the message has tool calls); ``content_filter`` raises
  :class:`~trio_agents.ContentFiltered`. A stream that ends before a finish reason raises
  :class:`~trio_agents.NetworkError`.
* Tool-call arguments that are not a JSON object arrive as
  :attr:`ToolCallBlock.raw_arguments <trio_agents.ToolCallBlock.raw_arguments>` with empty
  ``arguments``. ``reasoning_content`` (llama.cpp, vLLM, DeepSeek) becomes a
  :class:`~trio_agents.ThinkingBlock`; thinking is not sent back.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

try:
    import httpx2
    import openai
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "trio_agents.models.openai needs the OpenAI SDK: pip install 'trio-agents[openai]'"
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

__all__ = ["OpenAIModel"]

_SDK_ERRORS = (openai.OpenAIError, httpx2.HTTPError)

_PLACEHOLDER_KEY = "no-key-needed"
_OPENAI_URL = "https://api.openai.com/v1"

_STOP_REASONS = {
    "stop": StopReason.STOP,
    "length": StopReason.LENGTH,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
}


class OpenAIModel:
    """A chat-completions model: OpenAI's, or any OpenAI-compatible server's.

    :param model_name: the model, e.g. ``"gpt-4o-mini"``.
    :param base_url: the server (e.g. ``"http://127.0.0.1:8080/v1"``); default
        ``OPENAI_BASE_URL`` if set (treated exactly like a ``base_url`` argument), else OpenAI's.
    :param api_key: the key; default ``OPENAI_API_KEY``. A server given by ``base_url`` (or
        ``OPENAI_BASE_URL``) may go without one.
    :param read_timeout: seconds the server may stay silent, before its first token or between
        two pieces of the stream (``None``: no limit); default 120. Prefer the agent's
        ``model_timeout`` for deadlines; this catches a server that hangs.
    :param connect_timeout: seconds to establish a connection (``None``: no limit); default 10.
    :param max_tokens_parameter: the body field that carries ``max_tokens`` (see the rules).
    :param default_headers: extra headers for every request.
    :param organization: OpenAI organization id.
    :param project: OpenAI project id.

    Use ``async with model:`` to keep one connection pool for many requests.
    """

    native_output = True
    """Structured output goes in ``response_format`` (a JSON schema), which OpenAI and
    llama.cpp's server honour."""

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        read_timeout: float | None = DEFAULT_READ_TIMEOUT,
        connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
        max_tokens_parameter: Literal["max_tokens", "max_completion_tokens"] | None = None,
        default_headers: Mapping[str, str] | None = None,
        organization: str | None = None,
        project: str | None = None,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise InvalidArgumentError(f"model_name must be a non-empty str, got {model_name!r}")
        base_url = base_url_from(base_url, "OPENAI_BASE_URL")
        if max_tokens_parameter not in (None, "max_tokens", "max_completion_tokens"):
            raise InvalidArgumentError(
                "max_tokens_parameter must be 'max_tokens', 'max_completion_tokens' or None, "
                f"got {max_tokens_parameter!r}"
            )
        self._name = model_name
        self._base_url = base_url
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if key is None and base_url is not None:
            key = _PLACEHOLDER_KEY
        self._api_key = key
        self._timeouts = {
            "read_timeout": check_timeout(read_timeout, "read_timeout"),
            "connect_timeout": check_timeout(connect_timeout, "connect_timeout"),
        }
        self._max_tokens_parameter = max_tokens_parameter or (
            "max_tokens" if base_url is not None else "max_completion_tokens"
        )
        self._default_headers = dict(default_headers or {})
        self._organization = organization
        self._project = project
        self._id = f"openai:{model_name}" + (f"@{base_url}" if base_url is not None else "")
        self._clients: ClientOwner[openai.AsyncOpenAI] = ClientOwner(
            self._make_client, f"OpenAIModel({self._id!r})"
        )

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self) -> openai.AsyncOpenAI:
        timeout = openai.Timeout(
            self._timeouts["read_timeout"], connect=self._timeouts["connect_timeout"]
        )
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url or _OPENAI_URL,
            organization=self._organization,
            project=self._project,
            timeout=timeout,
            max_retries=0,
            default_headers=self._default_headers or None,
        )

    async def __aenter__(self) -> OpenAIModel:
        await self._clients.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._clients.close()

    # ------------------------------------------------------------------ Model protocol

    @property
    def model_id(self) -> str:
        """``"openai:NAME"``, with ``"@BASE_URL"`` when a ``base_url`` was given."""
        return self._id

    @property
    def model_name(self) -> str:
        """The model name sent to the server."""
        return self._name

    @property
    def base_url(self) -> str | None:
        """The server given at construction or by ``OPENAI_BASE_URL``, if any."""
        return self._base_url

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Send one chat completion request and return the response.

        The response is streamed underneath (so cancelling reaches the server) and assembled
        into the message a non-streamed request would return.
        """
        async with self._stream(request) as events:
            async for event in events:
                if isinstance(event, StreamDone):
                    return event.message
        raise ModelError(f"{self._id}: the stream ended without a message")  # pragma: no cover

    def _map_error(self, exc: BaseException) -> ModelError:
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            return timeout_error(
                exc,
                model_id=self._id,
                server=self._base_url or _OPENAI_URL,
                timeouts=self._timeouts,
            )
        return map_openai_error(exc)

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """Stream one chat completion: text, thinking and tool-call deltas, then the message."""
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        params = self._prepare(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        async with (
            self._clients.client() as client,
            open_sse(
                client.chat.completions.with_streaming_response.create(**params),
                self._map_error,
                _SDK_ERRORS,
            ) as events,
        ):
            yield _ChunkStream(events, self._id, self._map_error, self._parse_json)

    # ------------------------------------------------------------------ building

    def _prepare(self, request: ModelRequest) -> dict[str, Any]:
        check_model_requests_allowed(self._id)
        if self._api_key is None:
            raise AuthenticationError(
                f"{self._id}: no API key; pass api_key= or set OPENAI_API_KEY"
            )
        return self.build_params(request)

    def build_params(self, request: ModelRequest) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for ``request`` (no I/O)."""
        params: dict[str, Any] = {
            "model": self._name,
            "messages": build_messages(request),
        }
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
        output = request.output
        if output is not None and output.mode is OutputMode.NATIVE:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": output.name,
                    "description": output.description,
                    "schema": output.schema,
                },
            }
        settings = request.settings
        if settings.max_tokens is not None:
            params[self._max_tokens_parameter] = settings.max_tokens
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.seed is not None:
            params["seed"] = settings.seed
        if settings.extra:
            params["extra_body"] = dict(settings.extra)
        return params

    # ------------------------------------------------------------------ parsing

    def _parse_json(self, body: object) -> AssistantMessage:
        if not isinstance(body, dict):
            raise ModelError(f"{self._id}: unexpected JSON response {str(body)[:200]!r}")
        return self._parse_completion(openai.types.chat.ChatCompletion.model_construct(**body))

    def _parse_completion(self, completion: Any) -> AssistantMessage:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise ModelError(f"{self._id}: the response has no choices")
        choice = choices[0]
        message = choice.message
        content: list[AssistantContent] = []
        reasoning = getattr(message, "reasoning_content", None)
        if isinstance(reasoning, str) and reasoning:
            content.append(ThinkingBlock(reasoning))
        text = message.content
        if text is None and getattr(message, "refusal", None):
            text = message.refusal
        if text:
            content.append(TextBlock(text))
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)
            if function is None:  # a custom (non-function) tool call: not supported
                continue
            content.append(tool_call_block(call.id, function.name, function.arguments))
        return AssistantMessage(
            content=content,
            usage=parse_usage(getattr(completion, "usage", None)),
            stop_reason=stop_reason(choice.finish_reason, content, self._id),
            model=self._id,
        )

    def __repr__(self) -> str:
        return f"OpenAIModel({self._name!r}, base_url={self._base_url!r})"


# --------------------------------------------------------------------------- helpers


def build_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The ``messages`` list for ``request``."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": message.content})
        elif isinstance(message, UserMessage):
            out.append({"role": "user", "content": _user_content(message)})
        elif isinstance(message, AssistantMessage):
            out.append(_assistant(message))
        elif isinstance(message, ToolResultMessage):
            out.extend(
                {"role": "tool", "tool_call_id": result.tool_call_id, "content": result.content}
                for result in message.results
            )
    return out


def _user_content(message: UserMessage) -> str | list[dict[str, Any]]:
    blocks = message.content
    if all(isinstance(b, TextBlock) for b in blocks) and len(blocks) == 1:
        return blocks[0].text  # type: ignore[union-attr]
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            url = block.url or f"data:{block.media_type};base64,{block.data or ''}"
            parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def _assistant(message: AssistantMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    calls = message.tool_calls
    if calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": (
                        call.raw_arguments
                        if call.raw_arguments is not None
                        else json.dumps(call.arguments)
                    ),
                },
            }
            for call in calls
        ]
    elif out["content"] is None:
        out["content"] = ""
    return out


def tool_call_block(call_id: str | None, name: str | None, arguments: str | None) -> ToolCallBlock:
    """A :class:`ToolCallBlock` from the wire form (arguments as JSON text)."""
    raw = arguments or ""
    decoded: JSONValue
    try:
        decoded = json.loads(raw) if raw.strip() else {}
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        return ToolCallBlock(id=call_id or "", name=name or "", arguments=decoded)
    return ToolCallBlock(id=call_id or "", name=name or "", raw_arguments=raw)


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def parse_usage(usage: Any) -> Usage:
    """Our :class:`Usage` from the SDK's ``CompletionUsage`` (``None``: one request, no tokens)."""
    if usage is None:
        return Usage(requests=1)
    prompt = int(_field(usage, "prompt_tokens") or 0)
    completion = int(_field(usage, "completion_tokens") or 0)
    details = _field(usage, "prompt_tokens_details")
    cached = int(_field(details, "cached_tokens") or 0) if details is not None else 0
    cached = min(cached, prompt)
    return Usage(
        requests=1,
        input_tokens=prompt - cached,
        output_tokens=completion,
        cache_read_tokens=cached,
    )


def stop_reason(finish: str | None, content: list[AssistantContent], model_id: str) -> StopReason:
    """Our :class:`StopReason` for a ``finish_reason``; ``content_filter`` raises."""
    if finish == "content_filter":
        raise ContentFiltered(f"{model_id}: the response was stopped by the content filter")
    if any(isinstance(block, ToolCallBlock) for block in content):
        return StopReason.TOOL_USE
    return _STOP_REASONS.get(finish or "stop", StopReason.STOP)


def map_openai_error(exc: BaseException) -> ModelError:
    """The library error for an ``openai`` SDK error (see :mod:`trio_agents.models`)."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ModelTimeout(f"openai: the request timed out ({exc})")
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return NetworkError(f"openai: connection error: {cause or exc}")
    if isinstance(exc, httpx2.TransportError):
        return NetworkError(f"openai: connection error: {type(exc).__name__}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        error_type, code = error_fields(exc.body)
        message = exc.message
        body = exc.body
        if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
            body = body["error"]
        if isinstance(body, Mapping) and body.get("message"):
            message = str(body["message"])
        return classify_status(
            exc.status_code,
            message,
            error_type=error_type or exc.type,
            code=code or exc.code,
            headers=exc.response.headers,
            provider="openai",
        )
    if isinstance(exc, openai.APIResponseValidationError | openai.LengthFinishReasonError):
        return ModelError(f"openai: unexpected response: {exc}")
    if isinstance(exc, openai.ContentFilterFinishReasonError):
        return ContentFiltered(f"openai: {exc}")
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        error_type, code = error_fields(exc.body)
        return classify_status(
            None, exc.message, error_type=error_type, code=code, provider="openai"
        )
    if isinstance(exc, openai.OpenAIError) and "api_key" in str(exc):
        return AuthenticationError(f"openai: {exc}")
    return ModelError(f"openai: {type(exc).__name__}: {exc}")


class _ToolCallParts:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.arguments: list[str] = []


class _ChunkStream:
    """Turns the SSE chunks into :data:`StreamEvent` values; not an async generator, so an
    unfinished stream leaves nothing to finalise."""

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
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._calls: dict[int, _ToolCallParts] = {}
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None

    def __aiter__(self) -> _ChunkStream:
        return self

    async def __anext__(self) -> StreamEvent:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            try:
                _, data = await self._events.__anext__()
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
            if data.startswith("[DONE]"):
                continue  # read on to the end of the body, so the connection is reusable
            try:
                chunk = json.loads(data)
            except ValueError as exc:
                self._done = True
                raise ModelError(
                    f"{self._model_id}: undecodable stream chunk {data[:200]!r}"
                ) from exc
            if not isinstance(chunk, dict):
                continue
            if chunk.get("error") is not None:
                self._done = True
                error_type, code = error_fields(chunk)
                error = chunk["error"]
                message = str(error.get("message") if isinstance(error, dict) else error)
                raise classify_status(
                    None, message, error_type=error_type, code=code, provider="openai"
                )
            self._feed(chunk)
        return self._pending.popleft()

    def _feed(self, chunk: dict[str, Any]) -> None:
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content")
            if isinstance(reasoning, str) and reasoning:
                self._thinking.append(reasoning)
                self._pending.append(ThinkingDelta(reasoning))
            text = delta.get("content")
            if text is None:
                text = delta.get("refusal")
            if isinstance(text, str) and text:
                self._text.append(text)
                self._pending.append(TextDelta(text))
            for part in delta.get("tool_calls") or ():
                index = int(part.get("index", 0))
                parts = self._calls.setdefault(index, _ToolCallParts())
                function = part.get("function") or {}
                first = parts.id is None and parts.name is None
                call_id = part.get("id")
                name = function.get("name")
                if call_id:
                    parts.id = call_id
                if name:
                    parts.name = name
                fragment = function.get("arguments") or ""
                parts.arguments.append(fragment)
                self._pending.append(
                    ToolCallDelta(
                        index=index,
                        id=call_id if first else None,
                        name=name if first else None,
                        arguments=fragment,
                    )
                )
            if choice.get("finish_reason") is not None:
                self._finish = choice["finish_reason"]

    def _finish_message(self) -> AssistantMessage:
        if self._finish is None:
            raise NetworkError(
                f"{self._model_id}: the stream ended before the model finished (no finish reason)"
            )
        content: list[AssistantContent] = []
        if self._thinking:
            content.append(ThinkingBlock("".join(self._thinking)))
        if self._text:
            content.append(TextBlock("".join(self._text)))
        for index in sorted(self._calls):
            parts = self._calls[index]
            content.append(tool_call_block(parts.id, parts.name, "".join(parts.arguments)))
        return AssistantMessage(
            content=content,
            usage=parse_usage(self._usage),
            stop_reason=stop_reason(self._finish, content, self._model_id),
            model=self._model_id,
        )
