"""A trio_agents agent served over MCP on stdio (``serve_mcp_stdio``), for the tests.

Each call builds a fresh agent whose scripted model answers with the reversed task.
"""

from __future__ import annotations

import sys

import trio
import trio.testing

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


async def cancelled_from_outside() -> None:
    """Serve, cancel the serving from outside; report on stderr what left serve_mcp_stdio."""
    caught: list[BaseException] = []
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel() -> None:
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel(reason="the host went away")
                print("cancelled", file=sys.stderr, flush=True)

            nursery.start_soon(cancel)
            try:
                await serve_mcp_stdio(mcp_server(make_agent))
            except BaseException as exc:
                caught.append(exc)
                raise
    print([type(exc).__name__ for exc in caught], scope.cancelled_caught, file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["cancel"]:
        trio.run(cancelled_from_outside)
    else:
        trio.run(serve_mcp_stdio, mcp_server(make_agent, name="reverser", tool_name="reverse"))
