"""MCPAgent: MCP sessions that live in an orchestrated agent's incarnation, supervised by the
orchestrator (against the SDK-written test server over stdio)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import pytest
import trio
from test_mcp import STDIO, everything_server

from trio_agents import (
    AgentFailed,
    AgentOrchestrator,
    Backoff,
    DefaultSupervisor,
    Event,
    InvalidArgumentError,
    ModelRequest,
    RetryPolicy,
    ToolProgress,
    ToolResultMessage,
    UsageError,
    UserMessage,
    tool,
)
from trio_agents.mcp import MCPAgent, MCPServerFailed, MCPServerLost, MCPStdio
from trio_agents.testing import FunctionModel, text, tool_call


def respond(request: ModelRequest) -> Any:
    """``"call NAME {json-free args as k=v}"`` calls that tool; a tool result is answered
    with its content; anything else is echoed."""
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return text(f"result: {last.results[0].content}")
    assert isinstance(last, UserMessage)
    words = last.content[0].text.split()  # type: ignore[union-attr]
    if words[0] == "call":
        arguments: dict[str, Any] = {}
        for pair in words[2:]:
            key, _, value = pair.partition("=")
            arguments[key] = int(value) if value.isdigit() else value
        return tool_call(words[1], arguments, id=f"c{len(request.messages)}")
    return f"echo {' '.join(words)}"


class Sink:
    """The orchestrator's event sink: keeps every event, wakes on tool progress."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._progress = trio.Event()

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, ToolProgress):
            self._progress.set()

    async def progress(self) -> None:
        await self._progress.wait()
        self._progress = trio.Event()


def orchestrator(sink: Sink | None = None, **agent: Any) -> AgentOrchestrator:
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=sink
    )
    agent.setdefault("servers", {"test": STDIO})

    def build() -> MCPAgent:
        return MCPAgent(
            FunctionModel(respond), name="mcp", retry=RetryPolicy(max_attempts=1), **agent
        )

    orch.add_agent("mcp", build)
    return orch


async def test_a_killed_server_fails_the_agent_its_supervisor_restarts_it() -> None:
    sink = Sink()
    async with orchestrator(sink).open() as system:
        handle = await system.spawn("mcp")
        agent = handle.agent
        assert isinstance(agent, MCPAgent) and [t.name for t in agent.toolsets] == ["test"]
        old_pid = int((await handle.send_message("call pid")).final_text.split()[-1])
        in_flight = handle.send_message_nowait("call hang label=victim")
        queued = handle.send_message_nowait("call pid")
        await sink.progress()  # the hang call is running on the server
        os.kill(old_pid, signal.SIGKILL)
        # Exactly one reply: the model read an error result naming the server.
        reply = await in_flight.wait()
        assert "'test'" in reply.final_text and "retry" in reply.final_text
        # The incarnation failed with the lost server; the policy restarted the agent, whose
        # new session (a new process) serves the queued call.
        new_pid = int((await queued.wait()).final_text.split()[-1])
        assert new_pid != old_pid
        assert handle.statistics().restarts == 1
        assert handle.agent is not agent and agent.toolsets == ()
        assert (await handle.send_message("call add a=2 b=3")).final_text == "result: 5"
    [failed] = [e for e in sink.events if isinstance(e, AgentFailed)]
    assert failed.error.type == MCPServerLost.__name__ and "'test'" in failed.error.message


async def test_a_server_that_cannot_start_fails_the_spawn_naming_it() -> None:
    broken = MCPStdio(command=sys.executable, args=("-c", "raise SystemExit(3)"))
    async with orchestrator(servers={"broken": broken}).open() as system:
        with pytest.raises(MCPServerFailed, match="'broken'"):
            await system.spawn("mcp")


async def test_tools_are_prefixed_and_a_name_clash_fails_the_spawn() -> None:
    @tool
    async def echo(text: str) -> str:
        """Our own echo."""
        return text

    async with orchestrator(prefixes={"test": "t_"}, tools=[echo]).open() as system:
        handle = await system.spawn("mcp")
        agent = handle.agent
        assert isinstance(agent, MCPAgent)
        names = {d.name for d in agent._tool_definitions}
        assert {"echo", "t_echo", "t_pid", "t_hang"} <= names
        assert (await handle.send_message("call t_add a=1 b=1")).final_text == "result: 2"
    async with orchestrator(tools=[echo]).open() as system:
        with pytest.raises(InvalidArgumentError, match="echo"):
            await system.spawn("mcp")


async def test_the_reference_server_through_an_orchestrated_agent() -> None:
    async with orchestrator(servers={"everything": everything_server()}).open() as system:
        handle = await system.spawn("mcp")
        reply = await handle.send_message("call echo message=hello")
        assert "hello" in reply.final_text


async def test_outside_cancellation_mid_call_is_a_bare_cancelled() -> None:
    sink = Sink()
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        try:
            async with orchestrator(sink).open() as system:
                handle = await system.spawn("mcp")
                handle.send_message_nowait("call hang label=cut")
                await sink.progress()
                scope.cancel()
                await trio.sleep_forever()
        except BaseException as exc:
            caught.append(exc)
            raise
    assert scope.cancelled_caught
    assert [type(exc) for exc in caught] == [trio.Cancelled]


async def test_outside_an_orchestrator_run_says_how_to_use_it() -> None:
    agent = MCPAgent(FunctionModel(respond), servers={"test": STDIO})
    with pytest.raises(UsageError, match=r"no open MCP sessions.*AgentOrchestrator"):
        await agent.run("call pid")
    with pytest.raises(UsageError, match="no open MCP sessions"):
        await agent.resume([])
    assert agent.servers == {"test": STDIO}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"servers": {}}, "servers must be a non-empty mapping"),
        ({"servers": ["x"]}, "servers must be a non-empty mapping"),
        ({"servers": {"x": "python server.py"}}, "server 'x' must be MCPStdio"),
        ({"servers": {"": STDIO}}, "server names must be non-empty str"),
        ({"servers": {"t": STDIO}, "prefixes": {"u": "u_"}}, "prefixes names the server 'u'"),
        ({"servers": {"t": STDIO}, "prefixes": {"t": 3}}, "the prefix for 't' must be a str"),
        ({"servers": {"t": STDIO}, "call_timeout": 0}, "call_timeout"),
        ({"servers": {"t": STDIO}, "connect_timeout": None}, "connect_timeout"),
    ],
)
def test_bad_arguments_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        MCPAgent(FunctionModel(respond), **options)
