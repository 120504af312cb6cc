"""Both providers stream every request underneath: the assembled message equals the
non-streamed one, errors map as before, and cancelling reaches the server.

The equivalence properties serve the same response twice from the fake server, once as the
JSON body of a non-streamed answer and once as the event stream the real API sends for it
(text and tool-call arguments split across chunks), and compare what ``request()`` returns.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from fake_llm_server import (
    FakeLLMServer,
    Reply,
    anthropic_sse_of,
    open_fake_llm_server,
    openai_sse_of,
)

from trio_agents import (
    AssistantMessage,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidArgumentError,
    ModelError,
    ModelOverloaded,
    ModelThrottled,
    NetworkError,
    TextBlock,
    TextDelta,
    Usage,
    UserMessage,
)
from trio_agents._models import ModelRequest, StreamDone
from trio_agents.models import resolve_model
from trio_agents.models.anthropic import AnthropicModel
from trio_agents.models.openai import OpenAIModel

REQ = ModelRequest(messages=[UserMessage.text("hi")])

Outcome = tuple[str, object]


def openai_model(server: FakeLLMServer, **kwargs: Any) -> OpenAIModel:
    return OpenAIModel("gpt-test", base_url=server.url + "/v1", api_key="k", **kwargs)


def anthropic_model(server: FakeLLMServer, **kwargs: Any) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.url, api_key="k", **kwargs)


async def outcome(call: Callable[[], Awaitable[AssistantMessage]]) -> Outcome:
    """The message, or the error's type and text (content filter, cut stream...)."""
    try:
        return "message", await call()
    except ModelError as exc:
        return type(exc).__name__, str(exc)


async def json_then_stream_in(
    server: FakeLLMServer, model: OpenAIModel | AnthropicModel, body: dict[str, Any], pieces: int
) -> tuple[Outcome, Outcome, list[Any]]:
    """Serve ``body`` as JSON, then as a stream in ``pieces``; both outcomes and the bodies."""
    with trio.fail_after(30):
        server.queue(Reply(body=body, as_json=True), Reply(body=body, pieces=pieces))
        plain = await outcome(lambda: model.request(REQ))
        streamed = await outcome(lambda: model.request(REQ))
    return plain, streamed, [r.body for r in server.requests[-2:]]


def json_then_stream(
    make: Callable[[FakeLLMServer], OpenAIModel | AnthropicModel], body: dict[str, Any], pieces: int
) -> tuple[Outcome, Outcome, list[Any]]:
    """:func:`json_then_stream_in` on a server and model of its own."""

    async def main() -> tuple[Outcome, Outcome, list[Any]]:
        async with open_fake_llm_server() as server, make(server) as model:
            return await json_then_stream_in(server, model, body, pieces)

    return trio.run(main)


@attrs.frozen
class Shared:
    """A trio loop in a thread with one fake server and an open model of each provider, so
    that hypothesis examples do not pay for a new SDK client (~0.1 s) each."""

    token: trio.lowlevel.TrioToken
    server: FakeLLMServer
    models: dict[str, OpenAIModel | AnthropicModel]

    def json_then_stream(
        self, provider: str, body: dict[str, Any], pieces: int
    ) -> tuple[Outcome, Outcome, list[Any]]:
        return trio.from_thread.run(
            json_then_stream_in,
            self.server,
            self.models[provider],
            body,
            pieces,
            trio_token=self.token,
        )


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    ready: queue.Queue[tuple[Shared, trio.Event]] = queue.Queue()

    async def main() -> None:
        async with (
            open_fake_llm_server() as server,
            openai_model(server) as openai,
            anthropic_model(server) as anthropic,
        ):
            done = trio.Event()
            models = {"openai": openai, "anthropic": anthropic}
            ready.put((Shared(trio.lowlevel.current_trio_token(), server, models), done))
            await done.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    loop, done = ready.get(timeout=60)
    try:
        yield loop
    finally:
        trio.from_thread.run_sync(done.set, trio_token=loop.token)
        thread.join(60)


# --------------------------------------------------------------------------- strategies

