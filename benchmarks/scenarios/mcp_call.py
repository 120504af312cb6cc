"""9. A tool call to an MCP server over stdio.

trio_agents: ``toolset.execute(call, ctx)`` on an :func:`~trio_agents.mcp.open_mcp_toolset`
toolset (supervised session task, per-call timeout scope, result conversion).

raw: the SDK's bare ``ClientSession.call_tool`` on the same server, opened with
``stdio_client`` in the measuring task.

Both talk to the same tiny ``MCPServer`` (an ``echo`` tool) started as a subprocess; the
process start and the handshake are outside the measured region. Most of a call is the
server's and the pipe's work, so the ratio shows what the toolset adds to a real call.
"""

from __future__ import annotations

import importlib.util
import sys

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import drive

CALLS: dict[Profile, int] = {"default": 300, "quick": 100, "smoke": 4}
"""Calls per sample."""

SERVER = """
from mcp.server.mcpserver import MCPServer

server = MCPServer("bench")


@server.tool()
async def echo(text: str) -> str:
    return text


server.run("stdio")
"""


async def framework(meter: Meter, case: Case) -> None:
    from trio_agents import ToolCallBlock, ToolContext
    from trio_agents.mcp import MCPStdio, open_mcp_toolset

    calls = case.params["calls"]
    server = MCPStdio(command=sys.executable, args=("-c", SERVER))
    async with open_mcp_toolset(server, name="bench") as toolset:
        tool_call = ToolCallBlock(id="1", name="echo", arguments={"text": "ping"})
        ctx = ToolContext(agent="bench", call=tool_call)

        async def call(_: str) -> object:
            result = await toolset.execute(tool_call, ctx)
            assert not result.is_error, result.content
            return result

        meter.begin()
        await drive(case.size, calls, call)
        meter.end(calls)


async def raw(meter: Meter, case: Case) -> None:
    from mcp import ClientSession, StdioServerParameters, stdio_client

    calls = case.params["calls"]
    params = StdioServerParameters(command=sys.executable, args=["-c", SERVER])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await session.list_tools()

        async def call(_: str) -> object:
            result = await session.call_tool("echo", {"text": "ping"})
            assert not result.is_error
            return result

        meter.begin()
        await drive(case.size, calls, call)
        meter.end(calls)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="mcp-call",
            number="9",
            name=f"{size} caller{'s' if size != 1 else ''}",
            size=size,
            per="call",
            variants=(
                Variant(FRAMEWORK, "trio_agents MCPToolset", framework),
                Variant(BASELINE, "SDK ClientSession", raw),
            ),
            targets=(Target(metric="time", limit=1.1, against=BASELINE, text="<= 1.1x SDK"),),
            params={"calls": max(CALLS[profile], size)},
        )
    ]


def _unavailable() -> str | None:
    if importlib.util.find_spec("mcp") is None:
        return "the MCP SDK is not installed (pip install 'trio-agents[mcp]')"
    return None


SCENARIO = Scenario(
    key="mcp-call",
    number="9",
    title="a tool call to an MCP server over stdio, against the SDK's bare ClientSession",
    sizes={"default": (1, 10), "quick": (1, 10), "smoke": (1, 2)},
    size_meaning="concurrent callers",
    build=build,
    unavailable=_unavailable,
)
