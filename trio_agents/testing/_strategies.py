"""Hypothesis strategies for every value type of trio_agents.

Numbers are what the library meets in practice: counts are non-negative integers, times,
durations and money are finite non-negative floats; JSON data uses any finite float.
Collections are kept small so that strategies of whole transcripts stay fast.
"""

from __future__ import annotations

import base64
import enum
import math
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

from .._delegation import FailurePolicy
from .._errors import InvalidArgumentError
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
from .._supervision import (
    DefaultSupervisor,
    RestartStrategy,
    RestartType,
    SupervisorAction,
    SupervisorPolicy,
)
from ._driver import Command, Op
from ._faults import Fault, FaultKind, FaultPlan
from ._plans import DelegationPlan, DelegationStep
from ._trees import AgentTree, TreeNode, Work, WorkItem

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
    return st.builds(
        TransferSignal,
        target=identifiers(),
        message=texts(),
        reason=texts(),
        source=st.just("") | identifiers(),
        messages=st.lists(messages(), max_size=2).map(tuple),
    )


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
        unpriced_models=st.lists(identifiers(), max_size=2),
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


# --------------------------------------------------------------------------- supervision trees


# Weighted so that most failures are handled below the root (an escalation to the root ends
# the system); the first value is what examples shrink to.
_ACTIONS_ON_RETRYABLE = (SupervisorAction.RESTART,) * 6 + (
    SupervisorAction.STOP,
    SupervisorAction.ESCALATE,
)
_ACTIONS_ON_FATAL = (SupervisorAction.STOP,) * 4 + (
    SupervisorAction.ESCALATE,
    SupervisorAction.RESTART,
)


def restart_strategies() -> SearchStrategy[RestartStrategy]:
    """Any :class:`~trio_agents.RestartStrategy`."""
    return st.sampled_from(RestartStrategy)


_RESTART_TYPES = (
    RestartType.TRANSIENT,
    RestartType.TRANSIENT,
    RestartType.PERMANENT,
    RestartType.TEMPORARY,
)
_SUPERVISORS: tuple[SupervisorPolicy | None, ...] = (None, None, DefaultSupervisor())


def tree_nodes(
    name: str,
    children: Sequence[TreeNode] = (),
    *,
    max_restarts: SearchStrategy[int] | None = None,
    restart_windows: Sequence[float | None] = (None, None, 1.0, 2.0, 5.0, math.inf),
    backoffs: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    restart_types: Sequence[RestartType] = _RESTART_TYPES,
) -> SearchStrategy[TreeNode]:
    """:class:`~trio_agents.testing.TreeNode` values called ``name`` with these children and
    drawn supervision settings.

    Restarting retryable errors and stopping the others are the most likely choices; every
    other action comes up too. Windows, backoffs and restart types are drawn from the given
    values (binary fractions keep virtual-time arithmetic exact); the backoff never jitters.
    """
    return st.builds(
        TreeNode,
        name=st.just(name),
        children=st.just(tuple(children)),
        max_restarts=max_restarts if max_restarts is not None else st.sampled_from((2, 1, 3, 0)),
        restart_window=st.sampled_from(tuple(restart_windows)),
        backoff=st.sampled_from(tuple(backoffs)),
        strategy=restart_strategies(),
        on_retryable=st.sampled_from(_ACTIONS_ON_RETRYABLE),
        on_fatal=st.sampled_from(_ACTIONS_ON_FATAL),
        restart=st.sampled_from(tuple(restart_types)),
    )