_names = st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_texts = st.text(max_size=40)
_json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10))
_json_objects = st.dictionaries(st.text(max_size=6), _json_values, max_size=3)
_counts = st.integers(0, 10_000)


@st.composite
def openai_completions(draw: st.DrawFn) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | _texts)}
    if draw(st.booleans()):
        message["reasoning_content"] = draw(_texts)
    if message["content"] is None and draw(st.booleans()):
        message["refusal"] = draw(_texts)
    calls = draw(st.lists(st.tuples(_names, _names, _json_objects | _texts), max_size=3))
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{number}_{call_id}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": json.dumps(args) if isinstance(args, dict) else args,
                },
            }
            for number, (call_id, name, args) in enumerate(calls)
        ]
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": draw(
                    st.sampled_from(
                        ["stop", "length", "tool_calls", "function_call", "content_filter"]
                    )
                ),
            }
        ],
    }
    if draw(st.booleans()):
        prompt, completion = draw(_counts), draw(_counts)
        body["usage"] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": draw(st.integers(0, prompt))},
        }
    return body


@st.composite
def anthropic_messages(draw: st.DrawFn) -> dict[str, Any]:
    block = st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, _texts),
        st.builds(
            lambda t, s: {"type": "thinking", "thinking": t, "signature": s},
            _texts,
            st.none() | _names,
        ),
        st.builds(
            lambda i, n, a: {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": a},
            _names,
            _names,
            _json_objects,
        ),
        st.just({"type": "redacted_thinking", "data": "opaque"}),
    )
    body: dict[str, Any] = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": draw(st.lists(block, max_size=4)),
        "stop_reason": draw(
            st.sampled_from(
                [
                    "end_turn",
                    "stop_sequence",
                    "pause_turn",
                    "max_tokens",
                    "model_context_window_exceeded",
                    "tool_use",
                    "refusal",
                ]
            )
        ),
        "stop_sequence": None,
    }
    if draw(st.booleans()):
        body["usage"] = {
            "input_tokens": draw(_counts),
            "output_tokens": draw(_counts),
            "cache_read_input_tokens": draw(st.none() | _counts),
            "cache_creation_input_tokens": draw(st.none() | _counts),
        }
    return body


# --------------------------------------------------------------------------- equivalence


@given(body=openai_completions(), pieces=st.integers(1, 6))
def test_openai_streamed_request_equals_the_non_streamed_response(
    shared: Shared, body: dict[str, Any], pieces: int
) -> None:
    plain, streamed, sent = shared.json_then_stream("openai", body, pieces)
    assert streamed == plain
    assert all(b["stream"] is True for b in sent)
    assert all(b["stream_options"] == {"include_usage": True} for b in sent)


@given(body=anthropic_messages(), pieces=st.integers(1, 6))
def test_anthropic_streamed_request_equals_the_non_streamed_response(
    shared: Shared, body: dict[str, Any], pieces: int
) -> None:
    plain, streamed, sent = shared.json_then_stream("anthropic", body, pieces)
    assert streamed == plain
    assert all(b["stream"] is True for b in sent)


def openai_example() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Adding twice.",
                    "reasoning_content": "two sums",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 1, "b": 22}'},
                        },
                        {
                            "id": "c2",
                            "type": "function",
                            "function": {"name": "add", "arguments": '{"a": 333, "b": 4}'},
                        },
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 30, "completion_tokens": 9, "total_tokens": 39},
    }


def anthropic_example() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "thinking", "thinking": "two sums", "signature": "sig"},
            {"type": "text", "text": "Adding twice."},
            {"type": "tool_use", "id": "t1", "name": "add", "input": {"a": 1, "b": 22}},
            {"type": "tool_use", "id": "t2", "name": "add", "input": {"a": 333, "b": 4}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 9, "cache_read_input_tokens": 5},
    }


