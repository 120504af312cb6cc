"""The Anthropic provider against a fake HTTP server on 127.0.0.1 (the SDK's real HTTP stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

pytest.importorskip("anthropic")

import httpx2
from fake_llm_server import FakeLLMServer, Reply, open_fake_llm_server, sse_events

from trio_agents import (
    Agent,
    AssistantMessage,
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ContextWindowExceeded,
    ImageBlock,
    InvalidArgumentError,
    ModelOverloaded,
    ModelSettings,
    ModelThrottled,
    ModelTimeout,
    NetworkError,
    StopReason,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolResultMessage,
    UserMessage,
    tool,
)
from trio_agents._models import (
    ModelRequest,
    StreamDone,
    TextDelta,
    ThinkingDelta,
    ToolCallDelta,
    ToolDefinition,
)
from trio_agents.models import ModelRequestsForbidden, override_allow_model_requests
from trio_agents.models.anthropic import AnthropicModel


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with open_fake_llm_server() as srv:
        yield srv


def model_for(server: FakeLLMServer, **kwargs: Any) -> AnthropicModel:
    kwargs.setdefault("api_key", "test-key")
    return AnthropicModel("claude-test", base_url=server.url, **kwargs)


def message(
    *content: dict[str, Any], stop: str = "end_turn", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": list(content) or [{"type": "text", "text": "hello"}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 3},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(call_id: str, name: str, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def stream_of(*middle: tuple[str, Any], stop: str = "end_turn", finish: bool = True) -> list[str]:
    start = message(
        usage={
            "input_tokens": 25,
            "output_tokens": 1,
            "cache_read_input_tokens": 7,
            "cache_creation_input_tokens": 3,
        }
    )
    start["content"] = []
    start["stop_reason"] = None
    pairs: list[tuple[str, Any]] = [("message_start", {"type": "message_start", "message": start})]
    pairs += middle
    if finish:
        pairs += [
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": 12},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    return sse_events(*pairs)


def block_start(index: int, block: dict[str, Any]) -> tuple[str, Any]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def block_delta(index: int, delta: dict[str, Any]) -> tuple[str, Any]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def block_stop(index: int) -> tuple[str, Any]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


REQ = ModelRequest(messages=[UserMessage.text("hi")])


# --------------------------------------------------------------------------- request building


async def test_request_body_uses_blocks_and_merges_turns(server: FakeLLMServer) -> None:
    server.queue(Reply(body=message()))
    request = ModelRequest(
        system="be brief",
        messages=[
            SystemMessage("also kind"),
            UserMessage((TextBlock("look"), ImageBlock("image/png", data="AAAA"))),
            AssistantMessage(
                content=(
                    ThinkingBlock("hmm", signature="sig"),
                    ThinkingBlock("unsigned"),
                    TextBlock("checking"),
                    ToolCallBlock(id="t1", name="add", arguments={"a": 1}),
                )
            ),
            ToolResultMessage((ToolResultBlock(tool_call_id="t1", content="2", is_error=False),)),
            UserMessage((ImageBlock("image/jpeg", url="https://x/y.jpg"),)),
        ],
        tools=[ToolDefinition(name="add", description="adds", parameters={"type": "object"})],
        settings=ModelSettings(temperature=0.2, seed=3, extra={"top_k": 5}),
    )
    await model_for(server).request(request)
    recorded = server.requests[0]
    body = recorded.body
    assert recorded.path == "/v1/messages"
    headers = recorded.headers
    assert "test-key" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert body["system"] == "be brief\n\nalso kind"
    assert body["max_tokens"] == 4096
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "text", "text": "checking"},
                {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1}},
            ],
        },
        {
            "role": "user",  # tool results and the next user turn merged into one turn
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "2", "is_error": False},
                {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
            ],
        },
    ]
    assert body["tools"] == [
        {"name": "add", "description": "adds", "input_schema": {"type": "object"}}
    ]
    assert body["temperature"] == 0.2
    assert body["top_k"] == 5
    assert "seed" not in body


def test_cache_control_marks_system_tools_and_last_message() -> None:
    model = AnthropicModel("c", api_key="k", cache_control=("system", "tools", "messages"))
    params = model.build_params(
        ModelRequest(
            system="sys",
            messages=[UserMessage.text("one"), UserMessage.text("two")],
            tools=[ToolDefinition(name="a"), ToolDefinition(name="b")],
            settings=ModelSettings(max_tokens=10),
        )
    )
    eph = {"type": "ephemeral"}
    assert params["system"] == [{"type": "text", "text": "sys", "cache_control": eph}]
    assert "cache_control" not in params["tools"][0]
    assert params["tools"][1]["cache_control"] == eph
    assert params["messages"][-1]["content"][-1] == {
        "type": "text",
        "text": "two",
        "cache_control": eph,
    }
    assert "cache_control" not in params["messages"][-1]["content"][0]
    assert params["max_tokens"] == 10
    with pytest.raises(InvalidArgumentError, match="cache_control"):
        AnthropicModel("c", cache_control=("everything",))
    with pytest.raises(InvalidArgumentError, match="max_tokens"):
        AnthropicModel("c", max_tokens=0)


# --------------------------------------------------------------------------- response parsing


async def test_response_blocks_usage_and_cache_counts(server: FakeLLMServer) -> None:
    usage = {
        "input_tokens": 5,
        "output_tokens": 9,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    server.queue(
        Reply(
            body=message(
                {"type": "thinking", "thinking": "let me see", "signature": "s1"},
                {"type": "redacted_thinking", "data": "xx"},
                text("Adding."),
                tool_use("t1", "add", {"a": 1, "b": 2}),
                tool_use("t2", "add", {"a": 3, "b": 4}),
                stop="tool_use",
                usage=usage,
            )
        )
    )
    result = await model_for(server).request(REQ)
    assert result.content == (
        ThinkingBlock("let me see", "s1"),
        TextBlock("Adding."),
        ToolCallBlock(id="t1", name="add", arguments={"a": 1, "b": 2}),
        ToolCallBlock(id="t2", name="add", arguments={"a": 3, "b": 4}),
    )
    assert result.stop_reason is StopReason.TOOL_USE
    u = result.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        5,
        9,
        100,
        20,
    )
    assert u.total_tokens == 134
    assert result.model == f"anthropic:claude-test@{server.url}"


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        ("end_turn", StopReason.STOP),
        ("stop_sequence", StopReason.STOP),
        ("pause_turn", StopReason.STOP),
        ("max_tokens", StopReason.LENGTH),
        ("model_context_window_exceeded", StopReason.LENGTH),
        ("tool_use", StopReason.TOOL_USE),
    ],
)
async def test_stop_reasons_map(server: FakeLLMServer, stop: str, expected: StopReason) -> None:
    server.queue(Reply(body=message(text("x"), stop=stop)))
    assert (await model_for(server).request(REQ)).stop_reason is expected


async def test_refusal_is_content_filtered(server: FakeLLMServer) -> None:
    server.queue(Reply(body=message(text(""), stop="refusal")))
    with pytest.raises(ContentFiltered):
        await model_for(server).request(REQ)


# --------------------------------------------------------------------------- streaming


async def test_stream_assembles_thinking_text_and_tool_input(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            sse=stream_of(
                block_start(0, {"type": "thinking", "thinking": ""}),
                ("ping", {"type": "ping"}),
                block_delta(0, {"type": "thinking_delta", "thinking": "plan "}),
                block_delta(0, {"type": "thinking_delta", "thinking": "it"}),
                block_delta(0, {"type": "signature_delta", "signature": "sig"}),
                block_stop(0),
                block_start(1, {"type": "text", "text": ""}),
                block_delta(1, {"type": "text_delta", "text": "Calling "}),
                block_delta(1, {"type": "text_delta", "text": "tools."}),
                block_stop(1),
                block_start(2, {"type": "tool_use", "id": "t1", "name": "add", "input": {}}),
                block_delta(2, {"type": "input_json_delta", "partial_json": '{"a": 1,'}),
                block_delta(2, {"type": "input_json_delta", "partial_json": ' "b": 2}'}),
                block_stop(2),
                block_start(3, {"type": "tool_use", "id": "t2", "name": "now", "input": {}}),
                block_stop(3),
                stop="tool_use",
            )
        )
    )
    async with model_for(server).stream(REQ) as events:
        received = [event async for event in events]
    assert server.requests[0].body["stream"] is True
    assert received[:-1] == [
        ThinkingDelta("plan "),
        ThinkingDelta("it"),
        TextDelta("Calling "),
        TextDelta("tools."),
        ToolCallDelta(index=0, id="t1", name="add"),
        ToolCallDelta(index=0, arguments='{"a": 1,'),
        ToolCallDelta(index=0, arguments=' "b": 2}'),
        ToolCallDelta(index=1, id="t2", name="now"),
    ]
    done = received[-1]
    assert isinstance(done, StreamDone)
    assert done.message.content == (
        ThinkingBlock("plan it", "sig"),
        TextBlock("Calling tools."),
        ToolCallBlock(id="t1", name="add", arguments={"a": 1, "b": 2}),
        ToolCallBlock(id="t2", name="now", arguments={}),
    )
    assert done.message.stop_reason is StopReason.TOOL_USE
    u = done.message.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens) == (
        25,
        12,
        7,
        3,
    )


async def test_stream_cut_off_midway_is_a_network_error(server: FakeLLMServer) -> None:
    events = stream_of(
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "par"}),
        block_delta(0, {"type": "text_delta", "text": "tial"}),
    )
    server.queue(Reply(sse=events, cut_after=3))
    seen: list[object] = []
    with pytest.raises(NetworkError):
        async with model_for(server).stream(REQ) as stream:
            async for event in stream:
                seen.append(event)
    assert seen == [TextDelta("par")]


async def test_stream_without_message_stop_is_a_network_error(server: FakeLLMServer) -> None:
    server.queue(Reply(sse=stream_of(block_start(0, {"type": "text", "text": "x"}), finish=False)))
    with pytest.raises(NetworkError, match="message_stop"):
        async with model_for(server).stream(REQ) as stream:
            async for _ in stream:
                pass


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [
        ("overloaded_error", ModelOverloaded),
        ("api_error", ModelOverloaded),
        ("rate_limit_error", ModelThrottled),
        ("invalid_request_error", BadRequestError),
    ],
)
async def test_error_event_inside_a_stream_is_classified(
    server: FakeLLMServer, error_type: str, expected: type[Exception]
) -> None:
    events = stream_of(
        block_start(0, {"type": "text", "text": ""}),
        ("error", {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}),
        finish=False,
    )
    server.queue(Reply(sse=events))
    with pytest.raises(expected):
        async with model_for(server).stream(REQ) as stream:
            async for _ in stream:
                pass


# --------------------------------------------------------------------------- error mapping


def error(kind: str, text_: str = "problem") -> Any:
    return {"type": "error", "error": {"type": kind, "message": text_}}


async def test_429_is_throttled_with_retry_after(server: FakeLLMServer) -> None:
    server.queue(Reply(429, error("rate_limit_error"), headers={"retry-after": "4"}))
    with pytest.raises(ModelThrottled) as info:
        await model_for(server).request(REQ)
    assert info.value.retry_after == 4.0
    assert len(server.requests) == 1  # the SDK's own retries are off


async def test_429_retry_after_ms_wins(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            429, error("rate_limit_error"), headers={"retry-after-ms": "1500", "retry-after": "9"}
        )
    )
    with pytest.raises(ModelThrottled) as info:
        await model_for(server).request(REQ)
    assert info.value.retry_after == 1.5


@pytest.mark.parametrize("status", [500, 503, 529])
async def test_529_503_500_are_overloaded(server: FakeLLMServer, status: int) -> None:
    server.queue(Reply(status, error("overloaded_error", "Overloaded")))
    with pytest.raises(ModelOverloaded) as info:
        await model_for(server).request(REQ)
    assert info.value.retryable
    assert len(server.requests) == 1


async def test_connection_refused_is_a_network_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        model = AnthropicModel("c", base_url=f"http://127.0.0.1:{port}")
        with pytest.raises(NetworkError) as info:
            await model.request(REQ)
    assert info.value.retryable


async def test_a_server_that_never_answers_times_out_naming_the_server(
    server: FakeLLMServer,
) -> None:
    server.queue(Reply(hang_after=0))
    with trio.fail_after(10), pytest.raises(ModelTimeout) as info:
        await model_for(server, read_timeout=0.2).request(REQ)
    assert info.value.retryable
    assert server.url in str(info.value)
    assert "read_timeout=0.2" in str(info.value)


def test_default_timeouts_are_bounded() -> None:
    timeout = AnthropicModel("c", api_key="k")._make_client().timeout
    assert isinstance(timeout, httpx2.Timeout)
    assert (timeout.connect, timeout.read) == (10.0, 120.0)


async def test_prompt_too_long_is_context_window_exceeded(server: FakeLLMServer) -> None:
    server.queue(
        Reply(400, error("invalid_request_error", "prompt is too long: 208310 tokens > 200000"))
    )
    with pytest.raises(ContextWindowExceeded):
        await model_for(server).request(REQ)


@pytest.mark.parametrize(
    ("status", "kind"), [(401, "authentication_error"), (403, "permission_error")]
)
async def test_401_403_are_authentication_errors(
    server: FakeLLMServer, status: int, kind: str
) -> None:
    server.queue(Reply(status, error(kind)))
    with pytest.raises(AuthenticationError):
        await model_for(server).request(REQ)


@pytest.mark.parametrize("status", [400, 404, 413])
async def test_other_4xx_are_bad_requests(server: FakeLLMServer, status: int) -> None:
    server.queue(Reply(status, error("invalid_request_error", "messages: bad")))
    with pytest.raises(BadRequestError, match="messages: bad"):
        await model_for(server).request(REQ)


async def test_missing_api_key_is_an_authentication_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="ANTHROPIC_API_KEY"):
        await AnthropicModel("claude-haiku-4-5").request(REQ)


# --------------------------------------------------------------------------- cancellation


async def test_cancel_aborts_a_stream_at_once_and_the_model_stays_usable(
    server: FakeLLMServer,
) -> None:
    server.queue(
        Reply(sse=stream_of(block_start(0, {"type": "text", "text": "first"})), hang_after=2),
        Reply(body=message(text("again"))),
    )
    async with model_for(server) as model:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with model.stream(REQ) as events:
                    async for event in events:
                        assert event == TextDelta("first")
                        scope.cancel(reason="enough")
            assert scope.cancelled_caught
            await server.disconnected.wait()
            result = await model.request(REQ)
    assert result.text == "again"


async def test_forbidden_requests_raise_before_sending(server: FakeLLMServer) -> None:
    with override_allow_model_requests(False), pytest.raises(ModelRequestsForbidden):
        await model_for(server).request(REQ)
    assert server.requests == []


# --------------------------------------------------------------------------- in an agent


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_multi_turn_tool_loop_through_an_agent(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            body=message(
                text("Let me add."), tool_use("t1", "add", {"a": 2, "b": 3}), stop="tool_use"
            )
        ),
        Reply(body=message(text("It is 5."))),
    )
    async with model_for(server) as model:
        result = await Agent(model, instructions="use tools", tools=[add]).run("2 + 3?")
    assert result.final_text == "It is 5."
    second = server.requests[1].body
    assert second["system"] == "use tools"
    assert second["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": "t1",
        "name": "add",
        "input": {"a": 2, "b": 3},
    }
    assert second["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "5", "is_error": False}
        ],
    }
