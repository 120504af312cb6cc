"""A small MCP server for the tests, written with the SDK's server API (``MCPServer``).

Run ``python mcp_test_server.py`` for stdio, or ``python mcp_test_server.py http [PORT]`` to serve
streamable HTTP on 127.0.0.1 at PORT (default: a free port); it then prints ``PORT <n>`` on
stdout once listening.

Besides plain tools it remembers which calls the client cancelled
(``notifications/cancelled``), so a test can ask whether the cancellation reached it.
"""

from __future__ import annotations

import os
import socket
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("trio-agents-test")
cancelled: list[str] = []
cancel_seen = anyio.Event()


@server.tool()
async def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
async def pid() -> int:
    """The server's process id."""
    return os.getpid()


@server.tool()
async def fail(message: str) -> str:
    """Always fails with the message."""
    raise ValueError(message)


@server.tool()
async def steps(count: int, ctx: Context) -> str:
    """Report progress ``count`` times, then finish."""
    for i in range(1, count + 1):
        await ctx.report_progress(i, count, f"step {i}")
    return f"did {count} steps"


@server.tool()
async def hang(label: str, ctx: Context) -> str:
    """Report progress once, then wait until cancelled; remembers the cancellation."""
    await ctx.report_progress(0, None, "started")
    try:
        await anyio.sleep_forever()
    finally:
        # Runs when the client's notifications/cancelled interrupts the call.
        cancelled.append(label)
        cancel_seen.set()
    return "unreachable"


@server.tool()
async def cancellations() -> str:
    """Labels of the ``hang`` calls that were cancelled, comma-separated (waits up to 10 s
    for the first)."""
    with anyio.move_on_after(10):
        await cancel_seen.wait()
    return ",".join(cancelled)


@server.tool()
async def grow(ctx: Context) -> str:
    """Add a tool ``extra`` and tell the client the tool list changed."""

    async def extra() -> str:
        """A tool added at run time."""
        return "extra!"

    server.add_tool(extra, name="extra")
    await ctx.session.send_tool_list_changed()
    return "grown"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "http":
        import uvicorn

        sock = socket.socket()
        # A restarted server binds the port its predecessor had (``http PORT``).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0))
        port = sock.getsockname()[1]
        app = server.streamable_http_app(host="127.0.0.1")
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")

        # Listening before the port is printed: connections wait in the backlog until
        # uvicorn accepts them.
        sock.listen(128)
        print(f"PORT {port}", flush=True)
        uvicorn.Server(config).run(sockets=[sock])
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