@pytest.mark.parametrize(
    ("make", "body"),
    [(openai_model, openai_example()), (anthropic_model, anthropic_example())],
    ids=["openai", "anthropic"],
)
def test_several_tool_calls_split_in_many_chunks_assemble_exactly(
    make: Callable[[FakeLLMServer], OpenAIModel | AnthropicModel], body: dict[str, Any]
) -> None:
    plain, streamed, _ = json_then_stream(make, body, pieces=5)
    assert plain[0] == "message"
    assert streamed == plain
    message = streamed[1]
    assert isinstance(message, AssistantMessage)
    assert [c.arguments for c in message.tool_calls] == [{"a": 1, "b": 22}, {"a": 333, "b": 4}]
    assert message.usage.output_tokens == 9


async def test_openai_stream_without_usage_reports_one_request_and_no_invented_tokens() -> None:
    # A server that ignores stream_options sends no usage: the counts are unknown, and
    # request() says so by reporting none rather than guessing.
    async with open_fake_llm_server() as server:
        server.queue(Reply(sse=openai_sse_of(openai_example(), usage=False)))
        message = await openai_model(server).request(REQ)
    assert message.usage == Usage(requests=1)
    assert len(message.tool_calls) == 2


async def test_anthropic_stream_without_usage_reports_one_request_and_no_invented_tokens() -> None:
    body = anthropic_example()
    del body["usage"]
    async with open_fake_llm_server() as server:
        server.queue(Reply(sse=anthropic_sse_of(body)))
        message = await anthropic_model(server).request(REQ)
    assert message.usage == Usage(requests=1)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_json_answer_to_a_stream_request_gives_deltas_then_the_message(
    provider: str,
) -> None:
    body = openai_example() if provider == "openai" else anthropic_example()
    make = openai_model if provider == "openai" else anthropic_model
    async with open_fake_llm_server() as server:
        server.queue(Reply(body=body, as_json=True))
        async with make(server).stream(REQ) as events:
            received = [event async for event in events]
    assert TextDelta("Adding twice.") in received
    assert isinstance(received[-1], StreamDone)
    assert received[-1].message.text == "Adding twice."


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_errors_of_a_streamed_request_map_exactly(provider: str) -> None:
    make = openai_model if provider == "openai" else anthropic_model
    body = openai_example() if provider == "openai" else anthropic_example()
    context = (
        {"error": {"message": "maximum context length exceeded", "type": "invalid_request_error"}}
        if provider == "openai"
        else {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "prompt is too long"},
        }
    )
    async with open_fake_llm_server() as server:
        server.queue(
            Reply(
                429,
                {"error": {"message": "slow down", "type": "rate_limit_error"}},
                headers={"retry-after": "7"},
            ),
            Reply(503, {"error": {"message": "busy", "type": "overloaded_error"}}),
            Reply(400, context),
            Reply(body=body, pieces=4, cut_after=3),
        )
        model = make(server)
        with pytest.raises(ModelThrottled) as throttled:
            await model.request(REQ)
        with pytest.raises(ModelOverloaded):
            await model.request(REQ)
        with pytest.raises(ContextWindowExceeded):
            await model.request(REQ)
        with pytest.raises(NetworkError, match=r"connection|ended"):
            await model.request(REQ)
    assert throttled.value.retry_after == 7.0


async def test_openai_content_filter_finish_in_a_stream_raises_content_filtered() -> None:
    body = openai_example()
    body["choices"][0]["finish_reason"] = "content_filter"
    async with open_fake_llm_server() as server:
        server.queue(Reply(body=body))
        with pytest.raises(ContentFiltered):
            await openai_model(server).request(REQ)


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_cancelling_a_request_stops_the_server_generating(provider: str) -> None:
    # The fake server generates a token every millisecond, 20,000 of them. Answering a
    # non-streamed request it would not watch the connection (as llama.cpp does) and finish
    # all of them after the client had gone; streaming, it notices the closed connection.
    # Real clock: the SDK runs some set-up in threads, which an autojump clock would skip
    # past. Bounded by fail_after, and by the 20 s the whole generation would take.
    make = openai_model if provider == "openai" else anthropic_model
    caught: list[BaseException] = []
    async with open_fake_llm_server() as server:
        server.queue(Reply(generate=20_000, tick=0.001), Reply(generate=3, tick=0.001))
        with trio.fail_after(15):
            async with make(server) as model:

                async def call() -> None:
                    try:
                        await model.request(REQ)
                    except BaseException as exc:
                        caught.append(exc)
                        raise

                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(call)
                        await server.generating.wait()
                        await trio.sleep(0.05)
                        scope.cancel(reason="test")
                assert scope.cancelled_caught
                await server.generation_ended.wait()
                outcome, tokens = server.generations[0]
                # The model stays usable after the cancel.
                after = await model.request(REQ)
    assert [type(exc) for exc in caught] == [trio.Cancelled]  # bare, never a group
    assert outcome == "aborted"
    assert tokens < 20_000
    assert after.content == (TextBlock("tok tok tok "),)


