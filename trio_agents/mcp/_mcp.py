"""The implementation of :mod:`trio_agents.mcp` (its docstring has the rules)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, ClassVar, TextIO, cast

import attrs
import trio

try:
    import anyio
    import mcp
    import mcp.types as mcp_types
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError("trio_agents.mcp needs the MCP SDK: pip install 'trio-agents[mcp]'") from _exc

from .._agent import Agent
from .._delegation import AgentRunner, Delegator
from .._errors import AgentError, InvalidArgumentError, ToolError
from .._events import EventSink, ToolProgress
from .._messages import ToolCallBlock, ToolResultBlock
from .._models import ToolDefinition
from .._supervision import (
    Backoff,
    DefaultSupervisor,
    RestartHistory,
    RestartLimit,
    RestartStrategy,
    SupervisorAction,
    SupervisorPolicy,
    decide,
)
from .._tools import ToolContext

# --------------------------------------------------------------------------- servers


def _str_tuple(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidArgumentError(f"MCPStdio.args must be a sequence of str; got {value!r}")
    return tuple(value)


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be a non-empty str; got {value!r}"
        )


def _http_url(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InvalidArgumentError(f"MCPHttp.url must be an http:// or https:// URL; got {value!r}")


def _str_map(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be None or a mapping of str to "
            f"str; got {value!r}"
        )


@attrs.frozen(kw_only=True)
class MCPStdio:
    """An MCP server run as a subprocess and spoken to over its stdin and stdout."""

    command: str = attrs.field(validator=_non_empty)
    """The executable (looked up on ``PATH``)."""
    args: tuple[str, ...] = attrs.field(default=(), converter=_str_tuple)
    """Its command-line arguments."""
    env: Mapping[str, str] | None = attrs.field(default=None, validator=_str_map)
    """Extra environment variables, merged over the SDK's safe default environment."""
    cwd: str | None = None
    """Working directory of the process (``None``: the current one)."""


@attrs.frozen
class MCPHttp:
    """An MCP server reached over streamable HTTP."""

    url: str = attrs.field(validator=_http_url)
    """The MCP endpoint, e.g. ``"http://127.0.0.1:8000/mcp"``."""
    headers: Mapping[str, str] | None = attrs.field(default=None, validator=_str_map)
    """Extra HTTP headers sent with every request (e.g. authorization)."""


# --------------------------------------------------------------------------- errors


class MCPServerLost(ToolError):
    """The connection to an MCP server was lost (its process died, its HTTP endpoint went
    away). Retryable: it is what the supervisor policy sees, and the default policy restarts."""

    retryable: ClassVar[bool] = True


class MCPServerFailed(AgentError):
    """An MCP server's supervisor gave up on it (the policy escalated, or the restart limit
    was exceeded); raised out of :func:`open_mcp_toolset`, chaining the last failure."""


class MCPStatus:
    """The states of an :class:`MCPToolset`'s connection, as strings."""

    CONNECTING: ClassVar[str] = "connecting"
    """Connecting for the first time."""
    RUNNING: ClassVar[str] = "running"
    """Connected; calls go to the server."""
    RESTARTING: ClassVar[str] = "restarting"
    """The connection was lost: the supervisor decides, waits the backoff delay and
    reconnects. Calls made now wait for the new connection."""
    STOPPED: ClassVar[str] = "stopped"
    """Stopped for good (the policy chose STOP, or the toolset is closed)."""


# --------------------------------------------------------------------------- session plumbing

_CLOSED = "closed"
_CHANGED = "changed"


class _WatchedReadStream:
    """The transport's read stream, telling the session task when it ends (server gone)."""

    def __init__(self, inner: Any, signal: Callable[[str], None]) -> None:
        self._inner = inner
        self._signal = signal

    @property
    def last_context(self) -> Any:
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._signal(_CLOSED)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, anyio.ClosedResourceError):
            self._signal(_CLOSED)
            raise

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._inner.aclose()


