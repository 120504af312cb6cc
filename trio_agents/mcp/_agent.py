"""An agent whose MCP sessions live in its incarnation, supervised by its orchestrator.

Rules:

* **The session belongs to the incarnation.** Under an :class:`~trio_agents.AgentOrchestrator`
  every incarnation of an :class:`MCPAgent` opens one session per server (with
  :func:`~trio_agents.mcp.open_mcp_toolset`) in its watchdog task (:meth:`Agent.watchdog
  <trio_agents.Agent.watchdog>`), which enters and exits the SDK's context managers itself.
  The agent counts as running, and is sent requests, only once every server answered
  ``initialize`` and ``tools/list``; a server that cannot be reached fails the spawn (raised to
  the caller of the first :meth:`~trio_agents.AgentSystem.spawn`, supervised for a restart).
* **A lost server fails the agent, and its supervisor decides.** The session does not
  reconnect by itself: a call in flight gets exactly one reply, an error result naming the
  server that says it may be retried (the run goes on and the model reads it); once that
  request is answered the incarnation fails with :class:`~trio_agents.mcp.MCPServerLost`
  (retryable), and the orchestrator's policy, restart limit, backoff and strategy apply as to
  any failed agent. A restart builds a new agent from the factory, which connects again (a
  new process for stdio). Queued requests wait for the new incarnation; the next call works.
* **Tools.** The agent's own ``tools`` and every server's tools, the latter named
  ``prefix + name`` (``prefixes`` per server; none by default). Two tools of one name are
  refused when the sessions open (the spawn fails, naming the tool). The list is read when
  the sessions open and again before every run, so a server's ``list_changed`` reaches the
  next run.
* Outside an orchestrator it has no sessions: :meth:`run` raises
  :class:`~trio_agents.UsageError` (use :func:`~trio_agents.mcp.open_mcp_toolset` and a plain
  :class:`~trio_agents.Agent` there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio

from .._agent import Agent, Watchdog
from .._errors import InvalidArgumentError, UsageError
from .._messages import AgentResult, ApprovalDecision, Message, ToolCallBlock, ToolResultBlock
from .._models import Model, ToolDefinition
from .._supervision import RestartLimit, SupervisorAction
from .._tools import Tool, ToolContext, ToolExecutor, Toolset, combine_executors
from ._mcp import (
    MCPHttp,
    MCPServerFailed,
    MCPServerLost,
    MCPStatus,
    MCPStdio,
    MCPToolset,
    _check_positive,
    open_mcp_toolset,
)

_NO_RESTARTS = RestartLimit(max_restarts=0)


class _GiveUp:
    """The sessions' own policy: never reconnect; the agent's supervisor decides."""

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return SupervisorAction.ESCALATE


class _SessionTools:
    """The agent's own tools, and its servers' tools while its sessions are open."""

    def __init__(self, own: ToolExecutor) -> None:
        self.own = own
        self.current: ToolExecutor = own
        self.toolsets: tuple[MCPToolset, ...] = ()
        self.closed = trio.Event()  # set once this incarnation's sessions are all closed

    def definitions(self) -> Sequence[ToolDefinition]:
        return self.current.definitions()

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        toolsets = self.toolsets
        closed = self.closed
        result = await self.current.execute(call, ctx)
        if any(t.status != MCPStatus.RUNNING for t in toolsets):
            # A session was lost: the result says so. Hand it back only once the incarnation
            # knows it failed, so that no other request starts on it meanwhile.
            await closed.wait()
        return result

    def get(self, name: str) -> Any:  # approval checks look tools up by name
        get = getattr(self.own, "get", None)
        return get(name) if get is not None else None


def _check_servers(servers: object) -> dict[str, MCPStdio | MCPHttp]:
    if not isinstance(servers, Mapping) or not servers:
        raise InvalidArgumentError(
            "servers must be a non-empty mapping from a server's name to MCPStdio(...) or "
            f"MCPHttp(...); got {servers!r}"
        )
    checked: dict[str, MCPStdio | MCPHttp] = {}
    for name, server in servers.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"server names must be non-empty str; got {name!r}")
        if not isinstance(server, MCPStdio | MCPHttp):
            raise InvalidArgumentError(
                f"server {name!r} must be MCPStdio(command=...) or MCPHttp(url); "
                f"got {type(server).__name__}"
            )
        checked[name] = server
    return checked


class MCPAgent(Agent[Any]):
    """An :class:`~trio_agents.Agent` whose tools include those of MCP servers, connected by
    each incarnation under an :class:`~trio_agents.AgentOrchestrator` (see the module rules).

    :param model: as for :class:`~trio_agents.Agent`.
    :param servers: the servers, by name (the name appears in error results and failures).
    :param prefixes: a prefix for each named server's tool names (e.g. ``{"files": "f_"}``).
    :param call_timeout: seconds a call may take (``None``: no limit); see
        :func:`~trio_agents.mcp.open_mcp_toolset`.
    :param connect_timeout: seconds allowed for each server's ``initialize`` and
        ``tools/list``.
    :param tools: the agent's own tools, besides the servers'.
    :param agent_options: any other keyword argument of :class:`~trio_agents.Agent`.
    :raises InvalidArgumentError: a bad argument (the message names it).
    """

    def __init__(
        self,
        model: Model,
        *,
        servers: Mapping[str, MCPStdio | MCPHttp],
        prefixes: Mapping[str, str] | None = None,
        call_timeout: float | None = 60.0,
        connect_timeout: float = 30.0,
        tools: Iterable[Tool] | ToolExecutor = (),
        **agent_options: Any,
    ) -> None:
        checked = _check_servers(servers)
        prefixes = dict(prefixes or {})
        for name, prefix in prefixes.items():
            if name not in checked:
                raise InvalidArgumentError(
                    f"prefixes names the server {name!r}, which is not among servers "
                    f"{sorted(checked)}"
                )
            if not isinstance(prefix, str):
                raise InvalidArgumentError(f"the prefix for {name!r} must be a str; got {prefix!r}")
        self._call_timeout = _check_positive(call_timeout, "call_timeout", allow_none=True)
        checked_connect = _check_positive(connect_timeout, "connect_timeout", allow_none=False)
        assert checked_connect is not None
        self._connect_timeout: float = checked_connect
        own: ToolExecutor
        if hasattr(tools, "execute") and hasattr(tools, "definitions"):
            own = tools  # type: ignore[assignment]
        else:
            own = Toolset(tools)
        self._tools = _SessionTools(own)
        super().__init__(model, tools=self._tools, **agent_options)
        own_names = {d.name for d in own.definitions()}
        # What the agent adds to its tools' definitions (the final-output tool, if any).
        self._added = tuple(d for d in self._tool_definitions if d.name not in own_names)
        self._servers = checked
        self._prefixes = prefixes

    @property
    def servers(self) -> Mapping[str, MCPStdio | MCPHttp]:
        """The servers, by name."""
        return dict(self._servers)

    @property
    def toolsets(self) -> Sequence[MCPToolset]:
        """The open sessions of this incarnation (empty before they open and after)."""
        return self._tools.toolsets

    def _refresh(self) -> None:
        self._tool_definitions = (*self._tools.definitions(), *self._added)

    def watchdog(self) -> Watchdog:
        """Open one session per server; see the module rules."""

        async def watch(task_status: trio.TaskStatus[None]) -> None:
            started = False
            closed = self._tools.closed = trio.Event()
            try:
                async with AsyncExitStack() as stack:
                    toolsets = []
                    for name, server in self._servers.items():
                        session = open_mcp_toolset(
                            server,
                            name=name,
                            prefix=self._prefixes.get(name, ""),
                            call_timeout=self._call_timeout,
                            connect_timeout=self._connect_timeout,
                            events=self.event_sink,
                            policy=_GiveUp(),
                            restart_limit=_NO_RESTARTS,
                        )
                        toolsets.append(await stack.enter_async_context(session))
                    # Two tools of one name: InvalidArgumentError, a failure to start.
                    combined = combine_executors(self._tools.own, *toolsets)
                    try:
                        self._tools.toolsets = tuple(toolsets)
                        self._tools.current = combined
                        self._refresh()
                        task_status.started()
                        started = True
                        await trio.sleep_forever()
                    finally:
                        self._tools.toolsets = ()
                        self._tools.current = self._tools.own
                        self._refresh()
            except MCPServerFailed as failed:
                # A lost session gives up at once (its own policy escalates): raise what was
                # lost (retryable), for the agent's supervisor to decide about.
                lost = failed.__cause__
                if started and isinstance(lost, MCPServerLost):
                    raise lost from None
                raise
            finally:
                # Last, with nothing awaited after it: the orchestrator records the failure
                # before a tool call waiting on this wakes up.
                closed.set()

        return watch

    def _check_connected(self) -> None:
        if not self._tools.toolsets:
            raise UsageError(
                f"MCPAgent {self.name!r} has no open MCP sessions: its servers are connected "
                "by an AgentOrchestrator (spawn it there), or use open_mcp_toolset with a "
                "plain Agent"
            )

    async def run(self, input: str | Message | Sequence[Message]) -> AgentResult[Any]:
        """As :meth:`Agent.run <trio_agents.Agent.run>`, once the sessions are open.

        :raises ~trio_agents.UsageError: no session is open (not spawned by an orchestrator).
        """
        self._check_connected()
        self._refresh()
        return await super().run(input)

    async def resume(
        self,
        decisions: Iterable[ApprovalDecision],
        *,
        waiting: AgentResult[Any] | None = None,
        history: Sequence[Message] | None = None,
    ) -> AgentResult[Any]:
        """As :meth:`Agent.resume <trio_agents.Agent.resume>`, once the sessions are open."""
        self._check_connected()
        self._refresh()
        return await super().resume(decisions, waiting=waiting, history=history)
