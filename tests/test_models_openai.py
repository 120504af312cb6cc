"""The OpenAI provider against a fake HTTP server on 127.0.0.1 (the SDK's real HTTP stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

pytest.importorskip("openai")

import httpx2
from fake_llm_server import FakeLLMServer, Reply, open_fake_llm_server, sse_data

from trio_agents import (
    Agent,
    AssistantMessage,
    AuthenticationError,
    BadRequestError,
    ContentFiltered,
    ContextWindowExceeded,
    ImageBlock,
    ModelOverloaded,
    ModelSettings,
    ModelThrottled,
    ModelTimeout,
    NetworkError,
    RetryPolicy,
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
from trio_agents.models.openai import OpenAIModel


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with open_fake_llm_server() as srv:
        yield srv


def model_for(server: FakeLLMServer, **kwargs: Any) -> OpenAIModel:
    kwargs.setdefault("api_key", "test-key")
    return OpenAIModel("gpt-test", base_url=server.url + "/v1", **kwargs)


def completion(
    content: str | None = "hello",
    *,
    finish: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
    **message_extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, **message_extra}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


REQ = ModelRequest(messages=[UserMessage.text("hi")])


# --------------------------------------------------------------------------- request building


async def test_request_body_carries_the_whole_conversation(server: FakeLLMServer) -> None:
    server.queue(Reply(body=completion()))
    request = ModelRequest(
        system="be brief",
        messages=[
            SystemMessage("also be kind"),
            UserMessage((TextBlock("look"), ImageBlock("image/png", data="AAAA"))),
            AssistantMessage(
                content=(
                    ThinkingBlock("hmm"),
                    TextBlock("checking"),
                    ToolCallBlock(id="c1", name="add", arguments={"a": 1}),
                    ToolCallBlock(id="c2", name="add", raw_arguments="{bad"),
                )
            ),
            ToolResultMessage(
                (
                    ToolResultBlock(tool_call_id="c1", content="2"),
                    ToolResultBlock(tool_call_id="c2", content="bad args", is_error=True),
                )
            ),
        ],
        tools=[ToolDefinition(name="add", description="adds", parameters={"type": "object"})],
        settings=ModelSettings(max_tokens=50, temperature=0.5, seed=7, extra={"top_k": 3}),
    )
    await model_for(server).request(request)
    body = server.requests[0].body
    assert server.requests[0].path == "/v1/chat/completions"
    assert server.requests[0].headers["authorization"] == "Bearer test-key"
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "system", "content": "also be kind"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": "checking",
            "tool_calls": [
                call("c1", "add", '{"a": 1}'),
                call("c2", "add", "{bad"),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "2"},
        {"role": "tool", "tool_call_id": "c2", "content": "bad args"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {"name": "add", "description": "adds", "parameters": {"type": "object"}},
        }
    ]
    # A server given by base_url gets max_tokens; extra settings are merged into the body.
    assert body["max_tokens"] == 50
    assert "max_completion_tokens" not in body
    assert (body["temperature"], body["seed"], body["top_k"]) == (0.5, 7, 3)
    # request() streams underneath (so that cancelling reaches the server) and asks for usage.
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_openai_itself_gets_max_completion_tokens() -> None:
    model = OpenAIModel("gpt-4o-mini", api_key="k")
    params = model.build_params(ModelRequest(settings=ModelSettings(max_tokens=9)))
    assert params["max_completion_tokens"] == 9
    assert "max_tokens" not in params
    assert model.model_id == "openai:gpt-4o-mini"
    forced = OpenAIModel("x", base_url="http://h/v1", max_tokens_parameter="max_completion_tokens")
    assert "max_completion_tokens" in forced.build_params(
        ModelRequest(settings=ModelSettings(max_tokens=9))
    )


def test_bad_arguments_are_rejected() -> None:
    from trio_agents import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="model_name"):
        OpenAIModel("")
    with pytest.raises(InvalidArgumentError, match="base_url"):
        OpenAIModel("m", base_url="127.0.0.1:8080")
    with pytest.raises(InvalidArgumentError, match="read_timeout"):
        OpenAIModel("m", read_timeout=0)
    with pytest.raises(InvalidArgumentError, match="connect_timeout"):
        OpenAIModel("m", connect_timeout=-1)
    with pytest.raises(InvalidArgumentError, match="max_tokens_parameter"):
        OpenAIModel("m", max_tokens_parameter="n_predict")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- response parsing


async def test_response_text_usage_and_cached_tokens(server: FakeLLMServer) -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 60},
    }
    server.queue(Reply(body=completion("hi there", usage=usage, reasoning_content="think")))
    message = await model_for(server).request(REQ)
    assert message.content == (ThinkingBlock("think"), TextBlock("hi there"))
    assert message.stop_reason is StopReason.STOP
    assert message.model == f"openai:gpt-test@{server.url}/v1"
    u = message.usage
    assert (u.requests, u.input_tokens, u.cache_read_tokens, u.output_tokens) == (1, 40, 60, 7)
    assert u.total_tokens == 107


async def test_parallel_tool_calls_are_parsed_in_order(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            body=completion(
                None,
                finish="tool_calls",
                tool_calls=[
                    call("a", "weather", '{"city": "Oslo"}'),
                    call("b", "weather", '{"city": "Rome"}'),
                    call("c", "weather", "not json"),
                ],
            )
        )
    )
    message = await model_for(server).request(REQ)
    assert message.stop_reason is StopReason.TOOL_USE
    assert message.tool_calls == (
        ToolCallBlock(id="a", name="weather", arguments={"city": "Oslo"}),
        ToolCallBlock(id="b", name="weather", arguments={"city": "Rome"}),
        ToolCallBlock(id="c", name="weather", raw_arguments="not json"),
    )


@pytest.mark.parametrize(
    ("finish", "expected"),
    [
        ("stop", StopReason.STOP),
        ("length", StopReason.LENGTH),
        ("tool_calls", StopReason.TOOL_USE),
        ("function_call", StopReason.TOOL_USE),
    ],
)
async def test_finish_reasons_map_to_stop_reasons(
    server: FakeLLMServer, finish: str, expected: StopReason
) -> None:
    server.queue(Reply(body=completion("x", finish=finish)))
    assert (await model_for(server).request(REQ)).stop_reason is expected


async def test_content_filter_finish_raises_content_filtered(server: FakeLLMServer) -> None:
    server.queue(Reply(body=completion("", finish="content_filter")))
    with pytest.raises(ContentFiltered):
        await model_for(server).request(REQ)


# --------------------------------------------------------------------------- streaming


async def test_stream_assembles_text_and_parallel_tool_call_deltas(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            sse=sse_data(
                chunk({"role": "assistant", "content": ""}),
                chunk({"reasoning_content": "plan"}),
                chunk({"content": "Let me "}),
                chunk({"content": "check."}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "a",
                                "type": "function",
                                "function": {"name": "weather", "arguments": ""},
                            },
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 1,
                                "id": "b",
                                "type": "function",
                                "function": {"name": "time", "arguments": "{}"},
                            },
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
                chunk({}, finish="tool_calls"),
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": "gpt-test",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 20,
                        "completion_tokens": 9,
                        "total_tokens": 29,
                        "prompt_tokens_details": {"cached_tokens": 5},
                    },
                },
            )
        )
    )
    model = model_for(server)
    async with model.stream(REQ) as events:
        received = [event async for event in events]
    assert server.requests[0].body["stream"] is True
    assert server.requests[0].body["stream_options"] == {"include_usage": True}
    assert received[:-1] == [
        ThinkingDelta("plan"),
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(index=0, id="a", name="weather", arguments=""),
        ToolCallDelta(index=0, arguments='{"city": '),
        ToolCallDelta(index=1, id="b", name="time", arguments="{}"),
        ToolCallDelta(index=0, arguments='"Oslo"}'),
    ]
    done = received[-1]
    assert isinstance(done, StreamDone)
    assert done.message.content == (
        ThinkingBlock("plan"),
        TextBlock("Let me check."),
        ToolCallBlock(id="a", name="weather", arguments={"city": "Oslo"}),
        ToolCallBlock(id="b", name="time", arguments={}),
    )
    assert done.message.stop_reason is StopReason.TOOL_USE
    usage = done.message.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (15, 5, 9)


async def test_stream_cut_off_midway_is_a_network_error(server: FakeLLMServer) -> None:
    events = sse_data(chunk({"content": "par"}), chunk({"content": "tial"}), chunk({}, "stop"))
    server.queue(Reply(sse=events, cut_after=2))
    seen: list[object] = []
    with pytest.raises(NetworkError) as info:
        async with model_for(server).stream(REQ) as stream:
            async for event in stream:
                seen.append(event)
    assert seen == [TextDelta("par"), TextDelta("tial")]
    assert info.value.retryable


async def test_stream_that_ends_without_a_finish_reason_is_a_network_error(
    server: FakeLLMServer,
) -> None:
    server.queue(Reply(sse=sse_data(chunk({"content": "half"}), done=False)))
    with pytest.raises(NetworkError, match="no finish reason"):
        async with model_for(server).stream(REQ) as stream:
            async for _ in stream:
                pass


async def test_error_event_inside_a_stream_is_classified(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            sse=sse_data(
                chunk({"content": "a"}),
                {"error": {"message": "server overloaded", "type": "server_error"}},
            )
        )
    )
    with pytest.raises(ModelOverloaded, match="server overloaded"):
        async with model_for(server).stream(REQ) as stream:
            async for _ in stream:
                pass


async def test_stream_http_error_is_mapped_before_any_event(server: FakeLLMServer) -> None:
    server.queue(Reply(429, {"error": {"message": "slow"}}, headers={"retry-after": "3"}))
    with pytest.raises(ModelThrottled) as info:
        async with model_for(server).stream(REQ):
            pass  # pragma: no cover - never entered
    assert info.value.retry_after == 3.0


# --------------------------------------------------------------------------- error mapping


def error(message: str, type_: str = "invalid_request_error", code: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


async def test_429_with_retry_after_seconds_is_throttled(server: FakeLLMServer) -> None:
    server.queue(Reply(429, error("rate limited", "requests"), headers={"retry-after": "2"}))
    with pytest.raises(ModelThrottled) as info:
        await model_for(server).request(REQ)
    assert info.value.retryable
    assert info.value.retry_after == 2.0
    assert len(server.requests) == 1  # the SDK's own retries are off


async def test_429_with_retry_after_ms_is_throttled(server: FakeLLMServer) -> None:
    headers = {"retry-after-ms": "250", "retry-after": "9"}
    server.queue(Reply(429, error("rate limited", "requests"), headers=headers))
    with pytest.raises(ModelThrottled) as info:
        await model_for(server).request(REQ)
    assert info.value.retry_after == 0.25


async def test_429_insufficient_quota_is_a_bad_request(server: FakeLLMServer) -> None:
    server.queue(Reply(429, error("no money", "insufficient_quota", "insufficient_quota")))
    with pytest.raises(BadRequestError) as info:
        await model_for(server).request(REQ)
    assert not info.value.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 529])
async def test_5xx_is_overloaded_and_retryable(server: FakeLLMServer, status: int) -> None:
    server.queue(Reply(status, error("busy", "server_error"), headers={"retry-after": "1"}))
    with pytest.raises(ModelOverloaded) as info:
        await model_for(server).request(REQ)
    assert info.value.retryable
    assert info.value.retry_after == 1.0
    assert len(server.requests) == 1


async def test_connection_refused_is_a_network_error() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        model = OpenAIModel("m", base_url=f"http://127.0.0.1:{port}/v1")
        with pytest.raises(NetworkError) as info:
            await model.request(REQ)
    assert info.value.retryable
    assert not isinstance(info.value, ModelTimeout)


async def test_a_server_that_never_answers_times_out_naming_the_server(
    server: FakeLLMServer,
) -> None:
    # The server accepts the connection and the request, then stays silent. Real sockets and
    # the real clock: the wait is bounded by the user's 0.2 s read timeout.
    server.queue(Reply(hang_after=0))
    with trio.fail_after(10), pytest.raises(ModelTimeout) as info:
        await model_for(server, read_timeout=0.2).request(REQ)
    assert isinstance(info.value, NetworkError)
    assert info.value.retryable
    assert f"{server.url}/v1" in str(info.value)
    assert "read_timeout=0.2" in str(info.value)
    assert server.hanging.is_set()


async def test_a_stream_that_goes_silent_midway_times_out_naming_the_server(
    server: FakeLLMServer,
) -> None:
    server.queue(Reply(sse=sse_data(chunk({"content": "partial"})), hang_after=1))
    with trio.fail_after(10), pytest.raises(ModelTimeout, match=r"read_timeout=0\.2"):
        async with model_for(server, read_timeout=0.2).stream(REQ) as events:
            async for _ in events:
                pass


def test_default_timeouts_are_bounded() -> None:
    # Not the SDK's 600 s: 10 s to connect, 120 s of silence (see the module docs for why).
    model = OpenAIModel("m", api_key="k")
    timeout = model._make_client().timeout
    assert isinstance(timeout, httpx2.Timeout)
    assert (timeout.connect, timeout.read) == (10.0, 120.0)
    custom = OpenAIModel("m", api_key="k", read_timeout=None, connect_timeout=1)._make_client()
    assert isinstance(custom.timeout, httpx2.Timeout)
    assert (custom.timeout.connect, custom.timeout.read) == (1.0, None)


@pytest.mark.parametrize(
    "body",
    [
        error("This model's maximum context length is 8192 tokens", code="context_length_exceeded"),
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
            }
        },
    ],
    ids=["openai", "llama.cpp"],
)
async def test_context_length_errors_are_context_window_exceeded(
    server: FakeLLMServer, body: Any
) -> None:
    server.queue(Reply(400, body))
    with pytest.raises(ContextWindowExceeded) as info:
        await model_for(server).request(REQ)
    assert not info.value.retryable


@pytest.mark.parametrize("status", [401, 403])
async def test_401_and_403_are_authentication_errors(server: FakeLLMServer, status: int) -> None:
    server.queue(Reply(status, error("bad key", "invalid_request_error", "invalid_api_key")))
    with pytest.raises(AuthenticationError):
        await model_for(server).request(REQ)


@pytest.mark.parametrize("status", [400, 404, 422])
async def test_other_4xx_are_bad_requests(server: FakeLLMServer, status: int) -> None:
    server.queue(Reply(status, error("nope")))
    with pytest.raises(BadRequestError, match="nope") as info:
        await model_for(server).request(REQ)
    assert not info.value.retryable


async def test_content_policy_rejection_is_content_filtered(server: FakeLLMServer) -> None:
    server.queue(
        Reply(400, error("filtered by the content management policy", code="content_filter"))
    )
    with pytest.raises(ContentFiltered):
        await model_for(server).request(REQ)


async def test_missing_api_key_is_an_authentication_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="OPENAI_API_KEY"):
        await OpenAIModel("gpt-4o-mini").request(REQ)


async def test_api_key_comes_from_the_environment(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    server.queue(Reply(body=completion()))
    await OpenAIModel("m", base_url=server.url + "/v1").request(REQ)
    assert server.requests[0].headers["authorization"] == "Bearer from-env"


# --------------------------------------------------------------------------- cancellation


async def test_cancel_aborts_a_request_at_once_and_the_model_stays_usable(
    server: FakeLLMServer,
) -> None:
    server.queue(Reply(hang_after=0), Reply(body=completion("after")))
    async with model_for(server) as model:
        with trio.fail_after(10):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(model.request, REQ)
                    await server.hanging.wait()
                    scope.cancel(reason="test")
            assert scope.cancelled_caught
            await server.disconnected.wait()  # the HTTP request really was aborted
            message = await model.request(REQ)
    assert message.text == "after"


async def test_cancel_aborts_a_stream_at_once_and_the_model_stays_usable(
    server: FakeLLMServer,
) -> None:
    server.queue(
        Reply(sse=sse_data(chunk({"content": "first"})), hang_after=1),
        Reply(sse=sse_data(chunk({"content": "again"}, "stop"))),
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
            async with model.stream(REQ) as events:
                final = [e async for e in events][-1]
    assert isinstance(final, StreamDone)
    assert final.message.text == "again"


async def test_an_open_model_reuses_one_connection(server: FakeLLMServer) -> None:
    server.queue(Reply(body=completion("1")), Reply(body=completion("2")))
    async with model_for(server) as model:
        await model.request(REQ)
        await model.request(REQ)
    assert server.connections == 1


async def test_a_closed_model_cannot_be_reopened(server: FakeLLMServer) -> None:
    from trio_agents import UsageError

    model = model_for(server)
    async with model:
        with pytest.raises(UsageError, match="already open"):
            await model.__aenter__()
    with pytest.raises(UsageError, match="closed"):
        await model.request(REQ)


# --------------------------------------------------------------------------- forbid switch


async def test_forbidden_requests_raise_before_sending(server: FakeLLMServer) -> None:
    with override_allow_model_requests(False):
        with pytest.raises(ModelRequestsForbidden, match="gpt-test"):
            await model_for(server).request(REQ)
        with pytest.raises(ModelRequestsForbidden):
            async with model_for(server).stream(REQ):
                pass  # pragma: no cover - never entered
    assert server.requests == []


# --------------------------------------------------------------------------- in an agent


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def test_multi_turn_tool_loop_through_an_agent(server: FakeLLMServer) -> None:
    server.queue(
        Reply(
            body=completion(
                None,
                finish="tool_calls",
                tool_calls=[call("c1", "add", '{"a": 2, "b": 3}'), call("c2", "add", '{"a": 1}')],
            )
        ),
        Reply(body=completion("The sum is 5.")),
    )
    async with model_for(server) as model:
        agent = Agent(model, instructions="use tools", tools=[add])
        result = await agent.run("what is 2 + 3?")
    assert result.final_text == "The sum is 5."
    assert result.usage.requests == 2
    second = server.requests[1].body["messages"]
    assert second[0] == {"role": "system", "content": "use tools"}
    assert second[2]["tool_calls"][0]["function"] == {
        "name": "add",
        "arguments": '{"a": 2, "b": 3}',
    }
    assert second[3] == {"role": "tool", "tool_call_id": "c1", "content": "5"}
    assert second[4]["tool_call_id"] == "c2"  # bad arguments come back as an error result
    assert "b" in second[4]["content"]
    assert server.requests[0].body["tools"][0]["function"]["name"] == "add"


async def test_agent_retries_a_throttled_request_after_retry_after(server: FakeLLMServer) -> None:
    server.queue(
        Reply(429, error("slow down", "requests"), headers={"retry-after-ms": "20"}),
        Reply(body=completion("ok")),
    )
    agent = Agent(model_for(server), retry=RetryPolicy(max_attempts=2, initial_delay=0.001))
    start = trio.current_time()
    result = await agent.run("hi")
    assert result.final_text == "ok"
    assert trio.current_time() - start >= 0.02
    assert len(server.requests) == 2


async def test_streaming_agent_gets_the_streamed_message(server: FakeLLMServer) -> None:
    server.queue(
        Reply(sse=sse_data(chunk({"content": "str"}), chunk({"content": "eamed"}, "stop")))
    )
    agent = Agent(model_for(server), stream=True)
    result = await agent.run("hi")
    assert result.final_text == "streamed"
