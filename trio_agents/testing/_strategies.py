"""Hypothesis strategies for every value type of trio_agents.

Numbers are what the library meets in practice: counts are non-negative integers, times,
durations and money are finite non-negative floats; JSON data uses any finite float.
Collections are kept small so that strategies of whole transcripts stay fast.
"""

from __future__ import annotations

import base64
import enum
import string
import types
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trio_agents.testing.strategies needs hypothesis; install it with "
        "pip install 'trio-agents[test]'"
    ) from exc

from .._events import Event
from .._messages import (
    AgentResult,
    AssistantContent,
    AssistantMessage,
    ContentBlock,
    Cost,
    ErrorInfo,
    ImageBlock,
    Message,
    StopReason,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolResultMessage,
    TransferSignal,
    Usage,
    UserContent,
    UserMessage,
)
from .._models import (
    ModelRequest,
    ModelSettings,
    StreamDone,
    StreamEvent,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolDefinition,
)
from .._serde import event_classes

T = TypeVar("T")

_MAX_ITEMS = 3
"""Upper bound on the length of generated lists (content blocks, messages, tools)."""

_NoneType = type(None)


# --------------------------------------------------------------------------- scalars


def texts(*, min_size: int = 0, max_size: int = 20) -> SearchStrategy[str]:
    """Unicode text (no surrogates), short by default."""
    return st.text(min_size=min_size, max_size=max_size)


def identifiers() -> SearchStrategy[str]:
    """Names and ids: 1 to 12 ASCII letters, digits, ``_`` and ``-``, starting with a letter."""
    return st.builds(
        str.__add__,
        st.sampled_from(string.ascii_letters),
        st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=11),
    )


def agent_paths() -> SearchStrategy[str]:
    """Agent paths in the tree: ``""`` (the system) or ``"lead/researcher"``-like."""
    return st.lists(identifiers(), max_size=3).map("/".join)


def counts() -> SearchStrategy[int]:
    """Non-negative integers, as token counts and sequence numbers are."""
    return st.integers(min_value=0, max_value=10**9)


def amounts() -> SearchStrategy[float]:
    """Finite non-negative floats: times, durations, delays, money."""
    return st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)


