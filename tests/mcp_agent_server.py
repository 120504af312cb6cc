"""A trio_agents agent served over MCP on stdio (``serve_mcp_stdio``), for the tests.

Each call builds a fresh agent whose scripted model answers with the reversed task.
"""

from __future__ import annotations

import trio

from trio_agents import Agent
from trio_agents.mcp import mcp_server, serve_mcp_stdio
from trio_agents.testing import FunctionModel, text


def make_agent() -> Agent:
    def reverse(request):  # type: ignore[no-untyped-def]
        task = request.messages[-1].content[0].text
        if task == "explode":
            raise ValueError("the model exploded")
        return text(task[::-1])

    return Agent(FunctionModel(reverse), name="reverser", instructions="Reverse the task.")


if __name__ == "__main__":
    trio.run(serve_mcp_stdio, mcp_server(make_agent, name="reverser", tool_name="reverse"))
