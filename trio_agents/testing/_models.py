"""Deterministic models for tests and demos: :class:`ScriptedModel` and :class:`FunctionModel`."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import attrs
import trio

from .._errors import InvalidArgumentError, ScriptExhausted
from .._messages import (
    AssistantContent,
    AssistantMessage,
    JSONValue,
    StopReason,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from .._models import (
    ModelRequest,
    StreamDone,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
)


@attrs.frozen(kw_only=True)
class ScriptStep:
    """One scripted model response: content to return, or an error to raise, after a delay.

    Build steps with :func:`text`, :func:`tool_call`, :func:`thinking`, :func:`fail` and
    :func:`hang`; add steps with ``+`` to put several blocks in one response (parallel tool
    calls, text before a tool call).
    """

    content: tuple[AssistantContent, ...] = ()
    """Blocks of the response."""
    error: BaseException | None = None
    """Raised instead of answering, when set."""
    delay: float = 0.0
    """Seconds to wait on trio's clock before answering (or raising)."""
    hang: bool = False
    """Wait until cancelled instead of answering."""
    usage: Usage | None = None
    """Usage to report; ``None`` computes a deterministic count from the words."""
    stop_reason: StopReason | None = None
    """Stop reason to report; ``None`` derives it (tool use or stop)."""

    def __add__(self, other: ScriptStep) -> ScriptStep:
        if not isinstance(other, ScriptStep):
            return NotImplemented
        if self.error is not None or other.error is not None or self.hang or other.hang:
            raise InvalidArgumentError(
                "only content steps can be added with +, not fail() or hang()"
            )
        return ScriptStep(
            content=self.content + other.content,
            delay=self.delay + other.delay,
            usage=other.usage if other.usage is not None else self.usage,
            stop_reason=other.stop_reason if other.stop_reason is not None else self.stop_reason,
        )


def text(
    value: str,
    *,
    delay: float = 0.0,
    usage: Usage | None = None,
    stop_reason: StopReason | None = None,
) -> ScriptStep:
    """A response with one text block."""
    return ScriptStep(
        content=(TextBlock(value),), delay=delay, usage=usage, stop_reason=stop_reason
    )


def thinking(value: str, *, delay: float = 0.0) -> ScriptStep:
    """A response with one thinking block (add a :func:`text` or :func:`tool_call` to it)."""
    return ScriptStep(content=(ThinkingBlock(value),), delay=delay)


def tool_call(
    name: str,
    arguments: dict[str, JSONValue] | None = None,
    *,
    id: str | None = None,
    raw_arguments: str | None = None,
    delay: float = 0.0,
) -> ScriptStep:
    """A response asking for one tool call; ``id`` defaults to ``call_<n>`` numbered per model.

    ``raw_arguments`` scripts a model that produced invalid JSON for the arguments.
    """
    call = ToolCallBlock(
        id=id or "",
        name=name,
        arguments=arguments or {},
        raw_arguments=raw_arguments,
    )
    return ScriptStep(content=(call,), delay=delay)


def fail(error: BaseException, *, delay: float = 0.0) -> ScriptStep:
    """A response that raises ``error`` (after ``delay`` seconds)."""
    if not isinstance(error, BaseException):
        raise InvalidArgumentError(f"fail() takes an exception instance, got {error!r}")
    return ScriptStep(error=error, delay=delay)


def hang() -> ScriptStep:
    """A response that never comes: the call waits until it is cancelled."""
    return ScriptStep(hang=True)


ScriptItem: TypeAlias = ScriptStep | str | AssistantMessage | BaseException
"""What a script may hold: steps, strings (text answers), messages, or exceptions to raise."""


def _count_words(request: ModelRequest) -> int:
    words = len(request.system.split()) if request.system else 0
    for message in request.messages:
        if isinstance(message, UserMessage):
            words += sum(len(b.text.split()) for b in message.content if isinstance(b, TextBlock))
        elif isinstance(message, AssistantMessage):
            words += len(message.text.split()) + 3 * len(message.tool_calls)
        elif isinstance(message, ToolResultMessage):
            words += sum(len(r.content.split()) for r in message.results)
        else:
            words += len(message.content.split())
    return words


def _usage_for(request: ModelRequest, content: Iterable[AssistantContent]) -> Usage:
    output = 0
    for block in content:
        if isinstance(block, TextBlock):
            output += len(block.text.split())
        elif isinstance(block, ThinkingBlock):
            output += len(block.thinking.split())
        else:
            output += 3 + len(json.dumps(block.arguments).split())
    return Usage(requests=1, input_tokens=_count_words(request), output_tokens=output)


class _Numbering:
    """Gives tool calls without an id a deterministic one."""

    def __init__(self) -> None:
        self.count = 0

    def fill(self, content: Iterable[AssistantContent]) -> tuple[AssistantContent, ...]:
        out: list[AssistantContent] = []
        for block in content:
            if isinstance(block, ToolCallBlock) and not block.id:
                self.count += 1
                block = attrs.evolve(block, id=f"call_{self.count}")
            out.append(block)
        return tuple(out)


def _finish(
    request: ModelRequest, model_id: str, step: ScriptStep, numbering: _Numbering
) -> AssistantMessage:
    content = numbering.fill(step.content)
    has_calls = any(isinstance(b, ToolCallBlock) for b in content)
    stop = step.stop_reason or (StopReason.TOOL_USE if has_calls else StopReason.STOP)
    usage = step.usage if step.usage is not None else _usage_for(request, content)
    return AssistantMessage(content=content, usage=usage, stop_reason=stop, model=model_id)


