"""Fault injection: models and tools that misbehave according to a plan.

A :class:`FaultPlan` says which calls fail and how: at given call indices, with given
probabilities drawn from a seeded generator, or both. :class:`FaultyModel` wraps any
:class:`~trio_agents.Model` and :class:`FaultyTool` any tool executor; on each call they ask the
plan for a :class:`Fault` and, if there is one, raise the chosen error, hang until cancelled,
wait on trio's clock, answer with a malformed tool call, or return oversize output. Everything
happens on trio's clock and from the plan's seed, so a test with a fault plan is as
reproducible as one without.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._errors import (
    AgentError,
    AuthenticationError,
    InvalidArgumentError,
    ModelOverloaded,
    ModelThrottled,
    NetworkError,
)
from .._messages import (
    AssistantMessage,
    JSONValue,
    StopReason,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
    Usage,
)
from .._models import Model, ModelRequest, StreamDone, StreamEvent, TextDelta, check_model
from .._tools import (
    Tool,
    ToolContext,
    ToolExecutor,
    Toolset,
    _error_result,
    _exception_message,
)
from ._models import _stream_message

__all__ = ["Fault", "FaultKind", "FaultPlan", "FaultyModel", "FaultyTool"]


class FaultKind(enum.Enum):
    """What a :class:`Fault` does to a call."""

    THROTTLED = "throttled"
    """Raise :class:`~trio_agents.ModelThrottled` (retryable) with ``retry_after``."""
    NETWORK = "network"
    """Raise :class:`~trio_agents.NetworkError` (retryable)."""
    OVERLOADED = "overloaded"
    """Raise :class:`~trio_agents.ModelOverloaded` (retryable)."""
    FATAL = "fatal"
    """Raise a non-retryable error (:class:`~trio_agents.AuthenticationError` by default)."""
    HANG = "hang"
    """Never answer: wait until the call is cancelled."""
    LATENCY = "latency"
    """Answer normally, ``delay`` seconds later on trio's clock."""
    BAD_JSON = "bad_json"
    """(Models) answer with a tool call whose arguments are not valid JSON."""
    UNKNOWN_TOOL = "unknown_tool"
    """(Models) answer with a call to a tool that does not exist."""
    WRONG_TYPES = "wrong_types"
    """(Models) answer with a tool call whose arguments have the wrong types."""
    OVERSIZE = "oversize"
    """Answer normally, with ``size`` more characters of output."""


_ERRORS = frozenset({FaultKind.THROTTLED, FaultKind.NETWORK, FaultKind.OVERLOADED, FaultKind.FATAL})
_MALFORMED = frozenset({FaultKind.BAD_JSON, FaultKind.UNKNOWN_TOOL, FaultKind.WRONG_TYPES})


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(
            f"Fault.{attribute.name} must be a finite number of seconds >= 0; got {value!r}"
        )