@attrs.define(eq=False)
class _Generation:
    """One connection: its session and the calls in flight on it."""

    session: Any
    number: int
    inflight: set[trio.CancelScope] = attrs.Factory(set)
    lost: bool = False


def _content_text(result: Any) -> str:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(
                json.dumps(block.model_dump(mode="json", by_alias=True, exclude_none=True))
            )
    if not parts and result.structured_content is not None:
        return json.dumps(result.structured_content)
    return "\n".join(parts)


def _errlog() -> TextIO:
    """Where the server's stderr goes: ours, or nowhere when ours is not a real file."""
    try:
        sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        # The SDK passes it on to the process's stderr, which takes DEVNULL too.
        return cast(TextIO, subprocess.DEVNULL)
    return sys.stderr


def _is_transport_error(exc: BaseException) -> bool:
    if isinstance(exc, MCPError):
        return exc.code == mcp_types.CONNECTION_CLOSED
    return isinstance(
        exc, anyio.BrokenResourceError | anyio.ClosedResourceError | anyio.EndOfStream | OSError
    ) or type(exc).__module__.startswith(("httpx", "httpcore"))


# --------------------------------------------------------------------------- the toolset


class MCPToolset:
    """The tools of one MCP server, as a :class:`~trio_agents.ToolExecutor`.

    Made by :func:`open_mcp_toolset`, usable inside its ``async with`` block; give it to an
    agent like any executor, or combine it with others with
    :func:`~trio_agents.combine_executors`.
    """

    def __init__(
        self,
        server: MCPStdio | MCPHttp,
        *,
        name: str,
        prefix: str,
        timeout: float | None,
        connect_timeout: float,
        events: EventSink | None,
        policy: SupervisorPolicy,
        restart_limit: RestartLimit,
        backoff: Backoff,
        rng: random.Random,
    ) -> None:
        self._server = server
        self._name = name
        self._prefix = prefix
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._events = events
        self._policy = policy
        self._restart_limit = restart_limit
        self._backoff = backoff
        self._rng = rng
        self._status = MCPStatus.CONNECTING
        self._generation: _Generation | None = None
        self._generations = 0
        self._changed = trio.Event()  # set at every status change, then replaced
        self._remote: dict[str, str] = {}  # exposed name -> server's name
        self._definitions: tuple[ToolDefinition, ...] = ()
        self._history = RestartHistory()
        self._signals: trio.MemorySendChannel[str] | None = None
        self._last_failure: BaseException | None = None
        self._delay = 0.0
        self._reason = ""
        self._listings = 0

    # ----------------------------------------------------------------- public surface

    @property
    def name(self) -> str:
        """The server's name, used in error results and the supervisor's decisions."""
        return self._name

    @property
    def status(self) -> str:
        """One of the :class:`MCPStatus` strings."""
        return self._status

    @property
    def restarts(self) -> int:
        """How many times the connection was restarted."""
        return self._history.total

    @property
    def server(self) -> MCPStdio | MCPHttp:
        """How the server is reached."""
        return self._server

    def definitions(self) -> Sequence[ToolDefinition]:
        """The server's tools as last listed, with the prefix."""
        return self._definitions

    @property
    def listings(self) -> int:
        """How many times the tools were listed (1 after connecting; one more at every
        list-changed notification and every reconnection)."""
        return self._listings

    async def wait_listings(self, count: int) -> None:
        """Wait until :attr:`listings` is at least ``count`` (e.g. ``toolset.listings + 1``
        to wait for the refresh that follows a list-changed notification)."""
        if isinstance(count, bool) or not isinstance(count, int):
            raise InvalidArgumentError(f"count must be an int; got {count!r}")
        while self._listings < count:
            await self._changed.wait()

    async def wait_status(self, *statuses: str) -> str:
        """Wait until :attr:`status` is one of ``statuses`` (:class:`MCPStatus` strings);
        return it."""
        allowed = {MCPStatus.CONNECTING, MCPStatus.RUNNING, MCPStatus.RESTARTING, MCPStatus.STOPPED}
        if not statuses or not set(statuses) <= allowed:
            raise InvalidArgumentError(
                f"statuses must be one or more of {sorted(allowed)}; got {list(statuses)!r}"
            )
        while self._status not in statuses:
            await self._changed.wait()
        return self._status

    async def wait_running(self) -> None:
        """Wait until the toolset is connected (returns at once when it is).

        :raises MCPServerFailed: the toolset stopped for good.
        """
        while self._status != MCPStatus.RUNNING:
            if self._status == MCPStatus.STOPPED:
                raise MCPServerFailed(f"MCP server {self._name!r} is stopped")
            await self._changed.wait()

    def __repr__(self) -> str:
        return f"<MCPToolset {self._name!r} {self._status}, {len(self._definitions)} tools>"

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        """Call the tool on the server; every failure except cancellation becomes an error
        result (see the module's rules)."""
        remote = self._remote.get(call.name)
        if remote is None:
            names = ", ".join(d.name for d in self._definitions) or "none"
            return self._error(
                call, f"unknown tool {call.name!r} on MCP server {self._name!r}; available: {names}"
            )
        if call.raw_arguments is not None:
            return self._error(
                call,
                f"invalid JSON arguments for tool {call.name!r}; send the arguments as one "
                "JSON object",
            )
        deadline = math.inf if self._timeout is None else trio.current_time() + self._timeout
        with trio.CancelScope(deadline=deadline):
            return await self._call(call, ctx, remote)
        return self._error(
            call,
            f"tool {call.name!r} on MCP server {self._name!r} timed out after "
            f"{self._timeout:g} s (the server was told to cancel it)",
        )

    # ----------------------------------------------------------------- calls

    def _error(self, call: ToolCallBlock, text: str) -> ToolResultBlock:
        return ToolResultBlock(
            tool_call_id=call.id, content=text, is_error=True, tool_name=call.name
        )

    def _lost_result(self, call: ToolCallBlock) -> ToolResultBlock:
        return self._error(
            call,
            f"the connection to MCP server {self._name!r} was lost during the call to "
            f"{call.name!r}; the server is being restarted, retry the call",
        )

    async def _call(self, call: ToolCallBlock, ctx: ToolContext, remote: str) -> ToolResultBlock:
        while True:
            generation = self._generation
            if self._status == MCPStatus.RUNNING and generation is not None:
                break
            if self._status == MCPStatus.STOPPED:
                return self._error(
                    call, f"MCP server {self._name!r} is stopped; its tools are unavailable"
                )
            await self._changed.wait()

        async def progress(value: float, total: float | None, message: str | None) -> None:
            if self._events is not None:
                self._events(
                    ToolProgress(
                        time=trio.current_time(),
                        agent=ctx.agent,
                        call_id=call.id,
                        tool_name=call.name,
                        progress=float(value),
                        total=None if total is None else float(total),
                        message=message,
                    )
                )

        lost_scope = trio.CancelScope()
        generation.inflight.add(lost_scope)
        result: Any = None
        failure: Exception | None = None
        try:
            with lost_scope:
                try:
                    result = await generation.session.call_tool(
                        remote,
                        dict(call.arguments),
                        progress_callback=progress if self._events is not None else None,
                    )
                except Exception as exc:
                    failure = exc
        finally:
            generation.inflight.discard(lost_scope)
        if lost_scope.cancelled_caught or generation.lost:
            return self._lost_result(call)
        if failure is not None:
            if _is_transport_error(failure):
                self._signal_lost(generation)
                return self._lost_result(call)
            if isinstance(failure, MCPError):
                return self._error(
                    call,
                    f"MCP server {self._name!r} answered the call to {call.name!r} with error "
                    f"{failure.code}: {failure.message}",
                )
            return self._error(
                call,
                f"the call to {call.name!r} on MCP server {self._name!r} failed: "
                f"{type(failure).__name__}: {failure}",
            )
        self._history = self._history.record_success()
        text = _content_text(result)
        if result.is_error:
            return self._error(
                call, f"tool {call.name!r} on MCP server {self._name!r} failed: {text}"
            )
        return ToolResultBlock(tool_call_id=call.id, content=text, tool_name=call.name)

    def _signal_lost(self, generation: _Generation) -> None:
        """The connection of ``generation`` is gone: from now on calls wait for the next one."""
        if self._generation is not generation:
            return
        generation.lost = True
        self._generation = None
        self._set_status(MCPStatus.RESTARTING)
        if self._signals is not None:
            with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self._signals.send_nowait(_CLOSED)

    # ----------------------------------------------------------------- the session task

    def _set_status(self, status: str) -> None:
        self._status = status
        self._changed.set()
        self._changed = trio.Event()

    def _transport(self) -> Any:
        server = self._server
        if isinstance(server, MCPStdio):
            params = StdioServerParameters(
                command=server.command,
                args=list(server.args),
                env=dict(server.env) if server.env is not None else None,
                cwd=server.cwd,
            )
            return stdio_client(params, errlog=_errlog())
        return _http_transport(server)

    async def _list_tools(self, session: Any) -> None:
        tools: list[Any] = []
        cursor: str | None = None
        while True:
            params = None if cursor is None else mcp_types.PaginatedRequestParams(cursor=cursor)
            listed = await session.list_tools(params=params)
            tools.extend(listed.tools)
            cursor = listed.next_cursor
            if not cursor:
                break
        remote: dict[str, str] = {}
        definitions: list[ToolDefinition] = []
        for item in tools:
            exposed = self._prefix + item.name
            remote[exposed] = item.name
            definitions.append(
                ToolDefinition(
                    name=exposed,
                    description=item.description or "",
                    parameters=dict(item.input_schema),
                )
            )
        self._remote = remote
        self._definitions = tuple(definitions)
        self._listings += 1
        self._changed.set()
        self._changed = trio.Event()

    async def _session(self, task_status: trio.TaskStatus[None] | None) -> None:
        """Connect, serve until the connection is lost, then raise :class:`MCPServerLost`."""
        send, receive = trio.open_memory_channel[str](8)
        self._signals = send

        def signal(what: str) -> None:
            if what == _CLOSED and generation is not None:
                self._signal_lost(generation)
                return
            with suppress(trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                send.send_nowait(what)

        async def on_message(message: Any) -> None:
            if isinstance(message, mcp_types.ToolListChangedNotification):
                signal(_CHANGED)
            elif isinstance(message, Exception) and _is_transport_error(message):
                # Streamable HTTP reports a broken stream here, not as the end of the read
                # stream: the calls waiting on it would never get an answer.
                signal(_CLOSED)

        generation: _Generation | None = None
        try:
            async with self._transport() as (read, write):
                session = mcp.ClientSession(
                    _WatchedReadStream(read, signal), write, message_handler=on_message
                )
                async with session:
                    with trio.fail_after(self._connect_timeout):
                        await session.initialize()
                        await self._list_tools(session)
                    self._generations += 1
                    generation = _Generation(session=session, number=self._generations)
                    self._generation = generation
                    self._set_status(MCPStatus.RUNNING)
                    if task_status is not None:
                        task_status.started()
                    async for what in receive:
                        if what == _CLOSED:
                            break
                        await self._list_tools(session)
                    raise MCPServerLost(f"the connection to MCP server {self._name!r} was lost")
        except trio.TooSlowError:
            raise MCPServerLost(
                f"MCP server {self._name!r} did not answer initialize and tools/list within "
                f"{self._connect_timeout:g} s"
            ) from None
        finally:
            self._signals = None
            send.close()
            if generation is not None:
                generation.lost = True
                if self._generation is generation:
                    self._generation = None
                for scope in list(generation.inflight):
                    scope.cancel(reason=f"connection to MCP server {self._name!r} lost")

    def _decide(self, error: BaseException) -> SupervisorAction:
        try:
            action: object = self._policy.on_agent_error(self._name, error)
        except Exception as exc:
            self._reason = f"the supervisor policy raised {type(exc).__name__}: {exc}"
            return SupervisorAction.ESCALATE
        if not isinstance(action, SupervisorAction):
            self._reason = f"the supervisor policy returned {action!r}, not a SupervisorAction"
            return SupervisorAction.ESCALATE
        decision = decide(
            failed=self._name,
            requested=action,
            history=self._history,
            limit=self._restart_limit,
            backoff=self._backoff,
            strategy=RestartStrategy.ONE_FOR_ONE,
            siblings=(self._name,),
            now=trio.current_time(),
            rng=self._rng,
        )
        self._history = decision.history
        self._delay = decision.delay
        self._reason = decision.reason
        return decision.action

    async def _supervise(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            while True:
                try:
                    await self._session(task_status if self._generations == 0 else None)
                except Exception as exc:
                    if self._generations == 0:
                        # Never connected: the ``async with`` fails at once, it does not retry.
                        raise _connect_failure(self._name, exc) from exc
                    # The SDK's task groups wrap the failure; the policy sees the error itself,
                    # and a failed reconnection is a lost connection too.
                    leaf = _leaf(exc)
                    if isinstance(leaf, MCPServerLost):
                        failure: Exception = leaf
                    else:
                        failure = MCPServerLost(
                            f"could not reconnect to MCP server {self._name!r}: "
                            f"{type(leaf).__name__}: {leaf}"
                        )
                        failure.__cause__ = leaf
                self._last_failure = failure
                action = self._decide(failure)
                if action is SupervisorAction.STOP:
                    self._set_status(MCPStatus.STOPPED)
                    await trio.sleep_forever()
                if action is SupervisorAction.ESCALATE:
                    raise MCPServerFailed(
                        f"MCP server {self._name!r} failed and its supervisor gave up "
                        f"({self._reason}): {_leaf(failure)}"
                    ) from failure
                self._set_status(MCPStatus.RESTARTING)
                await trio.sleep(self._delay)
        finally:
            if self._status != MCPStatus.STOPPED:
                self._set_status(MCPStatus.STOPPED)


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _connect_failure(name: str, exc: BaseException) -> MCPServerFailed:
    leaf = _leaf(exc)
    return MCPServerFailed(
        f"could not connect to MCP server {name!r}: {type(leaf).__name__}: {leaf}"
    )


@asynccontextmanager
async def _http_transport(server: MCPHttp) -> AsyncIterator[Any]:
    import httpx2

    async with (
        httpx2.AsyncClient(headers=dict(server.headers or {}), timeout=30.0) as client,
        streamable_http_client(server.url, http_client=client) as streams,
    ):
        yield streams


def _check_positive(value: Any, argument: str, *, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value <= 0
    ):
        extra = " or None" if allow_none else ""
        raise InvalidArgumentError(
            f"{argument} must be a positive number of seconds{extra}; got {value!r}"
        )
    return float(value)


def _collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves = list(group.exceptions)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if not real:
        return leaves[0]
    if len(real) == 1:
        return _leaf(real[0])
    return group


@asynccontextmanager
async def open_mcp_toolset(
    server: MCPStdio | MCPHttp,
    *,
    name: str | None = None,
    prefix: str = "",
    call_timeout: float | None = 60.0,
    connect_timeout: float = 30.0,
    events: EventSink | None = None,
    policy: SupervisorPolicy | None = None,
    restart_limit: RestartLimit | None = None,
    backoff: Backoff | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[MCPToolset]:
    """Connect to an MCP server and yield its tools as a supervised :class:`MCPToolset`.

    Returns once the server answered ``initialize`` and ``tools/list``. Leaving the block
    closes the session and, for :class:`MCPStdio`, ends the process.

    :param server: :class:`MCPStdio` or :class:`MCPHttp`.
    :param name: the server's name in error results and decisions; defaults to the command
        or the URL.
    :param prefix: put before every tool name (e.g. ``"files_"``) to avoid clashes.
    :param call_timeout: seconds (trio's clock) a call may take, ``None`` for no limit; a call
        that takes longer is cancelled on the server and gets an error result.
    :param connect_timeout: seconds allowed for each connection's ``initialize`` and
        ``tools/list``.
    :param events: receives a :class:`~trio_agents.ToolProgress` for each progress
        notification.
    :param policy: decides about a lost connection; default
        :class:`~trio_agents.DefaultSupervisor` (restart, since :class:`MCPServerLost` is
        retryable).
    :param restart_limit: default ``RestartLimit()`` (3 consecutive restarts; a successful
        call resets the count).
    :param backoff: delay between restarts; default ``Backoff()``.
    :param rng: source of the backoff jitter.
    :raises MCPServerFailed: the first connection failed, or later the supervisor gave up.
    :raises InvalidArgumentError: a bad argument (the message names it).
    """
    if not isinstance(server, MCPStdio | MCPHttp):
        raise InvalidArgumentError(
            f"server must be MCPStdio(command=...) or MCPHttp(url); got {type(server).__name__}"
        )
    if name is None:
        name = os.path.basename(server.command) if isinstance(server, MCPStdio) else server.url
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"name must be a non-empty str or None; got {name!r}")
    if not isinstance(prefix, str):
        raise InvalidArgumentError(f"prefix must be a str; got {prefix!r}")
    checked_timeout = _check_positive(call_timeout, "call_timeout", allow_none=True)
    checked_connect = _check_positive(connect_timeout, "connect_timeout", allow_none=False)
    assert checked_connect is not None
    if events is not None and not callable(events):
        raise InvalidArgumentError(f"events must be an EventSink (a callable); got {events!r}")
    if policy is None:
        policy = DefaultSupervisor()
    elif not isinstance(policy, SupervisorPolicy):
        raise InvalidArgumentError(
            f"policy must be a SupervisorPolicy (on_agent_error(name, error)); got {policy!r}"
        )
    if restart_limit is not None and not isinstance(restart_limit, RestartLimit):
        raise InvalidArgumentError(f"restart_limit must be a RestartLimit; got {restart_limit!r}")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise InvalidArgumentError(f"backoff must be a Backoff; got {backoff!r}")
    toolset = MCPToolset(
        server,
        name=name,
        prefix=prefix,
        timeout=checked_timeout,
        connect_timeout=checked_connect,
        events=events,
        policy=policy,
        restart_limit=restart_limit or RestartLimit(),
        backoff=backoff or Backoff(),
        rng=rng or random.Random(),
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(_run_supervisor, toolset)
            try:
                yield toolset
            finally:
                nursery.cancel_scope.cancel(reason=f"MCP toolset {name!r} closed")
    except BaseExceptionGroup as group:
        collapsed = _collapse(group)
        if collapsed is group:
            raise
        raise collapsed from collapsed.__cause__


async def _run_supervisor(
    toolset: MCPToolset, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    await toolset._supervise(task_status=task_status)


# --------------------------------------------------------------------------- serving


def mcp_server(
    target: Delegator | Callable[[], Agent],
    *,
    runner: AgentRunner | None = None,
    name: str = "trio_agents",
    tool_name: str = "run",
    description: str = "Run a trio_agents system on a task and return its answer.",
) -> Any:
    """An MCP server (the SDK's ``MCPServer``) with one tool, ``tool_name(task: str) -> str``.

    ``target`` is an agent factory (a callable returning a new :class:`~trio_agents.Agent`,
    called once per tool call, so calls never share history) whose answer is
    :attr:`AgentResult.final_text <trio_agents.AgentResult.final_text>`, or a
    :class:`~trio_agents.Delegator` run with ``runner``, whose answer is
    :attr:`DelegatorResult.final_answer <trio_agents.DelegatorResult.final_answer>`.

    A failed run becomes an ``isError`` result whose text names the error; a call the client
    cancels (``notifications/cancelled``) cancels the run. Serve it with
    :func:`serve_mcp_stdio` or :func:`serve_mcp_http`.

    :raises InvalidArgumentError: ``target`` is neither, a Delegator comes without
        ``runner``, or a name is empty.
    """
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError as SDKToolError

    for argument, value in (("name", name), ("tool_name", tool_name)):
        if not isinstance(value, str) or not value:
            raise InvalidArgumentError(f"{argument} must be a non-empty str; got {value!r}")
    given: object = target
    if isinstance(given, Delegator):
        if not isinstance(runner, AgentRunner):
            raise InvalidArgumentError(
                "a Delegator needs runner=, an AgentRunner (e.g. ModelRunner) that builds and "
                f"runs its agents; got {runner!r}"
            )
        delegator, agent_runner = given, runner

        async def run(task: str) -> str:
            return (await delegator.run(task, runner=agent_runner)).final_answer

    elif callable(given) and not isinstance(given, Agent):
        factory = given

        async def run(task: str) -> str:
            agent = factory()
            if not isinstance(agent, Agent):
                raise InvalidArgumentError(
                    f"the agent factory returned {type(agent).__name__}, not an Agent"
                )
            return (await agent.run(task)).final_text

    else:
        hint = " (pass a factory, e.g. lambda: Agent(...))" if isinstance(given, Agent) else ""
        raise InvalidArgumentError(
            "target must be an agent factory (a callable returning an Agent) or a Delegator; "
            f"got {type(given).__name__}{hint}"
        )
    server: Any = MCPServer(name)

    async def tool(task: str) -> str:
        try:
            return await run(task)
        except Exception as exc:
            leaf = _leaf(exc)
            # The SDK hides other exceptions' text from the client; its ToolError passes it on.
            raise SDKToolError(f"{type(leaf).__name__}: {leaf}") from exc

    server.add_tool(tool, name=tool_name, description=description)
    return server


async def serve_mcp_stdio(server: Any) -> None:
    """Serve ``server`` (from :func:`mcp_server`) on this process's stdin and stdout until the
    client disconnects or the calling scope is cancelled.

    Deviation: the SDK reads stdin in a worker thread, which cannot be interrupted, so an
    outside cancellation completes (as a bare ``trio.Cancelled``) when that read returns: at
    the client's next message or the end of input.
    """
    await server.run_stdio_async()


async def serve_mcp_http(
    server: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    path: str = "/mcp",
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``server`` (from :func:`mcp_server`) over streamable HTTP until cancelled.

    Uses Hypercorn's trio worker. Start it with ``url = await nursery.start(serve_mcp_http,
    server)``: the URL of the MCP endpoint (with the port chosen when ``port=0``).
    """
    try:
        from hypercorn.config import Config
        from hypercorn.trio import serve
    except ImportError as exc:  # pragma: no cover - exercised without the extra
        raise ImportError("serve_mcp_http needs Hypercorn: pip install 'trio-agents[mcp]'") from exc
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgumentError(f"port must be an int from 0 to 65535; got {port!r}")
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    app = server.streamable_http_app(streamable_http_path=path, host=host)

    class _Status:
        def started(self, binds: list[str] | None = None) -> None:
            bind = (binds or [f"http://{host}:{port}"])[0]
            task_status.started(bind.rstrip("/") + path)

    await serve(app, config, task_status=_Status())
