"""MCP servers as supervised toolsets, and trio_agents systems served over MCP.

Install with ``pip install 'trio-agents[mcp]'``. Everything here runs on the official ``mcp``
SDK, which is written against anyio and so runs under trio; this module never touches asyncio.

Client rules (:func:`open_mcp_toolset`):

* **One session task owns the connection.** The transport (:class:`MCPStdio` or
  :class:`MCPHttp`) and the SDK's ``ClientSession`` are entered and exited in that one task,
  never across tasks. Calls are made from the callers' own tasks through the open session.
* **Tools.** The server's tools become tool definitions with their JSON schemas, named
  ``prefix + name``. A ``notifications/tools/list_changed`` from the server makes the session
  task list them again; :meth:`MCPToolset.definitions` then returns the new list.
* **Results.** Text content is joined by newlines; other content (images, resources) is sent
  to the model as its JSON; a result with no content but structured content is that
  structure's JSON. A result with ``isError``, an MCP protocol error, an unknown tool, invalid
  JSON arguments and a timeout all become error results the model can read, never a crash.
* **Timeouts and cancellation.** A call that takes longer than its timeout, or whose scope is
  cancelled, is abandoned and the SDK sends the server ``notifications/cancelled`` for it.
  Outside cancellation propagates as ``trio.Cancelled``, also out of the ``async with``.
* **Progress.** ``notifications/progress`` for a call becomes a
  :class:`~trio_agents.ToolProgress` event in ``events``.
* **Supervision.** When the connection is lost (the server process died, the HTTP server went
  away) the session task is the failed child of a one-child supervisor: the policy
  (:class:`~trio_agents.SupervisorPolicy`, default :class:`~trio_agents.DefaultSupervisor`)
  gets :class:`MCPServerLost` (retryable) and :func:`~trio_agents.decide` applies the restart
  limit and backoff exactly as for agents. RESTART reconnects (a new process for stdio);
  STOP leaves the toolset answering every call with an error result; ESCALATE, and a restart
  past the limit, raise :class:`MCPServerFailed` out of the ``async with``.
* **Exactly one reply per call.** A call in flight when the connection is lost returns one
  error result that names the server and says it may be retried; calls made while the
  server restarts wait for it (within their timeout); the next call after the restart works.

Under an :class:`~trio_agents.AgentOrchestrator`, :class:`MCPAgent` puts the sessions in the
agent's incarnation instead: a lost server fails the agent, and the orchestrator's supervisor
decides (see :mod:`trio_agents.mcp._agent`).
"""

from __future__ import annotations

from ._agent import MCPAgent
from ._mcp import (
    MCPHttp,
    MCPServerFailed,
    MCPServerLost,
    MCPStatus,
    MCPStdio,
    MCPToolset,
    mcp_server,
    open_mcp_toolset,
    serve_mcp_http,
    serve_mcp_stdio,
)

__all__ = [
    "MCPAgent",
    "MCPHttp",
    "MCPServerFailed",
    "MCPServerLost",
    "MCPStatus",
    "MCPStdio",
    "MCPToolset",
    "mcp_server",
    "open_mcp_toolset",
    "serve_mcp_http",
    "serve_mcp_stdio",
]
