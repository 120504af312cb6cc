"""MCP servers as supervised toolsets, against real MCP servers.

Two servers: ``tests/mcp_test_server.py`` (written with the SDK's ``MCPServer``, over stdio
and over streamable HTTP on 127.0.0.1) and the reference server
``@modelcontextprotocol/server-everything`` (``python tools/install_mcp_servers.py``).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentSpec,
    Backoff,
    Delegator,
    Event,
    EventLog,
    InvalidArgumentError,
    ModelRunner,
    RestartLimit,
    SupervisorAction,
    ToolCallBlock,
    ToolContext,
    ToolProgress,
    UserMessage,
    dumps_json,
    loads_json,
)
from trio_agents.mcp import (
    MCPHttp,
    MCPServerFailed,
    MCPServerLost,
    MCPStatus,
    MCPStdio,
    MCPToolset,
    mcp_server,
    open_mcp_toolset,
    serve_mcp_http,
)
from trio_agents.testing import FunctionModel, text, tool_call

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPT = str(HERE / "mcp_test_server.py")
EVERYTHING = ROOT / ".mcp-servers" / "node_modules" / "@modelcontextprotocol"
EVERYTHING_JS = EVERYTHING / "server-everything" / "dist" / "index.js"

STDIO = MCPStdio(command=sys.executable, args=(SCRIPT,))


def ctx(agent: str = "lead") -> ToolContext:
    return ToolContext(agent=agent, call=ToolCallBlock(id="-", name="-"))


_ids = iter(range(1_000_000))


def call(name: str, **arguments: Any) -> ToolCallBlock:
    return ToolCallBlock(id=f"call-{next(_ids)}", name=name, arguments=arguments)


class Progress:
    """An event sink that remembers ToolProgress events and lets a test wait for them."""

    def __init__(self) -> None:
        self.events: list[ToolProgress] = []
        self._arrived = trio.Event()

    def __call__(self, event: Event) -> None:
        assert isinstance(event, ToolProgress)
        self.events.append(event)
        self._arrived.set()
        self._arrived = trio.Event()

    async def wait(self, count: int = 1) -> None:
        while len(self.events) < count:
            await self._arrived.wait()


async def run(toolset: MCPToolset, name: str, **arguments: Any) -> str:
    result = await toolset.execute(call(name, **arguments), ctx())
    assert not result.is_error, result.content
    return result.content


@asynccontextmanager
async def http_server(port: int = 0) -> AsyncIterator[tuple[str, trio.Process]]:
    """Start the test server over streamable HTTP; yield its MCP URL and process."""
    process = await trio.lowlevel.open_process(
        [sys.executable, SCRIPT, "http", str(port)], stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        buffer = b""
        with trio.fail_after(60):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some()
                assert chunk, "the test server exited before listening"
                buffer += chunk
        port = int(buffer.split(b"\n")[0].split()[1])
        yield f"http://127.0.0.1:{port}/mcp", process
    finally:
        process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def everything_server() -> MCPStdio:
    """The reference server; missing, it skips locally and fails under CI."""
    if not EVERYTHING_JS.exists():
        message = (
            "@modelcontextprotocol/server-everything is not installed; run "
            "python tools/install_mcp_servers.py"
        )
        if os.environ.get("TRIO_AGENTS_REQUIRE_MCP") or os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return MCPStdio(command="node", args=(str(EVERYTHING_JS), "stdio"))


# --------------------------------------------------------------------------- tools and results


async def test_tools_are_listed_with_their_schemas_and_prefix() -> None:
    async with open_mcp_toolset(STDIO, name="test", prefix="t_") as toolset:
        assert toolset.status == MCPStatus.RUNNING
        definitions = {d.name: d for d in toolset.definitions()}
        assert {"t_echo", "t_add", "t_pid", "t_hang"} <= set(definitions)
        add = definitions["t_add"]
        assert add.description == "Add two integers."
        assert add.parameters["properties"]["a"]["type"] == "integer"
        assert set(add.parameters["required"]) == {"a", "b"}
        # The prefixed name reaches the server's own name.
        assert await run(toolset, "t_add", a=2, b=3) == "5"
        assert await run(toolset, "t_echo", text="hi") == "hi"


async def test_errors_become_readable_results() -> None:
    async with open_mcp_toolset(STDIO, name="test") as toolset:
        failed = await toolset.execute(call("fail", message="the disk is full"), ctx())
        assert failed.is_error
        assert "'fail'" in failed.content and "'test'" in failed.content
        bad = await toolset.execute(call("add", a="two", b=3), ctx())
        assert bad.is_error and "add" in bad.content
        unknown = await toolset.execute(call("nope"), ctx())
        assert unknown.is_error
        assert "unknown tool 'nope'" in unknown.content and "echo" in unknown.content
        raw = ToolCallBlock(id="x", name="echo", raw_arguments="{not json")
        invalid = await toolset.execute(raw, ctx())
        assert invalid.is_error and "invalid JSON" in invalid.content
        # The toolset still works after all of that.
        assert await run(toolset, "echo", text="ok") == "ok"


async def test_protocol_error_becomes_a_readable_result() -> None:
    async with open_mcp_toolset(STDIO, name="test") as toolset:
        # A tool the server no longer has: the server answers with a JSON-RPC error.
        toolset._remote["ghost"] = "ghost"
        result = await toolset.execute(call("ghost"), ctx())
        assert result.is_error
        assert "'test'" in result.content and "ghost" in result.content


async def test_progress_notifications_become_events() -> None:
    progress = Progress()
    async with open_mcp_toolset(STDIO, name="test", events=progress) as toolset:
        the_call = call("steps", count=3)
        result = await toolset.execute(the_call, ctx("lead/worker"))
        assert result.content == "did 3 steps"
    assert [(e.progress, e.total, e.message) for e in progress.events] == [
        (1.0, 3.0, "step 1"),
        (2.0, 3.0, "step 2"),
        (3.0, 3.0, "step 3"),
    ]
    assert {(e.agent, e.call_id, e.tool_name) for e in progress.events} == {
        ("lead/worker", the_call.id, "steps")
    }


async def test_progress_events_go_to_an_event_log_and_round_trip() -> None:
    log = EventLog()
    async with open_mcp_toolset(STDIO, name="test", events=log) as toolset:
        await run(toolset, "steps", count=2)
    events = log.events(ToolProgress)
    assert [e.progress for e in events] == [1.0, 2.0]
    assert [loads_json(dumps_json(e), Event) for e in events] == events


async def test_list_changed_notification_refreshes_the_tools() -> None:
    async with open_mcp_toolset(STDIO, name="test", prefix="t_") as toolset:
        assert "t_extra" not in {d.name for d in toolset.definitions()}
        before = toolset.listings
        assert await run(toolset, "t_grow") == "grown"
        await toolset.wait_listings(before + 1)
        assert "t_extra" in {d.name for d in toolset.definitions()}
        assert await run(toolset, "t_extra") == "extra!"


# --------------------------------------------------------------------------- timeouts, cancellation


async def test_timeout_cancels_the_call_on_the_server(mock_clock: trio.testing.MockClock) -> None:
    # Real time flows (the SDK polls the server process at shutdown); the deadline is reached
    # by a jump once the server is running the call, never by waiting.
    mock_clock.rate = 1.0
    progress = Progress()
    async with open_mcp_toolset(STDIO, name="test", call_timeout=30, events=progress) as toolset:
        results = []

        async def slow() -> None:
            results.append(await toolset.execute(call("hang", label="slow"), ctx()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow)
            await progress.wait()  # the server is running the call
            mock_clock.jump(31)
        [result] = results
        assert result.is_error
        assert "timed out after 30 s" in result.content and "'test'" in result.content
        assert await run(toolset, "cancellations") == "slow"


async def test_cancelling_a_call_reaches_the_server() -> None:
    progress = Progress()
    async with open_mcp_toolset(STDIO, name="test", call_timeout=None, events=progress) as toolset:
        caught: list[BaseException] = []
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def canceller() -> None:
                    await progress.wait()
                    scope.cancel(reason="the user gave up")

                nursery.start_soon(canceller)
                try:
                    await toolset.execute(call("hang", label="cancelled-by-scope"), ctx())
                except BaseException as exc:
                    caught.append(exc)
                    raise
        assert scope.cancelled_caught
        assert [type(exc) for exc in caught] == [trio.Cancelled]
        assert await run(toolset, "cancellations") == "cancelled-by-scope"


async def test_outside_cancellation_of_open_mcp_toolset_is_a_bare_cancelled() -> None:
    # While connecting.
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled) as connecting:
            async with open_mcp_toolset(STDIO, name="test"):
                pytest.fail("the block must not run")  # pragma: no cover
    assert type(connecting.value) is trio.Cancelled
    # While open, with a call in flight.
    progress = Progress()
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        try:
            async with (
                open_mcp_toolset(STDIO, name="test", events=progress) as toolset,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(toolset.execute, call("hang", label="x"), ctx())
                await progress.wait()
                scope.cancel()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(exc) for exc in caught] == [trio.Cancelled]
    assert toolset.status == MCPStatus.STOPPED


async def test_outside_cancellation_of_the_waits_is_a_bare_cancelled() -> None:
    async with open_mcp_toolset(STDIO, name="test") as toolset:
        waits = {
            "wait_listings": lambda: toolset.wait_listings(toolset.listings + 1),
            "wait_status": lambda: toolset.wait_status(MCPStatus.STOPPED),
        }
        for name, wait in waits.items():
            caught: list[BaseException] = []
            with trio.CancelScope() as scope:
                scope.deadline = trio.current_time() + 0.05
                try:
                    await wait()
                except BaseException as exc:
                    caught.append(exc)
                    raise
            assert [type(exc) for exc in caught] == [trio.Cancelled], name
        await toolset.wait_running()  # returns at once while connected
        assert await run(toolset, "echo", text="still here") == "still here"
    # wait_running on a toolset that is still connecting (made directly: open_mcp_toolset
    # returns only once it is connected), cut off while it waits.
    from trio_agents import Backoff, DefaultSupervisor, RestartLimit

    connecting = MCPToolset(
        STDIO,
        name="test",
        prefix="",
        timeout=None,
        connect_timeout=1.0,
        events=None,
        policy=DefaultSupervisor(),
        restart_limit=RestartLimit(),
        backoff=Backoff(),
        rng=random.Random(0),
    )
    caught = []
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() + 0.05
        try:
            await connecting.wait_running()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert [type(exc) for exc in caught] == [trio.Cancelled]


# --------------------------------------------------------------------------- supervision


async def test_killed_server_gets_one_reply_per_call_restarts_and_serves_the_next_call() -> None:
    progress = Progress()
    async with open_mcp_toolset(
        STDIO, name="test", events=progress, backoff=Backoff.none()
    ) as toolset:
        old_pid = int(await run(toolset, "pid"))
        results: list[list[Any]] = [[], []]

        async def in_flight(index: int) -> None:
            the_call = call("hang", label=f"victim-{index}")
            results[index].append(await toolset.execute(the_call, ctx()))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(in_flight, 0)
            nursery.start_soon(in_flight, 1)
            await progress.wait(2)
            os.kill(old_pid, signal.SIGKILL)
        for replies in results:
            [reply] = replies  # exactly one reply each
            assert reply.is_error
            assert "'test'" in reply.content and "retry" in reply.content
        await toolset.wait_running()
        assert toolset.restarts == 1
        new_pid = int(await run(toolset, "pid"))
        assert new_pid != old_pid
        assert await run(toolset, "add", a=1, b=1) == "2"


async def test_a_call_made_while_restarting_waits_for_the_new_server(
    mock_clock: trio.testing.MockClock,
) -> None:
    mock_clock.rate = 1.0
    async with open_mcp_toolset(
        STDIO, name="test", call_timeout=None, backoff=Backoff(initial=1000.0, jitter=False)
    ) as toolset:
        os.kill(int(await run(toolset, "pid")), signal.SIGKILL)
        assert await toolset.wait_status(MCPStatus.RESTARTING) == MCPStatus.RESTARTING
        results = []

        async def during_backoff() -> None:
            results.append(await run(toolset, "echo", text="after"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(during_backoff)
            await trio.testing.wait_all_tasks_blocked()
            assert results == []  # waiting for the restart, not failed
            mock_clock.jump(1000)  # the backoff delay is over
        assert results == ["after"]
        assert toolset.restarts == 1


class Recorder:
    def __init__(self, action: SupervisorAction) -> None:
        self.action = action
        self.seen: list[tuple[str, BaseException]] = []

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        self.seen.append((name, error))
        return self.action


async def test_policy_stop_leaves_calls_answered_with_an_error() -> None:
    policy = Recorder(SupervisorAction.STOP)
    async with open_mcp_toolset(STDIO, name="test", policy=policy) as toolset:
        os.kill(int(await run(toolset, "pid")), signal.SIGKILL)
        await toolset.wait_status(MCPStatus.STOPPED)
        result = await toolset.execute(call("echo", text="x"), ctx())
        assert result.is_error and "stopped" in result.content and "'test'" in result.content
        with pytest.raises(MCPServerFailed, match="'test' is stopped"):
            await toolset.wait_running()
    [(name, error)] = policy.seen
    assert name == "test"
    assert isinstance(error, MCPServerLost) and error.retryable


async def test_restart_limit_exceeded_escalates_out_of_the_block() -> None:
    with pytest.raises(MCPServerFailed, match="'test' failed and its supervisor gave up") as info:
        async with open_mcp_toolset(
            STDIO, name="test", restart_limit=RestartLimit(max_restarts=0)
        ) as toolset:
            os.kill(int(await run(toolset, "pid")), signal.SIGKILL)
            await trio.sleep_forever()
    assert isinstance(info.value.__cause__, MCPServerLost)
    assert "restart limit 0 (consecutive failures) exceeded" in str(info.value)


async def test_policy_escalate_raises_out_of_the_block() -> None:
    policy = Recorder(SupervisorAction.ESCALATE)
    with pytest.raises(MCPServerFailed):
        async with open_mcp_toolset(STDIO, name="test", policy=policy) as toolset:
            os.kill(int(await run(toolset, "pid")), signal.SIGKILL)
            await trio.sleep_forever()
    assert len(policy.seen) == 1


async def test_a_server_that_cannot_start_fails_the_block_with_a_clear_error() -> None:
    missing = MCPStdio(command=str(HERE / "no-such-mcp-server"))
    with pytest.raises(
        MCPServerFailed, match="could not connect to MCP server 'no-such-mcp-server'"
    ):
        async with open_mcp_toolset(missing):
            pytest.fail("the block must not run")  # pragma: no cover


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MCPStdio(command=""), "MCPStdio.command must be a non-empty str"),
        (lambda: MCPStdio(command="x", args="y"), "MCPStdio.args must be a sequence of str"),
        (lambda: MCPStdio(command="x", env={"A": 1}), "MCPStdio.env must be None or a mapping"),
        (lambda: MCPHttp("ftp://example.com"), "MCPHttp.url must be an http:// or https://"),
    ],
)
def test_bad_server_descriptions_are_rejected(make: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        make()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"call_timeout": -1}, "call_timeout must be a positive number of seconds or None"),
        ({"connect_timeout": None}, "connect_timeout must be a positive number of seconds"),
        ({"prefix": 3}, "prefix must be a str"),
        ({"name": ""}, "name must be a non-empty str"),
        ({"policy": object()}, "policy must be a SupervisorPolicy"),
        ({"restart_limit": 3}, "restart_limit must be a RestartLimit"),
        ({"backoff": 1.0}, "backoff must be a Backoff"),
        ({"events": "log"}, "events must be an EventSink"),
    ],
)
async def test_bad_arguments_are_rejected_before_anything_starts(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        async with open_mcp_toolset(STDIO, **kwargs):
            pytest.fail("the block must not run")  # pragma: no cover
    with pytest.raises(InvalidArgumentError, match=r"server must be MCPStdio\(command=...\)"):
        async with open_mcp_toolset("python server.py"):  # type: ignore[arg-type]
            pytest.fail("the block must not run")  # pragma: no cover


# --------------------------------------------------------------------------- streamable HTTP

# The SDK's streamable HTTP client leaves httpx2's SSE and body iterators (async generators)
# suspended when its reader tasks are cancelled at the end of a session; they are finalized
# by the garbage collector, which reports them as unraisable. Only those are ignored.
sdk_http_generators = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <async_generator object "
    r"(EventSource|PoolByteStream|Response)\.:pytest.PytestUnraisableExceptionWarning"
)


@sdk_http_generators
async def test_http_server_tools_progress_and_cancellation() -> None:
    progress = Progress()
    async with (
        http_server() as (url, _),
        open_mcp_toolset(MCPHttp(url), name="web", prefix="w_", events=progress) as toolset,
    ):
        assert "w_add" in {d.name for d in toolset.definitions()}
        assert await run(toolset, "w_add", a=20, b=22) == "42"
        assert (await run(toolset, "w_steps", count=2)) == "did 2 steps"
        assert len(progress.events) == 2
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def canceller() -> None:
                    await progress.wait(3)
                    scope.cancel()

                nursery.start_soon(canceller)
                await toolset.execute(call("w_hang", label="over-http"), ctx())
        assert scope.cancelled_caught
        assert await run(toolset, "w_cancellations") == "over-http"


@sdk_http_generators
async def test_http_server_that_dies_answers_the_call_in_flight_once() -> None:
    progress = Progress()
    results: list[Any] = []
    with pytest.raises(MCPServerFailed, match="'web' failed") as info:
        async with (
            http_server() as (url, process),
            open_mcp_toolset(
                MCPHttp(url),
                name="web",
                events=progress,
                backoff=Backoff.none(),
                restart_limit=RestartLimit(max_restarts=1),
            ) as toolset,
        ):
            async with trio.open_nursery() as nursery:

                async def in_flight() -> None:
                    results.append(await toolset.execute(call("hang", label="h"), ctx()))

                nursery.start_soon(in_flight)
                await progress.wait()
                process.kill()
            # The server does not come back: the reconnection fails, past the limit.
            await trio.sleep_forever()
    [reply] = results
    assert reply.is_error and "'web'" in reply.content and "retry" in reply.content
    assert isinstance(info.value.__cause__, Exception)


@sdk_http_generators
async def test_http_server_that_comes_back_is_reconnected() -> None:
    progress = Progress()
    async with http_server() as (url, process):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        async with open_mcp_toolset(
            MCPHttp(url),
            name="web",
            events=progress,
            # Reconnection attempts every 50 ms (real time) until the new server listens.
            backoff=Backoff(initial=0.05, factor=1.0, jitter=False),
            restart_limit=RestartLimit(max_restarts=1000),
        ) as toolset:
            assert await run(toolset, "echo", text="before") == "before"
            results: list[Any] = []
            async with trio.open_nursery() as nursery:

                async def in_flight() -> None:
                    results.append(await toolset.execute(call("hang", label="h"), ctx()))

                nursery.start_soon(in_flight)
                await progress.wait()
                process.kill()
            [lost] = results
            assert lost.is_error and "'web'" in lost.content and "retry" in lost.content
            await process.wait()
            async with http_server(port) as (again, _):
                assert again == url
                await toolset.wait_running()
                assert await run(toolset, "echo", text="after") == "after"
                assert toolset.restarts >= 1


# --------------------------------------------------------------------------- the reference server


async def test_reference_server_everything() -> None:
    server = everything_server()
    progress = Progress()
    async with open_mcp_toolset(server, name="everything", events=progress) as toolset:
        names = {d.name for d in toolset.definitions()}
        assert {"echo", "get-sum", "trigger-long-running-operation"} <= names
        assert "Echo: hello" in await run(toolset, "echo", message="hello")
        assert "5" in await run(toolset, "get-sum", a=2, b=3)
        image = await run(toolset, "get-tiny-image")
        assert '"type": "image"' in image
        done = await run(toolset, "trigger-long-running-operation", duration=0.2, steps=2)
        assert "completed" in done
        assert [e.progress for e in progress.events] == [1.0, 2.0]
        # Cancelled mid-operation: the scope exits as soon as the first progress arrives.
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def canceller() -> None:
                    await progress.wait(3)
                    scope.cancel()

                nursery.start_soon(canceller)
                await toolset.execute(
                    call("trigger-long-running-operation", duration=600, steps=600), ctx()
                )
        assert scope.cancelled_caught
        assert "Echo: again" in await run(toolset, "echo", message="again")


# --------------------------------------------------------------------------- serving


def lead(request: Any) -> Any:
    if isinstance(request.messages[-1], UserMessage):
        task = request.messages[-1].content[0].text
        return tool_call("delegate", {"specialist": "shouter", "subtask": task})
    return "lead says: " + request.messages[-1].results[0].content


def shouter(request: Any) -> Any:
    return text(request.messages[0].content[0].text.upper() + "!")


def delegator_server() -> Any:
    delegator = Delegator(
        AgentSpec(name="lead", instructions="Delegate, then report.", model="lead"),
        [AgentSpec(name="shouter", instructions="Shout.", model="shouter")],
    )
    runner = ModelRunner({"lead": FunctionModel(lead), "shouter": FunctionModel(shouter)})
    return mcp_server(delegator, runner=runner, name="team", tool_name="ask_team")


@sdk_http_generators
async def test_a_delegator_served_over_http_answers_mcp_calls() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_mcp_http, delegator_server())
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")
        async with open_mcp_toolset(MCPHttp(url), name="team") as toolset:
            [definition] = toolset.definitions()
            assert definition.name == "ask_team"
            assert definition.parameters["required"] == ["task"]
            assert await run(toolset, "ask_team", task="hello") == "lead says: HELLO!"
        nursery.cancel_scope.cancel()


async def test_an_agent_factory_served_over_stdio_answers_mcp_calls() -> None:
    server = MCPStdio(command=sys.executable, args=(str(HERE / "mcp_agent_server.py"),))
    async with open_mcp_toolset(server, name="reverser") as toolset:
        assert await run(toolset, "reverse", task="abc") == "cba"
        assert await run(toolset, "reverse", task="xyz") == "zyx"  # a fresh agent each call
        failed = await toolset.execute(call("reverse", task="explode"), ctx())
        assert failed.is_error and "the model exploded" in failed.content


async def test_outside_cancellation_of_serve_mcp_http_is_a_bare_cancelled() -> None:
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_mcp_http, delegator_server())

            async def cancel_soon() -> None:
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()

            nursery.start_soon(cancel_soon)
            try:
                await trio.sleep_forever()
            except BaseException as exc:
                caught.append(exc)
                raise
    assert scope.cancelled_caught
    assert [type(exc) for exc in caught] == [trio.Cancelled]


async def test_outside_cancellation_of_serve_mcp_stdio_is_a_bare_cancelled() -> None:
    # The SDK reads stdin in a worker thread: the cancellation completes when that read
    # returns (here: at the end of input, sent once the scope was cancelled).
    process = await trio.lowlevel.open_process(
        [sys.executable, str(HERE / "mcp_agent_server.py"), "cancel"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stderr is not None
    output = b""
    with trio.fail_after(60):
        while b"cancelled\n" not in output:
            chunk = await process.stderr.receive_some()
            assert chunk, output
            output += chunk
        await process.stdin.aclose()
        while chunk:
            chunk = await process.stderr.receive_some()
            output += chunk
        assert await process.wait() == 0
    assert output.decode().splitlines()[-1] == "['Cancelled'] True"


def test_bad_serving_targets_are_rejected() -> None:
    agent = Agent(FunctionModel(shouter), name="a")
    with pytest.raises(InvalidArgumentError, match=r"pass a factory, e.g. lambda: Agent"):
        mcp_server(agent)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="target must be an agent factory"):
        mcp_server(42)  # type: ignore[arg-type]
    delegator = Delegator(
        AgentSpec(name="lead", instructions="", model="m"),
        [AgentSpec(name="helper", instructions="", model="m")],
    )
    with pytest.raises(InvalidArgumentError, match="a Delegator needs runner="):
        mcp_server(delegator)
    with pytest.raises(InvalidArgumentError, match="tool_name must be a non-empty str"):
        mcp_server(lambda: agent, tool_name="")


# --------------------------------------------------------------------------- the extra


def test_the_core_does_not_import_the_mcp_sdk() -> None:
    code = "import sys, trio_agents; print('mcp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_sdk_raises_import_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['mcp'] = None\n"
        "try:\n    import trio_agents.mcp\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'trio-agents[mcp]'" in out.stdout