def agent_trees(
    *,
    max_depth: int = 3,
    max_children: int = 3,
    max_agents: int = 7,
    max_restarts: SearchStrategy[int] | None = None,
    restart_windows: Sequence[float | None] = (None, None, 1.0, 2.0, 5.0, math.inf),
    backoffs: Sequence[float] = (0.0, 0.5, 1.0, 2.0),
    restart_types: Sequence[RestartType] = _RESTART_TYPES,
    supervisors: Sequence[SupervisorPolicy | None] = _SUPERVISORS,
) -> SearchStrategy[AgentTree]:
    """Supervision trees (:class:`~trio_agents.testing.AgentTree`) of 1 to ``max_agents``
    agents, at most ``max_depth`` levels deep with at most ``max_children`` children per
    agent (and per root), with drawn restart limits, windows, backoffs, strategies, restart
    types and policies (see :func:`tree_nodes`). ``supervisors`` are the tree-wide policies to
    draw from (``None``: each node's own actions; the default also draws
    :class:`~trio_agents.DefaultSupervisor`).

    Agents are named by their position: ``"a"``, ``"b"`` at the top, ``"a1"``, ``"a2"``
    under ``"a"``, ``"a1a"`` under ``"a1"``, and so on. Shrinks towards one agent.
    """
    for argument, value in (
        ("max_depth", max_depth),
        ("max_children", max_children),
        ("max_agents", max_agents),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{argument} must be an int >= 1; got {value!r}")
    node_options: dict[str, Any] = {
        "max_restarts": max_restarts,
        "restart_windows": restart_windows,
        "backoffs": backoffs,
        "restart_types": restart_types,
    }

    @st.composite
    def build(draw: st.DrawFn) -> AgentTree:
        budget = [max_agents]

        def label(parent: str, index: int) -> str:
            if not parent:
                return string.ascii_lowercase[index]
            if parent[-1].isdigit():
                return parent + string.ascii_lowercase[index]
            return f"{parent}{index + 1}"

        def node(name: str, depth: int) -> TreeNode:
            budget[0] -= 1
            children: list[TreeNode] = []
            if depth < max_depth and budget[0] > 0:
                count = draw(st.integers(min_value=0, max_value=min(max_children, budget[0])))
                for index in range(count):
                    if budget[0] <= 0:
                        break
                    children.append(node(label(name, index), depth + 1))
            return draw(tree_nodes(name, children, **node_options))

        count = draw(st.integers(min_value=1, max_value=min(max_children, max_agents, 26)))
        roots = []
        for index in range(count):
            if budget[0] <= 0:
                break
            roots.append(node(label("", index), 1))
        return AgentTree(
            roots=tuple(roots),
            strategy=draw(restart_strategies()),
            supervisor=draw(st.sampled_from(tuple(supervisors))),
        )

    return build()


# --------------------------------------------------------------------------- faults


_MODEL_ONLY = frozenset({FaultKind.BAD_JSON, FaultKind.UNKNOWN_TOOL, FaultKind.WRONG_TYPES})


def faults(
    kinds: Sequence[FaultKind] | None = None,
    *,
    delays: Sequence[float] = (0.0, 0.5, 1.0, 5.0),
    sizes: Sequence[int] = (1_000, 100_000),
) -> SearchStrategy[Fault]:
    """:class:`~trio_agents.testing.Fault` values of the given kinds (default: all).

    ``delays`` are the latencies (and the waits before errors) to choose from; ``sizes`` the
    oversize amounts. Pass ``kinds`` without the malformed-call kinds for tool faults, or use
    :func:`tool_faults`.
    """
    chosen = tuple(kinds) if kinds is not None else tuple(FaultKind)
    if not chosen:
        raise InvalidArgumentError("kinds must name at least one FaultKind")
    delay = st.sampled_from(tuple(delays))

    def build(kind: FaultKind) -> SearchStrategy[Fault]:
        if kind is FaultKind.THROTTLED:
            return st.builds(
                Fault.throttled,
                retry_after=st.sampled_from((None, 0.5, 1.0, 10.0)),
                delay=delay,
            )
        if kind is FaultKind.LATENCY:
            return delay.filter(lambda d: d > 0).map(Fault.latency) | st.just(Fault.latency(1.0))
        if kind is FaultKind.OVERSIZE:
            return st.sampled_from(tuple(sizes)).map(Fault.oversize)
        if kind is FaultKind.HANG:
            return st.just(Fault.hang())
        if kind in _MODEL_ONLY:
            return st.just(Fault(kind=kind))
        return st.builds(Fault, kind=st.just(kind), delay=delay)

    return st.sampled_from(chosen).flatmap(build)


def tool_faults(**options: Any) -> SearchStrategy[Fault]:
    """:func:`faults` a tool can have (no malformed tool calls)."""
    return faults([k for k in FaultKind if k not in _MODEL_ONLY], **options)


def fault_plans(
    fault: SearchStrategy[Fault] | None = None,
    *,
    max_index: int = 8,
    max_scheduled: int = 3,
    max_rate: float = 0.3,
) -> SearchStrategy[FaultPlan]:
    """:class:`~trio_agents.testing.FaultPlan` values: up to ``max_scheduled`` faults at call
    indices below ``max_index``, and sometimes a fault with a probability up to ``max_rate``
    and a seed. Shrinks towards the plan without faults.

    :param fault: the faults to use (default: :func:`faults`).
    """
    some = fault if fault is not None else faults()
    scheduled = st.dictionaries(
        st.integers(min_value=0, max_value=max_index - 1), some, max_size=max_scheduled
    )
    rate = st.floats(min_value=0.0, max_value=max_rate, allow_nan=False)
    rates = st.lists(st.tuples(some, rate), max_size=1)
    return st.builds(
        FaultPlan,
        at=scheduled,
        rates=rates,
        seed=st.integers(min_value=0, max_value=2**32 - 1),
    )


# --------------------------------------------------------------------------- workloads


def work_items(
    agents: Sequence[str],
    *,
    works: Sequence[Work] = (Work.OK, Work.SLEEP, Work.HANG, Work.FAIL, Work.FATAL),
    seconds: Sequence[float] = (0.5, 1.0, 3.0),
) -> SearchStrategy[WorkItem]:
    """:class:`~trio_agents.testing.WorkItem` values for the named agents."""
    if not agents:
        raise InvalidArgumentError("agents must name at least one agent")
    return st.builds(
        lambda agent, work, duration: WorkItem(
            agent=agent, work=work, seconds=duration if work is Work.SLEEP else 0.0
        ),
        st.sampled_from(tuple(agents)),
        st.sampled_from(tuple(works)),
        st.sampled_from(tuple(seconds)),
    )


def workloads(
    agents: Sequence[str] | AgentTree,
    *,
    max_size: int = 10,
    **options: Any,
) -> SearchStrategy[tuple[WorkItem, ...]]:
    """Request workloads: tuples of up to ``max_size`` :func:`work_items` for the agents (or
    every agent of a tree). Each item's :attr:`~trio_agents.testing.WorkItem.text` is the
    request text a :class:`~trio_agents.testing.WorkModel` obeys."""
    names = agents.names() if isinstance(agents, AgentTree) else list(agents)
    return st.lists(work_items(names, **options), max_size=max_size).map(tuple)


def commands(
    tree: AgentTree,
    *,
    max_size: int = 20,
    ticks: Sequence[float] = (0.5, 1.0, 2.0, 5.0),
    sleeps: Sequence[float] = (0.5, 1.0, 3.0),
) -> SearchStrategy[list[Command]]:
    """Command lists for :func:`~trio_agents.testing.replay` on ``tree``: spawns, requests
    (including failures, which may fire while other things happen), cancels, closes and ticks,
    with request and close ids numbered from 1. The list starts by spawning every agent."""
    names = tree.names()
    agent = st.sampled_from(names)
    step = st.one_of(
        st.builds(lambda a: Command(op=Op.SPAWN, agent=a), agent),
        st.builds(
            lambda a, w, s: Command(
                op=Op.SEND, agent=a, work=w, seconds=s if w is Work.SLEEP else 0.0
            ),
            agent,
            st.sampled_from(tuple(Work)),
            st.sampled_from(tuple(sleeps)),
        ),
        st.builds(lambda a: Command(op=Op.CANCEL, agent=a), agent),
        st.builds(lambda a: Command(op=Op.CLOSE, agent=a), agent),
        st.builds(lambda s: Command(op=Op.TICK, seconds=s), st.sampled_from(tuple(ticks))),
    )

    def number(steps: list[Command]) -> list[Command]:
        out = [Command(op=Op.SPAWN, agent=name) for name in names]
        for index, command in enumerate(steps, 1):
            if command.op in (Op.SEND, Op.CLOSE):
                command = attrs.evolve(command, id=index)
            out.append(command)
        return out

    return st.lists(step, max_size=max_size).map(number)


# --------------------------------------------------------------------------- delegation plans


def delegation_plans(
    specialists: Sequence[str] = ("researcher", "writer", "critic"),
    *,
    max_depth: int = 3,
    max_calls: int = 3,
    max_steps: int = 6,
    failures: bool = True,
    failure_policies: Sequence[FailurePolicy] = (FailurePolicy.ISOLATE,),
) -> SearchStrategy[DelegationPlan]:
    """:class:`~trio_agents.testing.DelegationPlan` values: which specialists the main agent
    delegates to (up to ``max_calls`` per turn, in parallel), what they delegate in turn (up
    to ``max_depth`` levels, never to a name already on their delegation path), and, with
    ``failures``, which specialists fail. At most ``max_steps`` delegations in all; subtasks
    are numbered ``"t1"``, ``"t2"``, …. Shrinks towards one delegation.
    """
    pool = tuple(specialists)
    if not pool:
        raise InvalidArgumentError("specialists must name at least one specialist")
    for argument, value in (
        ("max_depth", max_depth),
        ("max_calls", max_calls),
        ("max_steps", max_steps),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{argument} must be an int >= 1; got {value!r}")

    @st.composite
    def build(draw: st.DrawFn) -> DelegationPlan:
        budget = [max_steps]
        numbers = iter(range(1, max_steps + 1))

        def calls(depth: int, on_path: tuple[str, ...], minimum: int) -> tuple[DelegationStep, ...]:
            allowed = [name for name in pool if name not in on_path]
            if depth > max_depth or not allowed or budget[0] <= 0:
                return ()
            count = draw(
                st.integers(min_value=min(minimum, budget[0]), max_value=min(max_calls, budget[0]))
            )
            out: list[DelegationStep] = []
            for _ in range(count):
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                name = draw(st.sampled_from(allowed))
                subtask = f"t{next(numbers)}"
                below = calls(depth + 1, (*on_path, name), 0)
                fails = draw(st.booleans()) if failures else False
                out.append(
                    DelegationStep(specialist=name, subtask=subtask, calls=below, fails=fails)
                )
            return tuple(out)

        return DelegationPlan(
            specialists=pool,
            calls=calls(1, (), 1),
            max_depth=max_depth,
            failure_policy=draw(st.sampled_from(tuple(failure_policies))),
        )

    return build()