def _retry_after(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        _non_negative(instance, attribute, value)


def _size(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"Fault.size must be an int >= 0; got {value!r}")


def _kind(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, FaultKind):
        allowed = ", ".join(k.name for k in FaultKind)
        raise InvalidArgumentError(f"Fault.kind must be a FaultKind ({allowed}); got {value!r}")


@attrs.frozen(kw_only=True)
class Fault:
    """One injected fault. Build it with the class methods (``Fault.throttled()``, …)."""

    kind: FaultKind = attrs.field(validator=_kind)
    """What it does."""
    delay: float = attrs.field(default=0.0, validator=_non_negative)
    """Seconds on trio's clock before the fault acts (the whole point of ``LATENCY``)."""
    retry_after: float | None = attrs.field(default=None, validator=_retry_after)
    """``retry_after`` of the error raised (``THROTTLED``)."""
    size: int = attrs.field(default=100_000, validator=_size)
    """Characters of extra output (``OVERSIZE``)."""
    tool: str | None = None
    """Tool name in a malformed call; ``None``: the first tool offered (``BAD_JSON``,
    ``WRONG_TYPES``) or ``"no_such_tool"`` (``UNKNOWN_TOOL``)."""
    message: str = ""
    """Message of the error raised; empty for a default naming the fault."""

    @classmethod
    def throttled(cls, retry_after: float | None = 1.0, *, delay: float = 0.0) -> Fault:
        """Raise :class:`~trio_agents.ModelThrottled` asking to wait ``retry_after`` seconds."""
        return cls(kind=FaultKind.THROTTLED, retry_after=retry_after, delay=delay)

    @classmethod
    def network(cls, *, delay: float = 0.0) -> Fault:
        """Raise :class:`~trio_agents.NetworkError` (after ``delay`` seconds)."""
        return cls(kind=FaultKind.NETWORK, delay=delay)

    @classmethod
    def overloaded(cls, *, delay: float = 0.0) -> Fault:
        """Raise :class:`~trio_agents.ModelOverloaded` (after ``delay`` seconds)."""
        return cls(kind=FaultKind.OVERLOADED, delay=delay)

    @classmethod
    def fatal(cls, *, delay: float = 0.0, message: str = "") -> Fault:
        """Raise the non-retryable :class:`~trio_agents.AuthenticationError`."""
        return cls(kind=FaultKind.FATAL, delay=delay, message=message)

    @classmethod
    def hang(cls) -> Fault:
        """Never answer: the call waits until it is cancelled."""
        return cls(kind=FaultKind.HANG)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Answer normally after ``seconds`` on trio's clock."""
        return cls(kind=FaultKind.LATENCY, delay=seconds)

    @classmethod
    def bad_json(cls, tool: str | None = None) -> Fault:
        """(Models) a tool call whose raw arguments are not valid JSON."""
        return cls(kind=FaultKind.BAD_JSON, tool=tool)

    @classmethod
    def unknown_tool(cls, tool: str = "no_such_tool") -> Fault:
        """(Models) a call to a tool called ``tool``, which the agent does not have."""
        return cls(kind=FaultKind.UNKNOWN_TOOL, tool=tool)

    @classmethod
    def wrong_types(cls, tool: str | None = None) -> Fault:
        """(Models) a tool call whose every argument has a type its schema does not allow."""
        return cls(kind=FaultKind.WRONG_TYPES, tool=tool)

    @classmethod
    def oversize(cls, size: int = 100_000) -> Fault:
        """Answer normally, with ``size`` more characters of output."""
        return cls(kind=FaultKind.OVERSIZE, size=size)

    @property
    def is_error(self) -> bool:
        """Whether the fault raises an error."""
        return self.kind in _ERRORS

    @property
    def is_malformed(self) -> bool:
        """Whether the fault is a malformed tool call (models only)."""
        return self.kind in _MALFORMED

    def error(self) -> AgentError:
        """The error this fault raises (a fresh instance each time).

        :raises InvalidArgumentError: the fault does not raise (see :attr:`is_error`).
        """
        text = self.message or f"injected {self.kind.value} fault"
        if self.kind is FaultKind.THROTTLED:
            return ModelThrottled(text, retry_after=self.retry_after)
        if self.kind is FaultKind.NETWORK:
            return NetworkError(text)
        if self.kind is FaultKind.OVERLOADED:
            return ModelOverloaded(text)
        if self.kind is FaultKind.FATAL:
            return AuthenticationError(text)
        raise InvalidArgumentError(f"a {self.kind.value} fault raises no error")


def _pairs(value: object, owner: str, what: str) -> tuple[Any, ...]:
    items = value.items() if isinstance(value, Mapping) else value
    if not isinstance(items, Iterable) or isinstance(items, str):
        raise InvalidArgumentError(f"{owner} must map {what}; got {value!r}")
    return tuple(items)


def _at(value: object) -> tuple[tuple[int, Fault], ...]:
    pairs = _pairs(value, "FaultPlan.at", "call indices to faults")
    seen: set[int] = set()
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidArgumentError(
                f"FaultPlan.at must map call indices to faults; got the item {pair!r}"
            )
        index, fault = pair
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidArgumentError(
                f"FaultPlan.at: call indices are ints >= 0 (0 = the first call); got {index!r}"
            )
        if not isinstance(fault, Fault):
            raise InvalidArgumentError(
                f"FaultPlan.at[{index}] must be a Fault; got {type(fault).__name__}"
            )
        if index in seen:
            raise InvalidArgumentError(f"FaultPlan.at names call {index} twice")
        seen.add(index)
    return tuple(sorted(pairs, key=lambda p: p[0]))


def _rates(value: object) -> tuple[tuple[Fault, float], ...]:
    pairs = _pairs(value, "FaultPlan.rates", "faults to probabilities")
    total = 0.0
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidArgumentError(
                f"FaultPlan.rates must map faults to probabilities; got the item {pair!r}"
            )
        fault, rate = pair
        if not isinstance(fault, Fault):
            raise InvalidArgumentError(
                f"FaultPlan.rates keys must be Faults; got {type(fault).__name__}"
            )
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise InvalidArgumentError(
                f"FaultPlan.rates: a probability is a number in [0, 1]; got {rate!r} for "
                f"{fault.kind.value}"
            )
        total += rate
    if total > 1 + 1e-9:
        raise InvalidArgumentError(
            f"FaultPlan.rates: the probabilities add up to {total:g}, more than 1"
        )
    return pairs


def _seed(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"FaultPlan.seed must be an int; got {value!r}")


@attrs.frozen(kw_only=True)
class FaultPlan:
    """Which calls fail, and how.

    ``FaultPlan(at={0: Fault.overloaded(), 3: Fault.hang()})`` makes the first call raise and
    the fourth hang; ``FaultPlan(rates={Fault.network(): 0.2}, seed=7)`` makes each call fail
    with probability 0.2. Both can be combined: a call listed in :attr:`at` gets that fault,
    any other call draws from :attr:`rates`. The draw for call ``i`` depends only on
    ``(seed, i)``, so :meth:`fault_for` is a pure function: the same plan gives the same faults
    to the same calls, whatever happened before.
    """

    at: tuple[tuple[int, Fault], ...] = attrs.field(default=(), converter=_at)
    """Faults at given call indices (0 = the first call); a mapping is accepted."""
    rates: tuple[tuple[Fault, float], ...] = attrs.field(default=(), converter=_rates)
    """Faults with their probabilities per call (adding up to at most 1); a mapping is
    accepted."""
    seed: int = attrs.field(default=0, validator=_seed)
    """Seed of the per-call draws."""

    @classmethod
    def never(cls) -> FaultPlan:
        """A plan without faults."""
        return cls()

    def kinds(self) -> frozenset[FaultKind]:
        """Every fault kind this plan can inject."""
        return frozenset(f.kind for _, f in self.at) | frozenset(
            f.kind for f, rate in self.rates if rate > 0
        )

    def fault_for(self, index: int) -> Fault | None:
        """The fault for call ``index`` (0-based), or ``None`` for a normal call.

        :raises ~trio_agents.InvalidArgumentError: when ``index`` is not an int >= 0, as
            ``at=`` does.
        """
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InvalidArgumentError(
                f"FaultPlan.fault_for: index is a call index, an int >= 0 (0 = the first "
                f"call); got {index!r}"
            )
        for at, fault in self.at:
            if at == index:
                return fault
        if not self.rates:
            return None
        draw = random.Random(f"{self.seed}:{index}").random()
        for fault, rate in self.rates:
            if draw < rate:
                return fault
            draw -= rate
        return None


class _Counter:
    """Numbers calls and records the faults injected."""

    def __init__(self, plan: FaultPlan) -> None:
        if not isinstance(plan, FaultPlan):
            raise InvalidArgumentError(f"plan must be a FaultPlan; got {type(plan).__name__}")
        self.plan = plan
        self.calls = 0
        self.injected: list[tuple[int, Fault]] = []

    def next(self) -> tuple[int, Fault | None]:
        index = self.calls
        self.calls += 1
        fault = self.plan.fault_for(index)
        if fault is not None:
            self.injected.append((index, fault))
        return index, fault


async def _wait(fault: Fault) -> None:
    """The part every fault shares: hang, or wait ``delay`` (a checkpoint at least)."""
    if fault.kind is FaultKind.HANG:
        await trio.sleep_forever()
    if fault.delay > 0:
        await trio.sleep(fault.delay)
    else:
        await trio.lowlevel.checkpoint()


_WRONG: dict[str, JSONValue] = {
    "string": 12345,
    "integer": "not a number",
    "number": "not a number",
    "boolean": "maybe",
    "array": {"not": "an array"},
    "object": ["not", "an", "object"],
    "null": "not null",
}


def _wrong_arguments(request: ModelRequest, tool: str) -> dict[str, JSONValue]:
    for definition in request.tools:
        if definition.name != tool:
            continue
        properties = definition.parameters.get("properties")
        if isinstance(properties, dict) and properties:
            out: dict[str, JSONValue] = {}
            for name, schema in properties.items():
                kind = schema.get("type") if isinstance(schema, dict) else None
                out[name] = _WRONG.get(kind) if isinstance(kind, str) else None
            return out
    return {"unexpected_argument": True}


def _malformed(request: ModelRequest, fault: Fault, index: int, model_id: str) -> AssistantMessage:
    offered = request.tools[0].name if request.tools else "tool"
    call_id = f"fault_{index}"
    if fault.kind is FaultKind.UNKNOWN_TOOL:
        call = ToolCallBlock(id=call_id, name=fault.tool or "no_such_tool", arguments={})
    elif fault.kind is FaultKind.BAD_JSON:
        call = ToolCallBlock(
            id=call_id, name=fault.tool or offered, arguments={}, raw_arguments='{"query": '
        )
    else:
        name = fault.tool or offered
        call = ToolCallBlock(id=call_id, name=name, arguments=_wrong_arguments(request, name))
    return AssistantMessage(
        content=(call,),
        usage=Usage(requests=1, output_tokens=8),
        stop_reason=StopReason.TOOL_USE,
        model=model_id,
    )


def _filler(size: int) -> str:
    return ("lorem ipsum " * (size // 12 + 1))[:size]


def _oversized(message: AssistantMessage, size: int) -> AssistantMessage:
    return attrs.evolve(
        message,
        content=(*message.content, TextBlock(_filler(size))),
        usage=message.usage + Usage(output_tokens=size // 4),
    )


async def _oversize_stream(
    events: AsyncIterator[StreamEvent], size: int
) -> AsyncIterator[StreamEvent]:
    async for event in events:
        if isinstance(event, StreamDone):
            yield TextDelta(_filler(size))
            yield StreamDone(_oversized(event.message, size))
        else:
            yield event


class FaultyModel:
    """A :class:`~trio_agents.Model` that injects the faults of a :class:`FaultPlan`.

    Each call (a :meth:`request` or a :meth:`stream`) takes the next call index and asks the
    plan for a fault. Errors are raised and ``HANG`` waits until cancelled, without asking
    ``inner``; ``LATENCY`` waits and then asks ``inner``; a malformed tool call is answered
    in ``inner``'s place (so ``inner``'s script is not used up); ``OVERSIZE`` appends a text
    block of ``size`` characters to ``inner``'s answer (and ``size // 4`` output tokens to its
    usage). Any fault waits its ``delay`` first.

    :param inner: the model that answers normal calls.
    :param plan: the faults.
    """

    def __init__(self, inner: Model, plan: FaultPlan) -> None:
        self._inner = check_model(inner, argument="inner")
        self._counter = _Counter(plan)

    @property
    def model_id(self) -> str:
        """The inner model's id."""
        return self._inner.model_id

    @property
    def inner(self) -> Model:
        """The wrapped model."""
        return self._inner

    @property
    def plan(self) -> FaultPlan:
        """The fault plan."""
        return self._counter.plan

    @property
    def calls(self) -> int:
        """Calls made so far."""
        return self._counter.calls

    @property
    def injected(self) -> list[tuple[int, Fault]]:
        """``(call index, fault)`` of every fault injected so far, in order."""
        return list(self._counter.injected)

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Answer ``request``, or misbehave as the plan says for this call."""
        index, fault = self._counter.next()
        if fault is None:
            return await self._inner.request(request)
        await _wait(fault)
        if fault.is_error:
            raise fault.error()
        if fault.is_malformed:
            return _malformed(request, fault, index, self.model_id)
        message = await self._inner.request(request)
        if fault.kind is FaultKind.OVERSIZE:
            return _oversized(message, fault.size)
        return message

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """Stream the answer to ``request``, or misbehave as the plan says for this call."""
        index, fault = self._counter.next()
        if fault is not None:
            await _wait(fault)
            if fault.is_error:
                raise fault.error()
            if fault.is_malformed:
                yield _stream_message(_malformed(request, fault, index, self.model_id))
                return
        async with self._inner.stream(request) as events:
            if fault is not None and fault.kind is FaultKind.OVERSIZE:
                yield _oversize_stream(events, fault.size)
            else:
                yield events

    def __repr__(self) -> str:
        return f"<FaultyModel {self.model_id!r} calls={self.calls} injected={len(self.injected)}>"


class FaultyTool:
    """A tool executor that injects the faults of a :class:`FaultPlan` into tool calls.

    Each call to :meth:`execute` takes the next call index. An error fault becomes an error
    result, worded as the :class:`~trio_agents.Toolset` words a tool's exception (or, with
    ``raise_errors=True``, is raised out of :meth:`execute`, which fails the agent's turn);
    ``HANG`` waits until cancelled (in front of ``inner``, so ``inner``'s timeouts do not
    apply); ``LATENCY`` waits and then runs the call; ``OVERSIZE`` runs the call and appends
    ``size`` characters to its result. Malformed tool calls are model faults: a plan with them
    is refused.

    :param inner: a :class:`~trio_agents.Tool`, several, or any
        :class:`~trio_agents.ToolExecutor`.
    :param plan: the faults.
    :param raise_errors: raise error faults instead of returning error results.
    """

    def __init__(
        self,
        inner: Tool | Iterable[Tool] | ToolExecutor,
        plan: FaultPlan,
        *,
        raise_errors: bool = False,
    ) -> None:
        if isinstance(inner, Tool):
            executor: ToolExecutor = Toolset([inner])
        elif isinstance(inner, ToolExecutor):
            executor = inner
        else:
            executor = Toolset(inner)
        self._inner = executor
        self._counter = _Counter(plan)
        malformed = sorted(k.value for k in plan.kinds() & _MALFORMED)
        if malformed:
            raise InvalidArgumentError(
                f"FaultyTool cannot inject {malformed}: malformed tool calls come from a "
                "model; put them in a FaultyModel's plan"
            )
        self._raise = raise_errors

    @property
    def inner(self) -> ToolExecutor:
        """The wrapped executor."""
        return self._inner

    @property
    def calls(self) -> int:
        """Calls made so far."""
        return self._counter.calls

    @property
    def injected(self) -> list[tuple[int, Fault]]:
        """``(call index, fault)`` of every fault injected so far, in order."""
        return list(self._counter.injected)

    def definitions(self) -> Sequence[Any]:
        """The inner executor's tool definitions."""
        return self._inner.definitions()

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        """Run ``call``, or misbehave as the plan says for this call."""
        _, fault = self._counter.next()
        if fault is None:
            return await self._inner.execute(call, ctx)
        await _wait(fault)
        if fault.is_error:
            error = fault.error()
            if self._raise:
                raise error
            return _error_result(call, _exception_message(call.name, error))
        result = await self._inner.execute(call, ctx)
        if fault.kind is FaultKind.OVERSIZE:
            return attrs.evolve(result, content=result.content + _filler(fault.size))
        return result

    def __repr__(self) -> str:
        return f"<FaultyTool {self._inner!r} calls={self.calls} injected={len(self.injected)}>"