def _as_step(item: ScriptItem) -> ScriptStep:
    if isinstance(item, ScriptStep):
        return item
    if isinstance(item, str):
        return text(item)
    if isinstance(item, AssistantMessage):
        return ScriptStep(content=item.content, usage=item.usage, stop_reason=item.stop_reason)
    if isinstance(item, BaseException):
        return fail(item)
    raise InvalidArgumentError(
        "a script item must be a ScriptStep (text(), tool_call(), fail(), hang()), a str, "
        f"an AssistantMessage or an exception; got {type(item).__name__}"
    )


async def _perform(step: ScriptStep) -> None:
    if step.hang:
        await trio.sleep_forever()
    if step.delay > 0:
        await trio.sleep(step.delay)
    else:
        await trio.lowlevel.checkpoint()
    if step.error is not None:
        raise step.error


async def _stream_message(message: AssistantMessage) -> AsyncIterator[StreamEvent]:
    index = 0
    for block in message.content:
        if isinstance(block, TextBlock):
            words = block.text.split(" ")
            for i, word in enumerate(words):
                yield TextDelta(word if i == 0 else " " + word)
        elif isinstance(block, ThinkingBlock):
            yield ThinkingDelta(block.thinking)
        else:
            raw = (
                block.raw_arguments
                if block.raw_arguments is not None
                else json.dumps(block.arguments)
            )
            half = len(raw) // 2
            yield ToolCallDelta(index=index, id=block.id, name=block.name, arguments=raw[:half])
            yield ToolCallDelta(index=index, arguments=raw[half:])
            index += 1
    yield StreamDone(message)


class ScriptedModel:
    """A model that replays a script of responses, one per request, on trio's clock.

    :param script: the responses, in order (see :data:`ScriptItem`).
    :param model_id: what :attr:`model_id` reports.

    Every request is recorded in :attr:`requests`. A request past the end of the script
    raises :class:`~trio_agents.ScriptExhausted` naming how many responses there were;
    :meth:`assert_consumed` checks that every response was used.
    """

    def __init__(self, script: Iterable[ScriptItem] = (), *, model_id: str = "scripted") -> None:
        self._script = [_as_step(item) for item in script]
        self._model_id = model_id
        self._position = 0
        self._numbering = _Numbering()
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    @property
    def model_id(self) -> str:
        """Identifier of this model."""
        return self._model_id

    @property
    def remaining(self) -> int:
        """Responses not yet used."""
        return len(self._script) - self._position

    def extend(self, items: Iterable[ScriptItem]) -> None:
        """Append responses to the script."""
        self._script.extend(_as_step(item) for item in items)

    def assert_consumed(self) -> None:
        """Raise AssertionError unless every scripted response was used."""
        if self._position != len(self._script):
            raise AssertionError(
                f"ScriptedModel {self._model_id!r}: {self.remaining} of {len(self._script)} "
                "scripted responses were not used"
            )

    def _next(self, request: ModelRequest) -> ScriptStep:
        self.requests.append(request)
        if self._position >= len(self._script):
            raise ScriptExhausted(
                f"ScriptedModel {self._model_id!r} got request #{len(self.requests)} but its "
                f"script has only {len(self._script)} responses; add more with extend()"
            )
        step = self._script[self._position]
        self._position += 1
        return step

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Answer with the next scripted response."""
        step = self._next(request)
        await _perform(step)
        return _finish(request, self._model_id, step, self._numbering)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """Stream the next scripted response: text word by word, tool arguments in two halves."""
        step = self._next(request)
        await _perform(step)
        yield _stream_message(_finish(request, self._model_id, step, self._numbering))

    def __repr__(self) -> str:
        return f"<ScriptedModel {self._model_id!r} {self._position}/{len(self._script)} used>"


FunctionResult: TypeAlias = ScriptStep | str | AssistantMessage
ModelFunction: TypeAlias = Callable[[ModelRequest], "FunctionResult | Awaitable[FunctionResult]"]


class FunctionModel:
    """A model played by a function of the request (sync or async).

    The function returns a :class:`ScriptStep`, a str, or an :class:`AssistantMessage`, or
    raises. Every request is recorded in :attr:`requests`.
    """

    def __init__(self, function: ModelFunction, *, model_id: str = "function") -> None:
        if not callable(function):
            raise InvalidArgumentError(f"FunctionModel needs a callable, got {function!r}")
        self._function = function
        self._model_id = model_id
        self._numbering = _Numbering()
        self.requests: list[ModelRequest] = []
        """Every request received, in order."""

    @property
    def model_id(self) -> str:
        """Identifier of this model."""
        return self._model_id

    async def _answer(self, request: ModelRequest) -> AssistantMessage:
        self.requests.append(request)
        produced: Any = self._function(request)
        if inspect.isawaitable(produced):
            produced = await produced
        else:
            await trio.lowlevel.checkpoint()
        step = _as_step(produced)
        await _perform(step)
        return _finish(request, self._model_id, step, self._numbering)

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Answer with what the function returns."""
        return await self._answer(request)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """Stream what the function returns."""
        yield _stream_message(await self._answer(request))

    def __repr__(self) -> str:
        return f"<FunctionModel {self._model_id!r}>"
