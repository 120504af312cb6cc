"""The converter: exact JSON round trips, the wire format, and errors that say where."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import cattrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_agents
from trio_agents import (
    AgentResult,
    AssistantContent,
    AssistantMessage,
    ContentBlock,
    Cost,
    DeserializationError,
    ErrorInfo,
    Event,
    ImageBlock,
    InvalidArgumentError,
    Message,
    ModelRequest,
    ModelSettings,
    RunFinished,
    RunStarted,
    StopReason,
    StreamDone,
    StreamEvent,
    SystemMessage,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCallBlock,
    ToolCallDelta,
    ToolDefinition,
    ToolResultBlock,
    ToolResultMessage,
    ToolStarted,
    TransferSignal,
    TurnStarted,
    Usage,
    UserContent,
    UserMessage,
    converter,
    dump,
    dumps_json,
    load,
    loads_json,
)
from trio_agents._events import ModelDelta
from trio_agents._serde import event_classes
from trio_agents.testing import strategies

# --------------------------------------------------------------------------- helpers


def assert_json_data(value: Any, path: str = "$") -> None:
    """``value`` is made of dicts with str keys, lists, str, int, float, bool and None only."""
    if isinstance(value, dict):
        assert type(value) is dict, path
        for key, item in value.items():
            assert type(key) is str, f"{path}: key {key!r}"
            assert_json_data(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        assert type(value) is list, path
        for index, item in enumerate(value):
            assert_json_data(item, f"{path}[{index}]")
    else:
        assert type(value) in (str, int, float, bool, type(None)), f"{path}: {type(value)}"


def assert_round_trip(value: Any, cls: Any) -> None:
    data = dump(value)
    assert_json_data(data)
    text = json.dumps(data, allow_nan=False)
    back = load(json.loads(text), cls)
    assert back == value
    assert type(back) is type(value)
    # Exact down to the bits of every float (-0.0 included) and the order of keys.
    assert json.dumps(dump(back), allow_nan=False) == text
    assert loads_json(dumps_json(value), cls) == value


# --------------------------------------------------------------------------- round trips

ROUND_TRIPS: list[tuple[str, Callable[[], st.SearchStrategy[Any]], Any]] = [  # name, strategy, cls
    ("TextBlock", strategies.text_blocks, TextBlock),
    ("ImageBlock", strategies.image_blocks, ImageBlock),
    ("ThinkingBlock", strategies.thinking_blocks, ThinkingBlock),
    ("ToolCallBlock", strategies.tool_call_blocks, ToolCallBlock),
    ("ToolResultBlock", strategies.tool_result_blocks, ToolResultBlock),
    ("ContentBlock", strategies.content_blocks, ContentBlock),
    ("UserContent", strategies.user_contents, UserContent),
    ("AssistantContent", strategies.assistant_contents, AssistantContent),
    ("SystemMessage", strategies.system_messages, SystemMessage),
    ("UserMessage", strategies.user_messages, UserMessage),
    ("AssistantMessage", strategies.assistant_messages, AssistantMessage),
    ("ToolResultMessage", strategies.tool_result_messages, ToolResultMessage),
    ("Message", strategies.messages, Message),
    ("Usage", strategies.usages, Usage),
    ("Cost", strategies.costs, Cost),
    ("StopReason", strategies.stop_reasons, StopReason),
    ("ErrorInfo", strategies.error_infos, ErrorInfo),
    ("TransferSignal", strategies.transfer_signals, TransferSignal),
    ("AgentResult", strategies.agent_results, AgentResult),
    ("ToolDefinition", strategies.tool_definitions, ToolDefinition),
    ("ModelSettings", strategies.model_settings, ModelSettings),
    ("ModelRequest", strategies.model_requests, ModelRequest),
    ("TextDelta", strategies.text_deltas, TextDelta),
    ("ThinkingDelta", strategies.thinking_deltas, ThinkingDelta),
    ("ToolCallDelta", strategies.tool_call_deltas, ToolCallDelta),
    ("StreamDone", strategies.stream_dones, StreamDone),
    ("StreamEvent", strategies.stream_events, StreamEvent),
    ("Event", strategies.events, Event),
]


# Built once: a strategy made anew for every example would be rebuilt (slowly) every time.
_STRATEGIES = {name: make() for name, make, _ in ROUND_TRIPS}


@pytest.mark.parametrize(("name", "cls"), [pytest.param(n, c, id=n) for n, _, c in ROUND_TRIPS])
@given(data=st.data())
def test_round_trip(name: str, cls: Any, data: st.DataObject) -> None:
    assert_round_trip(data.draw(_STRATEGIES[name]), cls)


@given(strategies.events())
def test_every_event_round_trips_by_its_own_class(event: Event) -> None:
    assert_round_trip(event, type(event))


@given(strategies.messages())
def test_message_round_trips_by_its_own_class(message: Message) -> None:
    assert_round_trip(message, type(message))


@given(st.lists(strategies.messages(), max_size=4))
def test_a_transcript_dumps_to_a_list(transcript: list[Message]) -> None:
    data = dump(tuple(transcript))
    assert isinstance(data, list)
    assert load(data, tuple[Message, ...]) == tuple(transcript)


@given(strategies.json_values())
def test_json_values_are_json(value: dict[str, Any]) -> None:
    assert_json_data(value)
    assert json.loads(json.dumps(value, allow_nan=False)) == value


@given(st.floats(allow_nan=False))
def test_floats_round_trip_exactly(x: float) -> None:
    cost = Cost(input=x, output=-x, cache_read=x / 3, cache_write=x * 1e-300, total=x)
    back = loads_json(dumps_json(cost), Cost)
    assert [repr(getattr(back, f.name)) for f in attrs.fields(Cost)] == [
        repr(getattr(cost, f.name)) for f in attrs.fields(Cost)
    ]


def test_load_copies_json_values() -> None:
    data = {"type": "tool_call", "id": "1", "name": "t", "arguments": {"a": [1]}}
    block = load(data, ToolCallBlock)
    data["arguments"]["a"].append(2)
    assert block.arguments == {"a": [1]}
    dumped = dump(block)
    dumped["arguments"]["a"].append(3)
    assert block.arguments == {"a": [1]}


# --------------------------------------------------------------------------- wire format


def test_blocks_wire_format() -> None:
    assert dump(TextBlock("hi")) == {"type": "text", "text": "hi"}
    assert dump(ImageBlock("image/png", url="https://x/y.png")) == {
        "type": "image",
        "media_type": "image/png",
        "data": None,
        "url": "https://x/y.png",
    }
    assert dump(ThinkingBlock("hmm", "sig")) == {
        "type": "thinking",
        "thinking": "hmm",
        "signature": "sig",
    }
    assert dump(ToolCallBlock(id="c1", name="search", arguments={"q": "trio", "n": 3})) == {
        "type": "tool_call",
        "id": "c1",
        "name": "search",
        "arguments": {"q": "trio", "n": 3},
        "raw_arguments": None,
    }
    assert dump(ToolResultBlock(tool_call_id="c1", content="ok", tool_name="search")) == {
        "type": "tool_result",
        "tool_call_id": "c1",
        "content": "ok",
        "is_error": False,
        "tool_name": "search",
    }


def test_tag_comes_first() -> None:
    assert next(iter(dump(ToolCallBlock(id="1", name="t")))) == "type"
    assert next(iter(dump(RunStarted(time=0.0, agent="", run=1)))) == "kind"


def test_messages_wire_format() -> None:
    assert dump(SystemMessage("be brief")) == {"type": "system", "content": "be brief"}
    assert dump(UserMessage.text("hello")) == {
        "type": "user",
        "content": [{"type": "text", "text": "hello"}],
    }
    assert dump(
        AssistantMessage(
            content=(ToolCallBlock(id="1", name="t"),),
            usage=Usage(input_tokens=2, output_tokens=3),
            stop_reason=StopReason.TOOL_USE,
            model="m",
        )
    ) == {
        "type": "assistant",
        "content": [
            {"type": "tool_call", "id": "1", "name": "t", "arguments": {}, "raw_arguments": None}
        ],
        "usage": {
            "requests": 0,
            "input_tokens": 2,
            "output_tokens": 3,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "total_tokens": 5,
        },
        "stop_reason": "tool_use",
        "model": "m",
    }
    assert dump(ToolResultMessage([ToolResultBlock(tool_call_id="1", content="x")])) == {
        "type": "tool_results",
        "results": [
            {
                "type": "tool_result",
                "tool_call_id": "1",
                "content": "x",
                "is_error": False,
                "tool_name": "",
            }
        ],
    }


def test_result_wire_format() -> None:
    result = AgentResult(
        messages=(UserMessage.text("q"),),
        stop_reason=StopReason.ERROR,
        cost=Cost(input=0.5),
        error=ErrorInfo(
            type="ModelThrottled", message="slow down", retryable=True, retry_after=2.0
        ),
        transfer=TransferSignal(target="billing", message="over to you"),
        duration=1.25,
    )
    assert dump(result) == {
        "messages": [{"type": "user", "content": [{"type": "text", "text": "q"}]}],
        "stop_reason": "error",
        "usage": dump(Usage()),
        "cost": {"input": 0.5, "output": 0.0, "cache_read": 0.0, "cache_write": 0.0, "total": 0.5},
        "error": {
            "type": "ModelThrottled",
            "message": "slow down",
            "retryable": True,
            "retry_after": 2.0,
        },
        "transfer": {
            "target": "billing",
            "message": "over to you",
            "reason": "",
            "source": "",
            "messages": [],
        },
        "duration": 1.25,
        "unpriced_models": [],
        "pending_approvals": [],
        "held_results": [],
        "output": None,
    }
    assert dump(StopReason.TRANSFER) == "transfer"


def test_model_request_and_stream_wire_format() -> None:
    request = ModelRequest(
        system="s",
        messages=(SystemMessage("x"),),
        tools=(ToolDefinition(name="t"),),
        settings=ModelSettings(temperature=0.5, extra={"top_k": 3}),
    )
    assert dump(request) == {
        "system": "s",
        "messages": [{"type": "system", "content": "x"}],
        "tools": [
            {"name": "t", "description": "", "parameters": {"type": "object", "properties": {}}}
        ],
        "settings": {"max_tokens": None, "temperature": 0.5, "seed": None, "extra": {"top_k": 3}},
        "output": None,
    }
    assert dump(TextDelta("a")) == {"type": "text_delta", "text": "a"}
    assert dump(ThinkingDelta("b")) == {"type": "thinking_delta", "thinking": "b"}
    assert dump(ToolCallDelta(index=0, id="1", name="t", arguments='{"')) == {
        "type": "tool_call_delta",
        "index": 0,
        "id": "1",
        "name": "t",
        "arguments": '{"',
    }
    assert dump(StreamDone(AssistantMessage(content=())))["type"] == "stream_done"


def test_events_wire_format() -> None:
    assert dump(RunStarted(time=1.5, agent="lead/worker", run=2)) == {
        "kind": "run_started",
        "time": 1.5,
        "agent": "lead/worker",
        "run": 2,
    }
    assert dump(ModelDelta(time=0.0, agent="a", delta=TextDelta("x"))) == {
        "kind": "model_delta",
        "time": 0.0,
        "agent": "a",
        "delta": {"type": "text_delta", "text": "x"},
    }
    event = ToolStarted(time=0.0, agent="a", call=ToolCallBlock(id="1", name="t"))
    assert dump(event)["call"]["type"] == "tool_call"


def test_dumps_json_is_compact_and_ascii() -> None:
    assert dumps_json(TextBlock("é")) == '{"type":"text","text":"\\u00e9"}'
    assert dumps_json(TextBlock("a"), indent=2) == '{\n  "type": "text",\n  "text": "a"\n}'


def test_load_into_base_event_returns_the_subclass() -> None:
    event = RunStarted(time=0.0, agent="", run=1)
    assert type(load(dump(event), Event)) is RunStarted
    assert load(dump(event), RunStarted) == event


def test_public_converter_is_the_one_behind_dump() -> None:
    assert isinstance(converter, cattrs.Converter)
    assert trio_agents.converter is converter
    assert converter.unstructure(TextBlock("x")) == dump(TextBlock("x"))


# --------------------------------------------------------------------------- bad input


def _bad(data: Any, cls: Any) -> DeserializationError:
    with pytest.raises(DeserializationError) as info:
        load(data, cls)
    assert isinstance(info.value.__cause__, Exception)
    return info.value


def _result_data() -> Any:
    result = AgentResult(
        messages=(
            SystemMessage("s"),
            UserMessage.text("q"),
            AssistantMessage(content=(TextBlock("a"), ToolCallBlock(id="1", name="t"))),
            ToolResultMessage([ToolResultBlock(tool_call_id="1", content="r")]),
        )
    )
    return json.loads(dumps_json(result))


def test_unknown_tag_names_path_and_tag() -> None:
    data = _result_data()
    data["messages"][2]["content"][0]["type"] = "txt"
    error = _bad(data, AgentResult)
    assert str(error) == (
        "invalid data for AgentResult @ $.messages[2].content[0]: unknown type tag 'txt' "
        "(expected one of: text, thinking, tool_call)"
    )
    assert isinstance(error.__cause__, cattrs.ClassValidationError)
    assert isinstance(error, trio_agents.UsageError)


def test_unknown_message_type() -> None:
    data = _result_data()
    data["messages"][1]["type"] = "human"
    error = _bad(data, AgentResult)
    assert "@ $.messages[1]: unknown type tag 'human'" in str(error)
    assert "expected one of: system, user, assistant, tool_results" in str(error)


def test_missing_tag() -> None:
    error = _bad({"text": "x"}, ContentBlock)
    assert str(error) == (
        "invalid data for ContentBlock @ $: missing 'type' tag "
        "(expected one of: text, image, thinking, tool_call, tool_result)"
    )
    assert "missing 'type' tag" in str(_bad({"text": "x"}, TextBlock))


def test_tag_of_another_class() -> None:
    error = _bad({"type": "image", "text": "x"}, TextBlock)
    assert "wrong type tag 'image' (expected 'text' for TextBlock)" in str(error)


def test_wrong_scalar_types_are_not_coerced() -> None:
    data = _result_data()
    data["usage"]["input_tokens"] = "3"
    data["usage"]["output_tokens"] = True
    data["duration"] = "1.5"
    data["messages"][0]["content"] = 7
    message = str(_bad(data, AgentResult))
    assert "@ $.usage.input_tokens: expected an integer, got str '3'" in message
    assert "@ $.usage.output_tokens: expected an integer, got bool True" in message
    assert "@ $.duration: expected a number, got str '1.5'" in message
    assert "@ $.messages[0].content: expected a string, got int 7" in message


def test_ints_are_accepted_for_floats() -> None:
    assert load({"input": 1, "output": 0, "cache_read": 0, "cache_write": 0, "total": 1}, Cost) == (
        Cost(input=1.0)
    )


def test_missing_and_unknown_fields() -> None:
    data = _result_data()
    del data["messages"][3]["results"][0]["content"]
    data["messages"][3]["results"][0]["contents"] = "r"
    message = str(_bad(data, AgentResult))
    assert "@ $.messages[3].results[0].content: missing required field" in message
    assert "@ $.messages[3].results[0]: unknown field 'contents' for ToolResultBlock" in message


def test_bad_enum_value() -> None:
    data = _result_data()
    data["stop_reason"] = "halt"
    assert "@ $.stop_reason: invalid StopReason str 'halt' (expected one of: 'stop'" in str(
        _bad(data, AgentResult)
    )


def test_not_an_object_or_list() -> None:
    assert str(_bad("x", AgentResult)) == (
        "invalid data for AgentResult @ $: expected an object for AgentResult, got str 'x'"
    )
    assert "@ $.messages: expected a list, got str 'abc'" in str(
        _bad({"messages": "abc"}, AgentResult)
    )
    assert "@ $: expected an object for Message, got null" in str(_bad(None, Message))


def test_json_values_must_be_json_data() -> None:
    data = {"type": "tool_call", "id": "1", "name": "t", "arguments": {"a": [1, {2, 3}]}}
    message = str(_bad(data, ToolCallBlock))
    assert "@ $.arguments['a'][1]: set {2, 3} is not JSON data" in message
    data["arguments"] = ["not", "an", "object"]
    assert "@ $.arguments: expected an object, got list" in str(_bad(data, ToolCallBlock))
    data["arguments"] = {"a": (1, 2)}
    assert "@ $.arguments['a']: tuple (1, 2) is not JSON data" in str(_bad(data, ToolCallBlock))


def test_many_errors_are_summarised() -> None:
    data = {"type": "user", "content": [{"type": "nope"} for _ in range(8)]}
    message = str(_bad(data, UserMessage))
    assert "@ $.content[0]: unknown type tag 'nope'" in message
    assert "and 3 more" in message


def test_bad_event_kinds() -> None:
    data = dump(RunStarted(time=0.0, agent="", run=1))
    data["kind"] = "run_begun"
    message = str(_bad(data, Event))
    assert message.startswith("invalid data for Event @ $: unknown event kind 'run_begun'")
    assert "run_started" in message
    del data["kind"]
    assert "@ $: missing 'kind' tag" in str(_bad(data, Event))
    data["kind"] = "run_started"
    assert "@ $: unexpected event kind 'run_started'" in str(_bad(data, TurnStarted))
    bad_inner = dump(RunFinished(time=0.0, agent="", run=1, result=AgentResult()))
    bad_inner["result"]["messages"] = [{"type": "txt"}]
    assert "@ $.result.messages[0]: unknown type tag 'txt'" in str(_bad(bad_inner, Event))


def test_invalid_json_text() -> None:
    with pytest.raises(DeserializationError, match=r"invalid JSON for Message: Expecting") as info:
        loads_json("{", Message)
    assert isinstance(info.value.__cause__, json.JSONDecodeError)


# --------------------------------------------------------------------------- dump refuses non-JSON


def test_dump_refuses_non_json_values() -> None:
    with pytest.raises(InvalidArgumentError, match=r"at \['a'\]\[0\]: set .* is not JSON data"):
        dump(ToolCallBlock(id="1", name="t", arguments={"a": [{1}]}))
    with pytest.raises(InvalidArgumentError, match=r"at \['a'\]: tuple"):
        dump(ModelSettings(extra={"a": (1, 2)}))
    with pytest.raises(InvalidArgumentError, match=r"object key 1 is not a string"):
        dump(ToolCallBlock(id="1", name="t", arguments={1: "x"}))
    with pytest.raises(InvalidArgumentError, match=r"cannot dump object <.*no hook for object"):
        dump(object())


# --------------------------------------------------------------------------- events defined later


@attrs.frozen(kw_only=True)
class LaterEvent(Event):
    """An event defined after trio_agents was imported, in another module."""

    kind: ClassVar[str] = "test_serde.later"
    payload: dict[str, Any]
    results: tuple[ToolResultBlock, ...] = ()
    reason: StopReason | None = None
    inner: Event | None = None


@attrs.frozen(kw_only=True)
class Envelope:
    """A plain attrs class with a field typed as the Event base class."""

    events: tuple[Event, ...]


def test_later_event_round_trips() -> None:
    event = LaterEvent(
        time=2.5,
        agent="lead",
        payload={"x": [1, 2.5, None]},
        results=(ToolResultBlock(tool_call_id="1", content="r"),),
        reason=StopReason.LENGTH,
        inner=RunStarted(time=1.0, agent="lead", run=1),
    )
    data = dump(event)
    assert data["kind"] == "test_serde.later"
    assert data["inner"]["kind"] == "run_started"
    assert_round_trip(event, Event)
    assert_round_trip(event, LaterEvent)
    assert_round_trip(Envelope(events=(event, RunStarted(time=0.0, agent="", run=1))), Envelope)


def test_event_defined_inside_a_test_round_trips() -> None:
    @attrs.frozen(kw_only=True)
    class LocalEvent(Event):
        kind: ClassVar[str] = "test_serde.local"
        count: int

    assert_round_trip(LocalEvent(time=0.0, agent="", count=3), Event)
    assert LocalEvent in event_classes()


@given(strategies.events(LaterEvent))
def test_events_strategy_covers_later_classes(event: Event) -> None:
    assert type(event) is LaterEvent
    assert_round_trip(event, Event)


def test_event_without_its_own_kind_cannot_be_dumped() -> None:
    @attrs.frozen(kw_only=True)
    class NoKind(RunStarted):
        extra: int = 0

    with pytest.raises(InvalidArgumentError, match=r"NoKind: an Event subclass must .* own tag"):
        dump(NoKind(time=0.0, agent="", run=1))
    assert NoKind not in event_classes()


def test_two_classes_with_one_kind_are_refused() -> None:
    @attrs.frozen(kw_only=True)
    class First(Event):
        kind: ClassVar[str] = "test_serde.clash"

    @attrs.frozen(kw_only=True)
    class Second(Event):
        kind: ClassVar[str] = "test_serde.clash"

    with pytest.raises(InvalidArgumentError, match=r"event kind 'test_serde.clash' is used by"):
        dump(First(time=0.0, agent=""))
    message = str(_bad({"kind": "test_serde.clash", "time": 0.0, "agent": ""}, Event))
    assert "event kind 'test_serde.clash' is ambiguous" in message
    assert First not in event_classes()
    assert Second not in event_classes()


# --------------------------------------------------------------------------- packaging


def test_strategies_module_exports() -> None:
    for name in strategies.__all__:
        factory = getattr(strategies, name)
        assert callable(factory), name
    assert "strategies" in trio_agents.testing.__all__
    for name in ("converter", "dump", "dumps_json", "load", "loads_json"):
        assert name in trio_agents.__all__


def test_importing_testing_does_not_import_hypothesis() -> None:
    code = (
        "import sys, trio_agents.testing; "
        "assert 'hypothesis' not in sys.modules, 'hypothesis imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