def json_scalars() -> SearchStrategy[Any]:
    """JSON scalars: None, bools, integers (within ±2**53), finite floats and short strings."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    )


def json_data() -> SearchStrategy[Any]:
    """Any JSON value: scalars, lists and objects with string keys, nested a little."""
    return st.recursive(
        json_scalars(),
        lambda children: st.one_of(
            st.lists(children, max_size=_MAX_ITEMS),
            st.dictionaries(st.text(max_size=8), children, max_size=_MAX_ITEMS),
        ),
        max_leaves=8,
    )


def json_values() -> SearchStrategy[dict[str, Any]]:
    """JSON objects, as tool arguments, schemas and settings are (:data:`JSONValue` fields)."""
    return st.dictionaries(st.text(max_size=8), json_data(), max_size=4)


# --------------------------------------------------------------------------- content blocks


def text_blocks() -> SearchStrategy[TextBlock]:
    """:class:`TextBlock` values."""
    return st.builds(TextBlock, texts())


def image_blocks() -> SearchStrategy[ImageBlock]:
    """:class:`ImageBlock` values, inline (base64) or by URL."""
    media_types = st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"])
    inline = st.builds(
        ImageBlock,
        media_types,
        data=st.binary(max_size=24).map(lambda raw: base64.b64encode(raw).decode("ascii")),
    )
    by_url = st.builds(
        ImageBlock,
        media_types,
        url=identifiers().map(lambda name: f"https://example.com/{name}.png"),
    )
    return inline | by_url


def thinking_blocks() -> SearchStrategy[ThinkingBlock]:
    """:class:`ThinkingBlock` values, with or without a signature."""
    return st.builds(ThinkingBlock, texts(), st.none() | identifiers())


def tool_call_blocks() -> SearchStrategy[ToolCallBlock]:
    """:class:`ToolCallBlock` values; a few carry undecodable ``raw_arguments``."""
    decoded = st.builds(
        ToolCallBlock, id=identifiers(), name=identifiers(), arguments=json_values()
    )
    undecodable = st.builds(
        ToolCallBlock,
        id=identifiers(),
        name=identifiers(),
        arguments=st.just({}),
        raw_arguments=texts(),
    )
    return st.one_of(decoded, undecodable)


def tool_result_blocks() -> SearchStrategy[ToolResultBlock]:
    """:class:`ToolResultBlock` values, successful or errors."""
    return st.builds(
        ToolResultBlock,
        tool_call_id=identifiers(),
        content=texts(),
        is_error=st.booleans(),
        tool_name=identifiers(),
    )


def content_blocks() -> SearchStrategy[ContentBlock]:
    """Any :data:`ContentBlock`."""
    return st.one_of(
        text_blocks(), image_blocks(), thinking_blocks(), tool_call_blocks(), tool_result_blocks()
    )


def user_contents() -> SearchStrategy[UserContent]:
    """What a :class:`UserMessage` may contain (:data:`UserContent`)."""
    return st.one_of(text_blocks(), image_blocks())


def assistant_contents() -> SearchStrategy[AssistantContent]:
    """What an :class:`AssistantMessage` may contain (:data:`AssistantContent`)."""
    return st.one_of(text_blocks(), thinking_blocks(), tool_call_blocks())


# --------------------------------------------------------------------------- usage, cost, results


def usages() -> SearchStrategy[Usage]:
    """:class:`Usage` values whose ``total_tokens`` is the sum of the four counts."""
    return st.builds(
        Usage,
        requests=st.integers(min_value=0, max_value=1000),
        input_tokens=counts(),
        output_tokens=counts(),
        cache_read_tokens=counts(),
        cache_write_tokens=counts(),
    )


def costs() -> SearchStrategy[Cost]:
    """:class:`Cost` values (non-negative dollars) whose ``total`` is the sum of the parts."""
    dollars = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
    return st.builds(Cost, input=dollars, output=dollars, cache_read=dollars, cache_write=dollars)


def stop_reasons() -> SearchStrategy[StopReason]:
    """Any :class:`StopReason`."""
    return st.sampled_from(StopReason)


def error_infos() -> SearchStrategy[ErrorInfo]:
    """:class:`ErrorInfo` values."""
    return st.builds(
        ErrorInfo,
        type=identifiers(),
        message=texts(),
        retryable=st.booleans(),
        retry_after=st.none() | amounts(),
    )


def transfer_signals() -> SearchStrategy[TransferSignal]:
    """:class:`TransferSignal` values."""
    return st.builds(TransferSignal, target=identifiers(), message=texts())


# --------------------------------------------------------------------------- messages


def system_messages() -> SearchStrategy[SystemMessage]:
    """:class:`SystemMessage` values."""
    return st.builds(SystemMessage, texts())


def user_messages() -> SearchStrategy[UserMessage]:
    """:class:`UserMessage` values with up to three text and image blocks."""
    return st.builds(UserMessage, st.lists(user_contents(), max_size=_MAX_ITEMS))


def assistant_messages() -> SearchStrategy[AssistantMessage]:
    """:class:`AssistantMessage` values with up to three blocks."""
    return st.builds(
        AssistantMessage,
        content=st.lists(assistant_contents(), max_size=_MAX_ITEMS),
        usage=usages(),
        stop_reason=stop_reasons(),
        model=st.just("") | identifiers(),
    )


def tool_result_messages() -> SearchStrategy[ToolResultMessage]:
    """:class:`ToolResultMessage` values with up to three results."""
    return st.builds(ToolResultMessage, st.lists(tool_result_blocks(), max_size=_MAX_ITEMS))


def messages() -> SearchStrategy[Message]:
    """Any :data:`Message`."""
    return st.one_of(
        system_messages(), user_messages(), assistant_messages(), tool_result_messages()
    )


def agent_results() -> SearchStrategy[AgentResult]:
    """:class:`AgentResult` values (a transcript of up to four messages, any outcome)."""
    return st.builds(
        AgentResult,
        messages=st.lists(messages(), max_size=4),
        stop_reason=stop_reasons(),
        usage=usages(),
        cost=costs(),
        error=st.none() | error_infos(),
        transfer=st.none() | transfer_signals(),
        duration=amounts(),
    )


# --------------------------------------------------------------------------- requests, streams


def tool_definitions() -> SearchStrategy[ToolDefinition]:
    """:class:`ToolDefinition` values (the schema is any JSON object)."""
    return st.builds(
        ToolDefinition,
        name=identifiers(),
        description=texts(),
        parameters=st.just({"type": "object", "properties": {}}) | json_values(),
    )


def model_settings() -> SearchStrategy[ModelSettings]:
    """:class:`ModelSettings` values."""
    return st.builds(
        ModelSettings,
        max_tokens=st.none() | st.integers(min_value=1, max_value=200_000),
        temperature=st.none()
        | st.floats(min_value=0.0, max_value=2.0, allow_nan=False, allow_infinity=False),
        seed=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
        extra=json_values(),
    )


def model_requests() -> SearchStrategy[ModelRequest]:
    """:class:`ModelRequest` values."""
    return st.builds(
        ModelRequest,
        system=st.none() | texts(),
        messages=st.lists(messages(), max_size=4),
        tools=st.lists(tool_definitions(), max_size=_MAX_ITEMS),
        settings=model_settings(),
    )


def text_deltas() -> SearchStrategy[TextDelta]:
    """:class:`TextDelta` values."""
    return st.builds(TextDelta, texts())


def thinking_deltas() -> SearchStrategy[ThinkingDelta]:
    """:class:`ThinkingDelta` values."""
    return st.builds(ThinkingDelta, texts())


def tool_call_deltas() -> SearchStrategy[ToolCallDelta]:
    """:class:`ToolCallDelta` values (first deltas with id and name, later ones without)."""
    return st.builds(
        ToolCallDelta,
        index=st.integers(min_value=0, max_value=16),
        id=st.none() | identifiers(),
        name=st.none() | identifiers(),
        arguments=texts(),
    )


def stream_dones() -> SearchStrategy[StreamDone]:
    """:class:`StreamDone` values."""
    return st.builds(StreamDone, assistant_messages())


def stream_events() -> SearchStrategy[StreamEvent]:
    """Any :data:`StreamEvent`."""
    return st.one_of(text_deltas(), thinking_deltas(), tool_call_deltas(), stream_dones())


# --------------------------------------------------------------------------- events and any type


def events(base: type[Event] = Event) -> SearchStrategy[Event]:
    """Events of every class under ``base`` (``base`` included if it has its own kind).

    The classes are looked up when the strategy is first drawn from, so event classes that
    other modules (or the test module) define later are covered too. Fields are generated from
    their type annotations with :func:`from_type`; ``time`` is a non-negative float and
    ``agent`` an agent path.
    """

    def build() -> SearchStrategy[Event]:
        classes = event_classes(base)
        if not classes:
            raise TypeError(f"no event class under {base.__qualname__} can be dumped and loaded")
        return st.one_of([_builds_attrs(cls) for cls in classes])

    return st.deferred(build)


_FIELD_OVERRIDES: dict[tuple[type, str], Callable[[], SearchStrategy[Any]]] = {
    (Event, "time"): amounts,
    (Event, "agent"): agent_paths,
}


def _builds_attrs(cls: Any) -> SearchStrategy[Any]:
    attrs.resolve_types(cls)
    kwargs: dict[str, SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        override = next(
            (
                make
                for (owner, name), make in _FIELD_OVERRIDES.items()
                if name == field.name and issubclass(cls, owner)
            ),
            None,
        )
        kwargs[field.alias] = override() if override is not None else from_type(field.type)
    return st.builds(cls, **kwargs)


_KNOWN: dict[Any, Callable[[], SearchStrategy[Any]]] = {
    TextBlock: text_blocks,
    ImageBlock: image_blocks,
    ThinkingBlock: thinking_blocks,
    ToolCallBlock: tool_call_blocks,
    ToolResultBlock: tool_result_blocks,
    SystemMessage: system_messages,
    UserMessage: user_messages,
    AssistantMessage: assistant_messages,
    ToolResultMessage: tool_result_messages,
    Usage: usages,
    Cost: costs,
    StopReason: stop_reasons,
    ErrorInfo: error_infos,
    TransferSignal: transfer_signals,
    AgentResult: agent_results,
    ToolDefinition: tool_definitions,
    ModelSettings: model_settings,
    ModelRequest: model_requests,
    TextDelta: text_deltas,
    ThinkingDelta: thinking_deltas,
    ToolCallDelta: tool_call_deltas,
    StreamDone: stream_dones,
    str: texts,
    bool: st.booleans,
    int: counts,
    float: amounts,
    _NoneType: st.none,
    Any: json_data,
}


def from_type(tp: Any) -> SearchStrategy[Any]:
    """A strategy for values of ``tp`` as :data:`trio_agents.converter` understands them.

    Handles every trio_agents value type (with the strategies of this module), unions and
    aliases such as :data:`~trio_agents.Message`, event classes (with :func:`events`), other
    attrs classes (field by field), enums, literals, ``tuple[X, ...]``, ``list[X]``,
    ``dict[str, X]`` and :data:`~trio_agents.JSONValue` (``Any``: JSON data). Anything else is
    left to :func:`hypothesis.strategies.from_type`.
    """
    try:
        known = _KNOWN.get(tp)
    except TypeError:  # an unhashable type form
        known = None
    if known is not None:
        return known()
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (Union, types.UnionType):
        return st.one_of([from_type(arg) for arg in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(from_type(args[0]), max_size=_MAX_ITEMS).map(tuple)
        return st.tuples(*(from_type(arg) for arg in args))
    if origin in (list, Sequence, MutableSequence):
        return st.lists(from_type(args[0]) if args else json_data(), max_size=_MAX_ITEMS)
    if origin in (dict, Mapping, MutableMapping):
        if len(args) == 2 and args == (str, Any):
            return json_values()
        keys, values = args if len(args) == 2 else (str, Any)
        return st.dictionaries(from_type(keys), from_type(values), max_size=_MAX_ITEMS)
    if origin in (frozenset, set):
        return st.frozensets(from_type(args[0]), max_size=_MAX_ITEMS).map(origin)
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return st.sampled_from(tp)
        if issubclass(tp, Event):
            return events(tp)
        if attrs.has(tp):
            return st.deferred(lambda: _builds_attrs(tp))
    return st.from_type(tp)