async def test_the_generating_fake_server_does_finish_a_non_streamed_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The control for the test above: a non-streamed request that the client abandons keeps
    # the fake server generating to the end, as llama.cpp does.
    with trio.fail_after(600):  # virtual seconds
        generations = await _abandon_a_non_streamed_request()
    assert generations == [("completed", 500)]


async def _abandon_a_non_streamed_request() -> list[tuple[str, int]]:
    async with open_fake_llm_server() as server, trio.open_nursery() as nursery:
        server.queue(Reply(generate=500, tick=0.01))

        async def post() -> None:
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            body = json.dumps({"model": "m", "messages": []}).encode()
            head = (
                f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            ).encode()
            await stream.send_all(head + body)
            await server.generating.wait()
            await stream.aclose()  # the client gives up after the first token

        nursery.start_soon(post)
        await server.generation_ended.wait()
    return server.generations


# --------------------------------------------------------------------------- base URL from env


@pytest.mark.parametrize(
    ("variable", "make", "suffix"),
    [
        ("OPENAI_BASE_URL", lambda: OpenAIModel("local"), "/v1"),
        ("ANTHROPIC_BASE_URL", lambda: AnthropicModel("local"), ""),
    ],
    ids=["openai", "anthropic"],
)
async def test_base_url_from_the_environment_counts_as_explicit(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    make: Callable[[], OpenAIModel | AnthropicModel],
    suffix: str,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    async with open_fake_llm_server() as server:
        url = server.url + suffix
        monkeypatch.setenv(variable, url)
        body = openai_example() if suffix else anthropic_example()
        server.queue(Reply(body=body))
        model = make()
        assert model.base_url == url
        assert model.model_id.endswith(f"local@{url}")  # never priced as the provider's
        request = ModelRequest(messages=[UserMessage.text("hi")])
        message = await model.request(request)
    assert message.text == "Adding twice."
    sent = server.requests[0]
    # No key needed for a local server: the placeholder is sent.
    assert "no-key-needed" in (
        sent.headers.get("authorization", "") + sent.headers.get("x-api-key", "")
    )


def test_openai_base_url_from_the_environment_gets_the_compatible_request_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trio_agents import ModelSettings

    request = ModelRequest(settings=ModelSettings(max_tokens=9))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert "max_tokens" in OpenAIModel("local").build_params(request)
    resolved = resolve_model("openai:local")
    assert resolved.model_id == "openai:local@http://127.0.0.1:9/v1"
    # An explicit base_url still wins over the environment.
    assert OpenAIModel("m", base_url="http://other/v1").base_url == "http://other/v1"
    # An empty variable is unset.
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    plain = OpenAIModel("gpt-4o-mini", api_key="k")
    assert plain.base_url is None
    assert "max_completion_tokens" in plain.build_params(request)


@pytest.mark.parametrize(
    ("variable", "make"),
    [("OPENAI_BASE_URL", OpenAIModel), ("ANTHROPIC_BASE_URL", AnthropicModel)],
)
def test_a_bad_base_url_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, make: Callable[[str], object]
) -> None:
    monkeypatch.setenv(variable, "localhost:8080")
    with pytest.raises(InvalidArgumentError, match=f"{variable} must be an http"):
        make("m")
