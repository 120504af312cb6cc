"""The registry of agents and the trio shell that supervises them.

:class:`AgentOrchestrator` is the registry: names, parents, factories and supervision
settings. ``async with orchestrator.open() as system:`` opens the root supervisor nursery;
:meth:`AgentSystem.spawn` starts an agent inside its parent's supervisor nursery and returns an
:class:`AgentHandle`. The decisions (restart, stop, escalate; which siblings; how long to
wait) come from the pure :func:`~trio_agents.decide`; this module only carries them out.

The rules are on the docs page "Supervision"; in short:

* Each running agent is one task that serves its bounded request channel and owns a nursery
  for its children. The channel belongs to the *name*: a restarted agent serves the same queue.
* Every request gets exactly one reply: the result, the agent's error, ``AgentStopped``,
  ``AgentEscalated`` or ``AgentCancelled``. A request whose run is cut short by the tree is
  answered at once (``AgentCancelled``, with the reason), before anyone decides what happens
  next; the requests still queued wait for that decision.
* A failure (an exception from :meth:`Agent.run`, the factory, or an escalated child) is shown
  to the supervisor policy of the agent's parent. RESTART rebuilds the agent from its factory
  after the backoff; STOP ends it and its subtree with status failed; ESCALATE raises
  :class:`ChildFailed` into the parent's nursery, which fails the parent in turn.
* Cancellation from outside (the enclosing scope, :meth:`AgentHandle.cancel`, leaving the
  ``async with``) is never a failure.
"""

from __future__ import annotations

import enum
import random
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, NoReturn

import attrs
import trio

from ._agent import Agent, Watchdog, _check_decisions
from ._errors import (
    AgentCancelled,
    AgentError,
    AgentEscalated,
    AgentStopped,
    ApprovalPending,
    ChildFailed,
    InvalidArgumentError,
    NoMessagesError,
    UsageError,
)
from ._events import Event, EventSink
from ._journal import RunJournal, _conversation
from ._limits import Budget
from ._mailbox import Mailbox
from ._messages import (
    AgentResult,
    ApprovalDecision,
    AssistantMessage,
    ErrorInfo,
    Message,
    StopReason,
    SystemMessage,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from ._supervision import (
    Backoff,
    Decision,
    RestartHistory,
    RestartLimit,
    RestartStrategy,
    RestartType,
    SupervisorAction,
    SupervisorPolicy,
    decide,
)

# Mutation testing (``nox -s mutate``) mutates only the code that carries supervision
# decisions out (_stop_children, _supervise, _start_all); the rest is marked no mutate.
# pragma: no mutate start
AgentFactory = Callable[[], Agent]

_CONVERSATION = "conversation:"  # + the agent's path: the run id of its conversation journal
"""A zero-argument callable that builds a fresh :class:`Agent`."""


class AgentStatus(enum.Enum):
    """Where an orchestrated agent is in its life."""

    RUNNING = "running"
    """Serving requests."""
    RESTARTING = "restarting"
    """Between incarnations: waiting for its backoff, or for an ancestor's restart."""
    COMPLETED = "completed"
    """Ended normally (closed with :meth:`AgentHandle.aclose`)."""
    FAILED = "failed"
    """Stopped by its supervisor, or its failure escalated."""
    CANCELLED = "cancelled"
    """Cancelled from outside (its handle, the enclosing scope, the end of the system)."""


_DONE = frozenset({AgentStatus.COMPLETED, AgentStatus.FAILED, AgentStatus.CANCELLED})


# --------------------------------------------------------------------------- events


def _error_info(error: BaseException) -> ErrorInfo:
    if isinstance(error, AgentError):
        return error.info()
    return ErrorInfo(type=type(error).__name__, message=str(error))


@attrs.frozen(kw_only=True)
class AgentSpawned(Event):
    """An incarnation of an agent started serving."""

    kind: ClassVar[str] = "agent_spawned"
    incarnation: int
    """1 for the first start, 2 after the first restart, …"""


@attrs.frozen(kw_only=True)
class RequestReceived(Event):
    """An agent took a request from its queue."""

    kind: ClassVar[str] = "request_received"
    request: int
    """The request's number (per agent name, from 1)."""


@attrs.frozen(kw_only=True)
class RequestReplied(Event):
    """A request got its one reply."""

    kind: ClassVar[str] = "request_replied"
    request: int
    """The request's number."""
    error: ErrorInfo | None = None
    """The error replied, or ``None`` for a result."""


@attrs.frozen(kw_only=True)
class AgentFailed(Event):
    """An agent failed (before its supervisor decides)."""

    kind: ClassVar[str] = "agent_failed"
    error: ErrorInfo
    """What failed."""


@attrs.frozen(kw_only=True)
class SupervisorDecided(Event):
    """The supervisor decided what to do about a failure."""

    kind: ClassVar[str] = "supervisor_decided"
    action: str
    """``"restart"``, ``"stop"`` or ``"escalate"`` (after the restart limit)."""
    requested: str
    """What the policy asked for."""
    reason: str
    """Why, in one sentence."""
    delay: float
    """Backoff before the restart."""
    affected: tuple[str, ...]
    """Siblings restarted with it."""
    limit_exceeded: bool
    """Whether the restart limit turned a restart into an escalation."""
    restart_type: str = "transient"
    """The failed agent's :class:`RestartType` value (``"permanent"``, ``"transient"`` or
    ``"temporary"``): with :attr:`requested` it says whether the restart limit was consulted
    (a permanent agent's STOP is a restart attempt; a temporary agent's never is)."""


@attrs.frozen(kw_only=True)
class AgentRestarted(Event):
    """A new incarnation replaced a failed (or stopped-with-a-sibling) one."""

    kind: ClassVar[str] = "agent_restarted"
    incarnation: int
    """The new incarnation's number."""
    restarts: int
    """Restarts of this agent so far."""


@attrs.frozen(kw_only=True)
class FailureEscalated(Event):
    """A failure was raised into the parent's supervisor nursery."""

    kind: ClassVar[str] = "failure_escalated"
    error: ErrorInfo
    """The failure."""


@attrs.frozen(kw_only=True)
class AgentSuspended(Event):
    """An agent was stopped by its supervisor tree and waits to come back (or to be ended).

    Happens to the siblings restarted with a failed agent, to the children of an agent that
    failed or is restarting, and to the members of a subtree whose failure escalates.
    """

    kind: ClassVar[str] = "agent_suspended"
    reason: str
    """Why it was stopped; agents named in it are named by path (``"parent 'lead' failed"``)."""


@attrs.frozen(kw_only=True)
class AgentEnded(Event):
    """An agent ended for good: completed, failed (stopped) or cancelled."""

    kind: ClassVar[str] = "agent_ended"
    status: str
    """``"completed"``, ``"failed"`` or ``"cancelled"``."""
    error: ErrorInfo | None = None
    """Why it failed or was cancelled."""


# --------------------------------------------------------------------------- registry


@attrs.frozen(kw_only=True)
class _Entry:
    name: str
    parent: str | None
    factory: AgentFactory
    limit: RestartLimit
    backoff: Backoff
    strategy: RestartStrategy
    restart: RestartType = RestartType.TRANSIENT
    conversation: RunJournal | None = None


class AgentOrchestrator:
    """The registry of agents: who exists, who supervises whom, and how.

    :param supervisor: the policy shown every failure; ``None`` escalates every failure.
    :param channel_buffer: requests an agent's queue holds before senders block.
    :param max_restarts: default restart limit captured by each entry at registration
        (default: the supervisor's ``max_restarts`` when it has one, else 3).
    :param restart_window: default sliding window in seconds; ``None`` counts consecutive
        failures (a success resets the count).
    :param backoff: default backoff between a failure and the restart.
    :param strategy: restart strategy for the top-level agents.
    :param event_sink: receives every lifecycle event (and agents' events when their own
        ``event_sink`` is unset).
    :param rng: source of backoff jitter (seed it for reproducible runs).
    :param budget: a budget shared by the whole tree: every incarnation (spawn and restart)
        is checked against and charged to its ``agents`` limit, and agents built without a
        budget of their own get it for their model calls.
    :param mailbox: a :class:`~trio_agents.Mailbox` in which every registered agent gets a
        mailbox under its name (kept across restarts); leaving :meth:`open` closes it.
    """

    def __init__(
        self,
        *,
        supervisor: SupervisorPolicy | None = None,
        channel_buffer: int = 32,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        backoff: Backoff | None = None,
        strategy: RestartStrategy = RestartStrategy.ONE_FOR_ONE,
        event_sink: EventSink | None = None,
        rng: random.Random | None = None,
        budget: Budget | None = None,
        mailbox: Mailbox | None = None,
    ) -> None:
        if mailbox is not None and not isinstance(mailbox, Mailbox):
            raise InvalidArgumentError(
                f"mailbox must be a Mailbox or None, got {type(mailbox).__name__}"
            )
        if supervisor is not None and not isinstance(supervisor, SupervisorPolicy):
            raise InvalidArgumentError(
                "supervisor must have an on_agent_error(name, error) method returning a "
                f"SupervisorAction; got {type(supervisor).__name__}"
            )
        if not isinstance(channel_buffer, int) or channel_buffer < 0:
            raise InvalidArgumentError(
                f"channel_buffer must be an int >= 0, got {channel_buffer!r}"
            )
        if max_restarts is None:
            max_restarts = getattr(supervisor, "max_restarts", 3)
        self.supervisor = supervisor
        self.channel_buffer = channel_buffer
        self.default_limit = RestartLimit(max_restarts=max_restarts, window=restart_window)
        self.default_backoff = backoff if backoff is not None else Backoff()
        self.strategy = _check_strategy(strategy)
        self.event_sink = event_sink
        self.rng = rng if rng is not None else random.Random()
        self.budget = budget
        self.mailbox = mailbox
        self._entries: dict[str, _Entry] = {}
        self._children: dict[str | None, list[str]] = {None: []}

    # ------------------------------------------------------------------ registration

    def add_agent(
        self,
        name: str,
        factory: AgentFactory,
        *,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        backoff: Backoff | None = None,
        strategy: RestartStrategy | None = None,
        restart: RestartType = RestartType.TRANSIENT,
        conversation: RunJournal | None = None,
    ) -> None:
        """Register a top-level agent (supervised by the root).

        ``factory`` is called at every spawn and every restart, never here. The keyword
        arguments override the orchestrator's defaults for this entry; ``strategy`` is the
        restart strategy for *this agent's children*; ``restart`` is this agent's
        :class:`RestartType` (``TRANSIENT``: the policy decides; ``PERMANENT``: restarted
        after every failure its policy does not escalate; ``TEMPORARY``: never restarted).

        ``conversation``: a :class:`~trio_agents.RunJournal` that keeps this agent's
        conversation across restarts (and across processes, with a durable backend). After
        every request it answers, and before the reply is sent, the messages the request
        added are appended to the journal under ``"conversation:<agent path>"``; every new
        incarnation starts from the journaled conversation (:meth:`Agent.load_history
        <trio_agents.Agent.load_history>`), so a restarted agent remembers what it had
        answered. A failed request's partial turn is not kept; a run waiting for approval is
        journaled once it is resumed and answered. ``None`` (the default): every incarnation
        starts with the conversation its factory gives it.
        """
        self._register(
            name,
            None,
            factory,
            max_restarts,
            restart_window,
            backoff,
            strategy,
            restart,
            conversation,
        )

    def add_child(
        self,
        name: str,
        parent: str,
        factory: AgentFactory,
        *,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        backoff: Backoff | None = None,
        strategy: RestartStrategy | None = None,
        restart: RestartType = RestartType.TRANSIENT,
        conversation: RunJournal | None = None,
    ) -> None:
        """Register an agent supervised by ``parent`` (which must be registered); the keyword
        arguments are those of :meth:`add_agent`."""
        if parent not in self._entries:
            raise InvalidArgumentError(
                f"cannot add child {name!r}: parent {parent!r} is not registered "
                f"(registered: {sorted(self._entries) or 'none'})"
            )
        self._register(
            name,
            parent,
            factory,
            max_restarts,
            restart_window,
            backoff,
            strategy,
            restart,
            conversation,
        )

    def _register(
        self,
        name: str,
        parent: str | None,
        factory: AgentFactory,
        max_restarts: int | None,
        restart_window: float | None,
        backoff: Backoff | None,
        strategy: RestartStrategy | None,
        restart: RestartType,
        conversation: RunJournal | None,
    ) -> None:
        # Validate everything first, so that a bad call leaves the registry as it was.
        if conversation is not None and not isinstance(conversation, RunJournal):
            raise InvalidArgumentError(
                f"conversation for {name!r} must be a RunJournal or None, "
                f"got {type(conversation).__name__}"
            )
        if not isinstance(restart, RestartType):
            raise InvalidArgumentError(
                f"restart for {name!r} must be a RestartType (PERMANENT, TRANSIENT or "
                f"TEMPORARY); got {restart!r}"
            )
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgumentError(
                f"agent name must be a non-empty str without '/', got {name!r}"
            )
        if name in self._entries:
            raise InvalidArgumentError(f"agent {name!r} is already registered")
        if not callable(factory):
            raise InvalidArgumentError(
                f"factory for {name!r} must be a zero-argument callable returning an Agent, "
                f"got {factory!r}"
            )
        limit = (
            self.default_limit  # frozen: shared by the entries that do not override it
            if max_restarts is None and restart_window is None
            else RestartLimit(
                max_restarts=self.default_limit.max_restarts
                if max_restarts is None
                else max_restarts,
                window=self.default_limit.window if restart_window is None else restart_window,
            )
        )
        entry = _Entry(
            name=name,
            parent=parent,
            factory=factory,
            limit=limit,
            backoff=backoff if backoff is not None else self.default_backoff,
            strategy=_check_strategy(strategy)
            if strategy is not None
            else RestartStrategy.ONE_FOR_ONE,
            restart=restart,
            conversation=conversation,
        )
        if self.mailbox is not None:
            self.mailbox.open(name)
        self._entries[name] = entry
        self._children[parent].append(name)
        self._children[name] = []

    # ------------------------------------------------------------------ queries

    def parent_of(self, name: str) -> str | None:
        """The parent's name; ``None`` for a top-level or unknown agent."""
        entry = self._entries.get(name)
        return entry.parent if entry is not None else None

    def children_of(self, name: str) -> list[str] | None:
        """The children's names in registration order; ``None`` for an unknown name."""
        if name not in self._entries:
            return None
        return list(self._children[name])

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        return list(self._entries)

    def contains(self, name: str) -> bool:
        """Whether ``name`` is registered (also ``name in orchestrator``)."""
        return name in self._entries

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def path_of(self, name: str) -> str:
        """The agent's path from the top, e.g. ``"lead/researcher/worker"``."""
        parts = [self._require(name).name]
        parent = self._entries[name].parent
        while parent is not None:
            parts.append(parent)
            parent = self._entries[parent].parent
        return "/".join(reversed(parts))

    def _require(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise InvalidArgumentError(
                f"agent {name!r} is not registered (registered: {sorted(self._entries) or 'none'})"
            ) from None

    # ------------------------------------------------------------------ runtime

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AgentSystem]:
        """Open the root supervisor nursery: ``async with orchestrator.open() as system:``.

        Leaving the block cancels every agent still running (their waiting requests get
        :class:`AgentCancelled`). A failure escalated to the root leaves the block as one
        :class:`ChildFailed` naming the agent's path, with the original error chained.
        """
        system = AgentSystem(self)
        try:
            async with trio.open_nursery() as nursery:
                system._root.nursery = nursery
                try:
                    yield system
                except BaseException:
                    raise
                else:
                    if not system._closing:
                        system._cancel_reason = "agent system closed"
                finally:
                    system._closing = True
                    nursery.cancel_scope.cancel(reason=system._cancel_reason)
        except BaseExceptionGroup as group:
            system._finalize_all()
            _raise_flat(group)
        finally:
            system._finalize_all()
            if self.mailbox is not None:
                self.mailbox.close()

    def __repr__(self) -> str:
        return (
            f"<AgentOrchestrator agents={self.names()} channel_buffer={self.channel_buffer} "
            f"supervisor={type(self.supervisor).__name__ if self.supervisor else None}>"
        )


def _check_strategy(strategy: object) -> RestartStrategy:
    if not isinstance(strategy, RestartStrategy):
        allowed = ", ".join(s.name for s in RestartStrategy)
        raise InvalidArgumentError(
            f"strategy must be a RestartStrategy ({allowed}), got {strategy!r}"
        )
    return strategy


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
        else:
            out.append(exc)
    return out


def _flatten(group: BaseExceptionGroup[Any]) -> BaseException:
    """One error from a supervisor nursery's group: the first non-Cancelled leaf."""
    leaves = _leaves(group)
    real = [e for e in leaves if not isinstance(e, trio.Cancelled)]
    if not real:
        return leaves[0]
    first = real[0]
    for other in real[1:]:
        first.add_note(f"also failed at the same time: {type(other).__name__}: {other}")
    return first


def _raise_flat(group: BaseExceptionGroup[Any]) -> NoReturn:
    error = _flatten(group)
    raise error from error.__cause__


# --------------------------------------------------------------------------- runtime state


class _Request:
    __slots__ = ("decisions", "error", "event", "messages", "number", "replied", "result")

    def __init__(self, messages: Sequence[Message]) -> None:
        self.messages = messages
        # Set for a handle's resume(): the decisions for the calls the agent waits on.
        self.decisions: tuple[ApprovalDecision, ...] | None = None
        self.event = trio.Event()
        self.replied = False
        self.result: AgentResult | None = None
        self.error: BaseException | None = None
        self.number = 0

    def reply(self, result: AgentResult | None, error: BaseException | None) -> bool:
        """Set the one reply; later replies are ignored (returns whether this one counted)."""
        if self.replied:
            return False
        self.replied = True
        self.result = result
        self.error = error
        self.event.set()
        return True

    async def wait(self) -> AgentResult:
        await self.event.wait()
        error = self.error
        if error is not None:
            try:
                raise error
            finally:
                # The traceback holds this frame: without these references no cycle keeps
                # the failed agent's frames alive until a full garbage collection (the
                # idiom of outcome's Error.unwrap). Callers' frames do the same.
                del error, self
        assert self.result is not None
        return self.result


class _Command(enum.Enum):
    SUSPEND = "suspend"  # stopped by its supervisor, will come back (sibling or parent restart)
    STOP = "stop"  # stopped by its supervisor for good (an ancestor's STOP)
    CANCEL = "cancel"  # cancelled by its owner (handle.cancel)


# Shared frozen zero values, so that every cell (and every spawn) does not build its own.
_NO_RESTARTS = RestartHistory()
_NO_USAGE = Usage()


class _Cell:
    """Runtime state of one registered name inside one :class:`AgentSystem`."""

    __slots__ = (
        "agent",
        "command",
        "command_reason",
        "conversation_records",
        "conversation_saved",
        "current",
        "done",
        "end_error",
        "entry",
        "escalation",
        "exited",
        "failure",
        "final_result",
        "history",
        "idle_scope",
        "incarnation",
        "name",
        "nursery",
        "parent",
        "path",
        "received",
        "recv",
        "restart_after",
        "restart_siblings",
        "restarts",
        "scope",
        "send",
        "served",
        "started_children",
        "status",
        "usage",
        "wanted",
        "watch_failure",
    )

    def __init__(self, entry: _Entry, path: str, parent: _Cell | None) -> None:
        self.entry = entry
        self.name = entry.name
        self.path = path
        self.parent = parent
        self.send: trio.MemorySendChannel[_Request] | None = None
        self.recv: trio.MemoryReceiveChannel[_Request] | None = None
        self.status: AgentStatus | None = None  # None: never spawned
        self.wanted = False  # should be running (comes back with its parent)
        self.started_children: list[_Cell] = []  # in start order
        self.scope: trio.CancelScope | None = None
        self.nursery: trio.Nursery | None = None
        self.command: _Command | None = None
        self.command_reason = ""
        self.exited = trio.Event()  # the current task has ended
        self.done = trio.Event()  # finalized
        self.history = _NO_RESTARTS
        self.incarnation = 0
        self.restarts = 0
        self.served = 0
        self.received = 0
        self.agent: Agent | None = None
        self.usage = _NO_USAGE
        self.failure: BaseException | None = None  # set when its failure escalated
        self.end_error: BaseException | None = None
        self.final_result: AgentResult | None = None
        self.current: _Request | None = None
        # Set when a child's failure escalates into this agent's nursery (the reason its
        # other children and its own run are torn down), until its next incarnation.
        self.escalation: str | None = None
        # These two are replaced, never changed in place: empty, they are the shared ``()``
        # rather than two lists per cell and a new one per incarnation.
        self.restart_after: Sequence[_Cell] = ()  # younger siblings to start once this serves
        # Siblings stopped to restart with this agent, while it waits out its backoff.
        self.restart_siblings: Sequence[_Cell] = ()
        # For an agent with a watchdog (Agent.watchdog): the scope of its idle wait for a
        # request, and the failure its watchdog reported, which ends the incarnation.
        self.idle_scope: trio.CancelScope | None = None
        self.watch_failure: Exception | None = None
        # For an agent with a conversation journal: its records so far, and how many of the
        # current agent's messages they hold.
        self.conversation_records = 0
        self.conversation_saved = 0

    @property
    def running(self) -> bool:
        return self.status is AgentStatus.RUNNING


class _Root(_Cell):
    def __init__(self, strategy: RestartStrategy) -> None:
        entry = _Entry(
            name="",
            parent=None,
            factory=lambda: None,  # type: ignore[arg-type,return-value]
            limit=RestartLimit(),
            backoff=Backoff.none(),
            strategy=strategy,
        )
        super().__init__(entry, "", None)
        self.status = AgentStatus.RUNNING


@attrs.frozen(kw_only=True)
class AgentStatistics:
    """A snapshot of one orchestrated agent (see :meth:`AgentHandle.statistics`)."""

    name: str
    """The agent's name."""
    path: str
    """The agent's path in the tree."""
    status: AgentStatus
    """Its status."""
    queue_length: int
    """Requests waiting in its queue."""
    requests_received: int
    """Requests it has taken from its queue."""
    requests_served: int
    """Requests it answered with a result."""
    restarts: int
    """Times it was rebuilt from its factory."""
    incarnation: int
    """The current incarnation's number (1 for the first)."""
    usage: Usage
    """Usage of every request it served."""


_MESSAGE_TYPES = (SystemMessage, UserMessage, AssistantMessage, ToolResultMessage)


def _check_messages(messages: object) -> Sequence[Message]:
    """The caller's mistakes are the caller's errors, not the agent's failures."""
    if isinstance(messages, str) or not isinstance(messages, Sequence):
        raise InvalidArgumentError(
            "messages must be a sequence of messages (send_message(text) sends a text); "
            f"got {type(messages).__name__}"
        )
    if not messages:
        raise NoMessagesError("messages must hold at least one message; got an empty sequence")
    for index, message in enumerate(messages):
        if not isinstance(message, _MESSAGE_TYPES):
            raise InvalidArgumentError(
                f"messages[{index}] must be a message (SystemMessage, UserMessage, "
                f"AssistantMessage, ToolResultMessage); got {type(message).__name__}"
            )
    return messages  # each item checked above


class PendingReply:
    """A request sent with a ``*_nowait`` method; ``await pending.wait()`` for its reply."""

    __slots__ = ("_request",)

    def __init__(self, request: _Request) -> None:
        self._request = request

    @property
    def done(self) -> bool:
        """Whether the reply has arrived."""
        return self._request.replied

    async def wait(self) -> AgentResult:
        """Wait for the reply: the result, or the agent's error raised."""
        try:
            return await self._request.wait()
        finally:
            del self  # no reference cycle through the error's traceback (see _Request.wait)


class AgentHandle:
    """How to reach a spawned agent (see :meth:`AgentSystem.spawn`, :meth:`AgentSystem.handle`)."""

    __slots__ = ("_cell", "_system")

    def __init__(self, system: AgentSystem, cell: _Cell) -> None:
        self._system = system
        self._cell = cell

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._cell.name

    @property
    def path(self) -> str:
        """The agent's path in the tree, e.g. ``"lead/researcher"``."""
        return self._cell.path

    @property
    def status(self) -> AgentStatus:
        """The agent's status now.

        The request an agent was serving when it failed is answered before its supervisor
        decides, so right after that error is raised to the caller this may still say
        :attr:`~AgentStatus.RUNNING`; the decision follows as soon as the agent's task runs.
        """
        status = self._cell.status
        assert status is not None
        return status

    @property
    def is_done(self) -> bool:
        """Whether the agent has ended for good (completed, failed or cancelled)."""
        return self._cell.done.is_set()

    def statistics(self) -> AgentStatistics:
        """A snapshot of the agent's queue and counters."""
        cell = self._cell
        queue = cell.recv.statistics().current_buffer_used if cell.recv is not None else 0
        return AgentStatistics(
            name=cell.name,
            path=cell.path,
            status=self.status,
            queue_length=queue,
            requests_received=cell.received,
            requests_served=cell.served,
            restarts=cell.restarts,
            incarnation=cell.incarnation,
            usage=cell.usage,
        )

    @property
    def agent(self) -> Agent | None:
        """The current incarnation's :class:`Agent` (``None`` between incarnations)."""
        return self._cell.agent

    async def send_message(self, text: str) -> AgentResult:
        """Send a user message and wait for the reply (the agent's error is raised).

        Cancelling the caller ends its wait, not the request: once queued, the request is run
        and answered by the agent as usual (the answer goes nowhere); :meth:`cancel` stops the
        agent itself.

        The lifecycle errors it may raise — :class:`AgentCancelled`, :class:`AgentStopped`,
        :class:`AgentEscalated` — are described on the docs page "Supervision".
        """
        # Built here, so there is nothing for _check_messages to check.
        return await self._send((UserMessage.text(text),))

    async def send_messages(self, messages: Sequence[Message]) -> AgentResult:
        """Send messages and wait for the reply; a full queue blocks (backpressure)."""
        return await self._send(_check_messages(messages))

    async def resume(self, decisions: Iterable[ApprovalDecision]) -> AgentResult:
        """Answer the tool calls the agent waits on (its reply to an earlier request stopped
        with :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED`) and wait for the reply: the
        result of the resumed run, as :meth:`Agent.resume <trio_agents.Agent.resume>` gives.

        It is queued like any request. While the agent waits, every other request is
        answered with :class:`ApprovalPending` at once (the agent goes on serving); a
        restart drops what waited, with the agent's history, and a later ``resume`` gets
        :class:`InvalidArgumentError`.

        :raises InvalidArgumentError: the agent does not wait for approval, or the decisions
            do not answer each pending call exactly once; nothing is queued.
        """
        chosen = tuple(decisions)
        self._system._approval_refusal(self._cell, self._cell.agent, chosen, raise_it=True)
        return await self._send((), chosen)

    async def _send(
        self, messages: Sequence[Message], decisions: tuple[ApprovalDecision, ...] | None = None
    ) -> AgentResult:
        request = _Request(messages)
        request.decisions = decisions
        send = self._cell.send
        assert send is not None
        # One scheduler step per request, not two: trio's ``send`` yields even when the queue
        # has room, and the wait for the reply below parks anyway. So check for cancellation
        # first, as ``send`` does (a cancelled caller queues nothing), queue without yielding,
        # and let the wait be the schedule point. A full queue still blocks (backpressure).
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            try:
                send.send_nowait(request)
            except trio.WouldBlock:
                await send.send(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            error = self._system._closed_error(self._cell)
            raise error from error.__cause__
        try:
            return await request.wait()
        finally:
            del request  # no reference cycle through the error's traceback (see _Request.wait)

    def send_message_nowait(self, text: str) -> PendingReply:
        """Queue a user message without waiting; :exc:`trio.WouldBlock` if the queue is full."""
        return self._send_nowait((UserMessage.text(text),))

    def send_messages_nowait(self, messages: Sequence[Message]) -> PendingReply:
        """Queue messages without waiting; raises :exc:`trio.WouldBlock` if the queue is full."""
        return self._send_nowait(_check_messages(messages))

    def _send_nowait(self, messages: Sequence[Message]) -> PendingReply:
        request = _Request(messages)
        send = self._cell.send
        assert send is not None
        try:
            send.send_nowait(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            error = self._system._closed_error(self._cell)
            raise error from error.__cause__
        return PendingReply(request)

    async def aclose(self) -> AgentResult:
        """Close gracefully: queued requests are served, then the agent (and its children,
        youngest first) ends; returns the final result, or raises why it ended otherwise."""
        cell = self._cell
        if cell.send is not None and not cell.done.is_set():
            cell.send.close()
        await cell.done.wait()
        if cell.status is AgentStatus.COMPLETED:
            assert cell.final_result is not None
            return cell.final_result
        error = self._system._closed_error(cell)
        raise error from error.__cause__

    def cancel(self, reason: str = "cancelled by its handle") -> None:
        """Cancel the agent and its subtree from outside (not a failure; never restarted)."""
        cell = self._cell
        if cell.done.is_set():
            return
        cell.command = _Command.CANCEL
        cell.command_reason = reason
        if cell.scope is not None:
            cell.scope.cancel(reason=reason)
        else:
            # Between incarnations: end it right here.
            self._system._finalize(cell, AgentStatus.CANCELLED, AgentCancelled(reason=reason))

    async def wait_done(self) -> AgentStatus:
        """Wait until the agent has ended for good; returns its final status."""
        await self._cell.done.wait()
        return self.status

    def __repr__(self) -> str:
        return (
            f"<AgentHandle {self.path!r} {self._cell.status.value if self._cell.status else 'new'}>"
        )


class AgentSystem:
    """A running supervision tree; made by :meth:`AgentOrchestrator.open`."""

    def __init__(self, orchestrator: AgentOrchestrator) -> None:
        self._orchestrator = orchestrator
        self._root = _Root(orchestrator.strategy)
        self._cells: dict[str, _Cell] = {}
        self._closing = False
        self._cancel_reason = "cancelled from outside"
        self._sink = orchestrator.event_sink

    @property
    def orchestrator(self) -> AgentOrchestrator:
        """The registry this system runs."""
        return self._orchestrator

    def _emit(self, event_type: type[Event], path: str, **fields: Any) -> None:
        if self._sink is not None:
            self._sink(event_type(time=trio.current_time(), agent=path, **fields))

    def _cell(self, name: str) -> _Cell:
        cell = self._cells.get(name)
        if cell is None:
            entry = self._orchestrator._require(name)
            parent = self._root if entry.parent is None else self._cell(entry.parent)
            cell = _Cell(entry, self._orchestrator.path_of(name), parent)
            self._cells[name] = cell
        return cell

    # ------------------------------------------------------------------ public API

    async def spawn(self, name: str) -> AgentHandle:
        """Start ``name`` inside its parent's supervisor nursery; returns once it is serving.

        Raises :class:`InvalidArgumentError` for an unknown name, a name that is already
        running, or a child whose parent is not running.
        """
        if self._closing:
            raise UsageError("the agent system is closing; spawn inside the `async with` block")
        cell = self._cell(name)
        if cell.status is None and cell.wanted:
            raise InvalidArgumentError(
                f"agent {name!r} is being spawned by another task; use system.handle({name!r}) "
                "once that spawn returns"
            )
        if cell.status is not None and not cell.done.is_set():
            raise InvalidArgumentError(
                f"agent {name!r} is already {cell.status.value}; use system.handle({name!r})"
            )
        parent = cell.parent
        assert parent is not None
        if not parent.running or parent.nursery is None:
            raise InvalidArgumentError(
                f"cannot spawn {name!r}: its parent {parent.name!r} is not running "
                f"(status: {parent.status.value if parent.status else 'never spawned'}); "
                "spawn the parent first"
            )
        # Never spawned (nor being spawned): not in the parent's list, so skip the O(n) scan
        # below (it made spawning N siblings quadratic).
        fresh = cell.status is None and not cell.wanted
        self._open_channel(cell)
        cell.wanted = True
        # A fresh cell keeps the (unused) done event and history its __init__ made; a
        # respawned one needs new ones.
        if not fresh:
            cell.done = trio.Event()
            # A new spawn is a new life: its restart limit starts afresh (found by the
            # supervision state machine, tests/test_supervision_machine.py).
            cell.history = _NO_RESTARTS
        cell.failure = cell.end_error = cell.final_result = None
        if not fresh and cell in parent.started_children:
            parent.started_children.remove(cell)
        parent.started_children.append(cell)
        try:
            await parent.nursery.start(self._run_cell, cell)
        except BaseException as exc:
            cell.wanted = False
            if cell in parent.started_children:
                parent.started_children.remove(cell)
            if isinstance(exc, trio.Cancelled) and cell.status is not None:
                # Cancelled from outside while it started: trio ends the new task with the
                # call. It never served; end it for good (it can be spawned again).
                reason = exc.reason or "spawn cancelled"
                self._finalize(cell, AgentStatus.CANCELLED, AgentCancelled(reason=reason))
            raise
        return AgentHandle(self, cell)

    def handle(self, name: str) -> AgentHandle:
        """A handle to an agent that has been spawned in this system."""
        cell = self._cell(name)
        if cell.status is None:
            raise InvalidArgumentError(f"agent {name!r} has not been spawned; use spawn({name!r})")
        return AgentHandle(self, cell)

    def status(self, name: str) -> AgentStatus | None:
        """The agent's status, or ``None`` if it was never spawned."""
        return self._cell(name).status

    def running(self) -> list[str]:
        """Names of the agents serving now."""
        return [name for name, cell in self._cells.items() if cell.running]

    def cancel(self, reason: str = "agent system cancelled") -> None:
        """Cancel every agent (like leaving the block)."""
        self._closing = True
        self._cancel_reason = reason
        assert self._root.nursery is not None
        self._root.nursery.cancel_scope.cancel(reason=reason)

    # ------------------------------------------------------------------ internals

    def _open_channel(self, cell: _Cell) -> None:
        if cell.recv is None or cell.done.is_set():
            cell.send, cell.recv = trio.open_memory_channel[_Request](
                self._orchestrator.channel_buffer
            )

    def _closed_error(self, cell: _Cell) -> AgentError:
        if cell.end_error is not None and isinstance(cell.end_error, AgentError):
            return cell.end_error
        if cell.status is AgentStatus.COMPLETED:
            return AgentStopped(f"agent {cell.path!r} is closed")
        if not cell.done.is_set():
            return AgentStopped(f"agent {cell.path!r} is closing and takes no more requests")
        return AgentStopped(
            f"agent {cell.path!r} has ended ({cell.status.value if cell.status else '?'})"
        )

    async def _run_cell(self, cell: _Cell, task_status: trio.TaskStatus[None]) -> None:
        """The task of one agent: incarnations, failures and the supervisor's decisions."""
        # One scope for the task's whole life (incarnations and backoff waits), so that a
        # stop or cancel ordered by the supervisor tree or the handle reaches it wherever it is.
        scope = trio.CancelScope()
        cell.scope = scope
        cell.command = None
        cell.exited = trio.Event()
        first: trio.TaskStatus[None] | None = task_status
        try:
            with scope:
                while True:
                    failure = await self._incarnation(cell, first)
                    first = None
                    if failure is None:
                        return
                    # Cancelled (by its handle, its supervisor tree or from outside) and
                    # something raised while unwinding? Then it is not a failure: this raises
                    # the cancellation, which goes on as usual. (O(1), unlike reading the
                    # effective deadline, which recurses through every enclosing scope.)
                    await trio.lowlevel.checkpoint_if_cancelled()
                    if not await self._supervise(cell, failure):
                        return
                    # Its traceback holds the failed incarnation (agent, history): let it go
                    # now rather than when the next incarnation ends.
                    del failure
            if scope.cancelled_caught:
                self._on_command(cell)
                called_off, cell.restart_siblings = cell.restart_siblings, ()
                if called_off and _cancelled_by_its_handle(cell):
                    # Cancelled during its backoff: the restart is called off, and the
                    # siblings stopped only to restart with it come back now (else they would
                    # stay "restarting" and their requests wait forever). Found by the
                    # supervision state machine (tests/test_supervision_machine.py).
                    await self._start_all(cell.parent, called_off)
        finally:
            # However the task ends (its parent's failure may cut the backoff short too), a
            # restart it was waiting for is over: the next incarnation must not remember it.
            cell.restart_siblings = ()
            if cell.status is AgentStatus.RUNNING and not cell.done.is_set():
                # Torn down from outside (an ancestor's failure, restart or shutdown): its
                # fate is decided by that ancestor (come back, or be finalized).
                cell.status = AgentStatus.RESTARTING
                if not self._closing:
                    reason = self._teardown_reason(cell)
                    self._emit(AgentSuspended, cell.path, reason=reason)
            cell.exited.set()
            cell.scope = None

    async def _incarnation(
        self, cell: _Cell, task_status: trio.TaskStatus[None] | None
    ) -> BaseException | None:
        """Run one incarnation. Returns its failure, or ``None`` when the task should end."""
        cell.incarnation += 1
        failure: BaseException | None = None
        budget = self._orchestrator.budget
        try:
            if budget is not None:
                budget.check_spawn()  # BudgetExhausted: not retryable
            agent = cell.entry.factory()
            if not isinstance(agent, Agent):
                raise InvalidArgumentError(
                    f"factory for {cell.name!r} must return an Agent, got {type(agent).__name__}"
                )
            if cell.entry.conversation is not None:
                self._restore_conversation(cell, agent, cell.entry.conversation)
        except Exception as exc:
            if task_status is not None:
                cell.wanted = False
                raise  # a broken factory at spawn time is the caller's error
            return exc
        if budget is not None:
            budget.charge_spawn()
            if agent.budget is None:
                agent.budget = budget
        agent.path = cell.path
        if agent.event_sink is None:
            agent.event_sink = self._sink
        cell.agent = agent
        cell.escalation = None
        cell.watch_failure = None
        watch = agent.watchdog()
        serving = False
        try:
            async with trio.open_nursery() as nursery:
                cell.nursery = nursery
                if watch is not None:
                    await nursery.start(self._watchdog, cell, watch)
                for child in list(cell.started_children):
                    if child.wanted and not child.done.is_set():
                        child.failure = None
                        await nursery.start(self._run_cell, child)
                cell.status = AgentStatus.RUNNING
                if self._sink is not None:
                    self._sink(
                        AgentSpawned(
                            time=trio.current_time(), agent=cell.path, incarnation=cell.incarnation
                        )
                    )
                if task_status is not None:
                    task_status.started()
                serving = True
                if cell.restart_after:
                    younger, cell.restart_after = cell.restart_after, ()
                    await self._start_all(cell.parent, younger)
                cell.restart_siblings = ()  # the restart is complete
                failure = await self._serve(cell, agent, watch is not None)
                # The agent ended (failed, or its queue was closed): its children stop
                # first, youngest first.
                await self._stop_children(cell, graceful=failure is None)
                # Whatever still runs in the nursery (a child finishing, or waiting out its
                # backoff) is cancelled. With nothing left, cancelling would change nothing
                # but cost ~2 µs per restart or close (trio formats a reason with the task's
                # repr and recomputes the scope tree).
                if nursery.child_tasks:
                    nursery.cancel_scope.cancel(reason=f"agent {cell.path!r} ended")
        except BaseExceptionGroup as group:
            flat = _flatten(group)
            if not isinstance(flat, Exception):
                # Cancelled, KeyboardInterrupt, …: never a failure; it goes on up.
                raise flat from None
            failure = flat
        finally:
            cell.nursery = None
            cell.agent = None
            cell.idle_scope = None
            agent.incarnation_ended()
        if failure is None:
            self._finalize(cell, AgentStatus.COMPLETED, None)
        elif task_status is not None and not serving:
            cell.wanted = False
            raise failure  # its watchdog could not start it: the caller's error, as above
        return failure

    async def _watchdog(
        self, cell: _Cell, watch: Watchdog, task_status: trio.TaskStatus[None]
    ) -> None:
        """Run an agent's watchdog: a failure before it started is the start's failure;
        after, it ends the incarnation once the agent is between requests."""
        ready = _Started(task_status)
        try:
            await watch(ready)
        except Exception as exc:
            if not ready.done:
                raise
            cell.watch_failure = exc
            if cell.idle_scope is not None:
                cell.idle_scope.cancel(reason=f"agent {cell.path!r} failed while idle")

    def _on_command(self, cell: _Cell) -> None:
        if cell.done.is_set():
            return
        command = cell.command
        reason = cell.command_reason
        if command is _Command.CANCEL:
            self._finalize(cell, AgentStatus.CANCELLED, AgentCancelled(reason=reason))
        elif command is _Command.STOP:
            self._finalize(
                cell, AgentStatus.FAILED, AgentStopped(f"agent {cell.path!r} stopped: {reason}")
            )
        else:
            cell.status = AgentStatus.RESTARTING
            self._emit(AgentSuspended, cell.path, reason=reason)

    async def _serve(self, cell: _Cell, agent: Agent, watched: bool) -> BaseException | None:
        recv = cell.recv
        assert recv is not None
        while True:
            if cell.watch_failure is not None:
                # Its watchdog saw it fail (between requests, or while one ran): the
                # incarnation ends here, as after a failed request.
                failure, cell.watch_failure = cell.watch_failure, None
                return failure
            # Take what is queued without a scheduler step; wait only when nothing is. The
            # wait is outside the ``except`` block: a handled exception stays alive, with its
            # traceback, for as long as its handler awaits (~0.6 KB for every idle agent).
            try:
                request: _Request | None = recv.receive_nowait()
            except trio.WouldBlock:
                request = None
            except trio.EndOfChannel:
                return None
            if request is None:
                if watched:
                    # A scope its watchdog can cancel to end the wait (only for such agents:
                    # a scope per idle wait is not free).
                    cell.idle_scope = trio.CancelScope()
                    with cell.idle_scope:
                        try:
                            request = await recv.receive()
                        except trio.EndOfChannel:
                            return None
                    cell.idle_scope = None
                    if request is None:
                        continue  # woken by its watchdog
                else:
                    try:
                        request = await recv.receive()
                    except trio.EndOfChannel:
                        return None
            cell.received += 1
            request.number = cell.received
            cell.current = request
            if self._sink is not None:
                self._sink(
                    RequestReceived(
                        time=trio.current_time(), agent=cell.path, request=request.number
                    )
                )
            if request.decisions is not None or agent._waiting is not None:
                refusal = self._approval_refusal(cell, agent, request.decisions)
                if refusal is not None:
                    # Not a failure: the agent goes on serving (and waiting).
                    cell.current = None
                    self._reply(cell, request, None, refusal)
                    del request, refusal
                    continue
            try:
                if request.decisions is None:
                    result = await agent.run(request.messages)
                else:
                    result = await agent.resume(request.decisions)
            except trio.Cancelled:
                # Cancelled, stopped, or torn down by its supervisor tree (to come back after
                # a backoff, or to end): the run is over either way, so the caller learns it
                # now, not when the agent's fate is decided.
                self._reply(cell, request, None, self._interrupted(cell))
                raise
            except Exception as exc:
                self._reply(cell, request, None, exc)
                # The traceback holds this frame: drop the request (which holds the error) so
                # that no cycle keeps the failed incarnation alive until a full collection.
                del request
                return exc
            except BaseException as exc:
                # KeyboardInterrupt, SystemExit, …: not a failure to supervise. The request
                # is answered, and the exception goes on up untouched.
                interrupted = AgentCancelled(reason=f"interrupted by {type(exc).__name__}")
                interrupted.__cause__ = exc
                self._reply(cell, request, None, interrupted)
                raise
            finally:
                cell.current = None
            if cell.entry.conversation is not None and agent.waiting is None:
                try:
                    self._save_conversation(cell, agent, cell.entry.conversation)
                except Exception as exc:
                    # Not kept, so not answered: the caller learns why, and the next
                    # incarnation starts from what the journal holds.
                    self._reply(cell, request, None, exc)
                    del request
                    return exc
            cell.served += 1
            cell.usage = cell.usage + result.usage
            cell.history = cell.history.record_success()
            cell.final_result = result
            self._reply(cell, request, result, None)

    def _restore_conversation(self, cell: _Cell, agent: Agent, journal: RunJournal) -> None:
        run_id = _CONVERSATION + cell.path
        records = journal.records(run_id)
        messages = _conversation(records)
        if messages:
            agent.load_history(messages)
        cell.conversation_records = len(records)
        cell.conversation_saved = len(agent.messages)

    def _save_conversation(self, cell: _Cell, agent: Agent, journal: RunJournal) -> None:
        messages = agent.messages
        added = messages[cell.conversation_saved :]
        if not added:
            return
        journal._extend_conversation(_CONVERSATION + cell.path, cell.conversation_records, added)
        cell.conversation_records += 1
        cell.conversation_saved = len(messages)

    def _approval_refusal(
        self,
        cell: _Cell,
        agent: Agent | None,
        decisions: tuple[ApprovalDecision, ...] | None,
        *,
        raise_it: bool = False,
    ) -> AgentError | None:
        """Why a request (a resume with ``decisions``, or any other) may not run on
        ``agent`` with respect to approval, or None."""
        waiting = agent.waiting if agent is not None else None
        error: AgentError | None = None
        if decisions is None:
            if waiting is not None:
                error = ApprovalPending(
                    f"agent {cell.path!r} waits for approval of tool calls "
                    f"{[p.call_id for p in waiting.pending_approvals]}; answer them with "
                    "handle.resume(decisions) first",
                    result=waiting,
                )
        elif waiting is None:
            error = InvalidArgumentError(
                f"agent {cell.path!r} is not waiting for approval (no reply of it stopped "
                "with StopReason.APPROVAL_REQUIRED since its last run or restart; a restart "
                "drops the calls that waited)"
            )
        else:
            try:
                _check_decisions(waiting.pending_approvals, decisions)
            except InvalidArgumentError as exc:
                error = exc
        if error is not None and raise_it:
            raise error
        return error

    def _reply(
        self,
        cell: _Cell,
        request: _Request,
        result: AgentResult | None,
        error: BaseException | None,
    ) -> None:
        if request.reply(result, error) and self._sink is not None:
            info = _error_info(error) if error is not None else None
            self._sink(
                RequestReplied(
                    time=trio.current_time(), agent=cell.path, request=request.number, error=info
                )
            )

    def _interrupted(self, cell: _Cell) -> AgentCancelled:
        """The reply for a request whose run was cancelled, with the partial result."""
        partial = cell.agent.last_result if cell.agent is not None else None
        return AgentCancelled(reason=self._teardown_reason(cell), result=partial)

    def _teardown_reason(self, cell: _Cell) -> str:
        """Why ``cell``'s task is being cancelled: the nearest command or escalation above it
        (itself included), else the system's cancel reason."""
        node: _Cell | None = cell
        while node is not None:
            if node.command is not None:
                return node.command_reason or node.command.value
            if node.escalation is not None:
                return node.escalation
            node = node.parent
        return self._cancel_reason

    # pragma: no mutate end
    async def _stop_children(self, cell: _Cell, *, graceful: bool) -> None:
        for child in reversed(cell.started_children):
            if child.status is not AgentStatus.RUNNING:
                continue
            if graceful:
                if child.send is not None:
                    child.send.close()
                await child.done.wait()
            else:
                child.command = _Command.SUSPEND
                child.command_reason = f"parent {cell.path!r} failed"
                if child.scope is not None:
                    child.scope.cancel(reason=child.command_reason)
                await child.exited.wait()

    async def _supervise(self, cell: _Cell, failure: BaseException) -> bool:
        """Carry out the supervisor's decision; True to start a new incarnation."""
        parent = cell.parent
        assert parent is not None
        if self._sink is not None:  # no ErrorInfo to build without a sink
            self._emit(AgentFailed, cell.path, error=_error_info(failure))
        policy = self._orchestrator.supervisor
        requested = SupervisorAction.ESCALATE
        if policy is not None:
            try:
                # A user's policy may return anything: checked below, so typed as object.
                answer: object = policy.on_agent_error(cell.name, failure)
            except Exception as exc:
                # A policy that cannot decide fails closed: the failure escalates, and says why.
                failure.add_note(
                    f"the supervisor policy raised {type(exc).__name__}: {exc}; escalating"
                )
                answer = SupervisorAction.ESCALATE
            if isinstance(answer, SupervisorAction):
                requested = answer
            else:
                failure.add_note(
                    f"the supervisor policy returned {answer!r}, not a SupervisorAction; escalating"
                )
        running = [c for c in parent.started_children if c.running or c is cell]
        siblings = [c.name for c in running]
        temporary = [c.name for c in running if c.entry.restart is RestartType.TEMPORARY]
        decision: Decision = decide(
            failed=cell.name,
            requested=requested,
            history=cell.history,
            limit=cell.entry.limit,
            backoff=cell.entry.backoff,
            strategy=parent.entry.strategy,
            siblings=siblings,
            now=trio.current_time(),
            rng=self._orchestrator.rng,
            restart_type=cell.entry.restart,
            temporary=temporary,
        )
        cell.history = decision.history
        self._emit(
            SupervisorDecided,
            cell.path,
            action=decision.action.value,
            requested=decision.requested.value,
            reason=decision.reason,
            delay=decision.delay,
            affected=decision.affected,
            limit_exceeded=decision.limit_exceeded,
            restart_type=cell.entry.restart.value,
        )
        if decision.action is SupervisorAction.RESTART:
            cell.status = AgentStatus.RESTARTING
            affected = [self._cells[name] for name in decision.affected]
            order = parent.started_children
            # Until each of them serves again, these siblings are this restart's to bring
            # back: if the restart is called off (cancelled) at any point, they come back.
            cell.restart_siblings = sorted(affected, key=order.index)
            dropped = [self._cells[name] for name in decision.dropped]
            stopping = sorted([*affected, *dropped], key=order.index, reverse=True)
            for sibling in stopping:  # reverse start order
                sibling.command = _Command.SUSPEND
                sibling.command_reason = f"sibling {cell.path!r} is restarting"
                if sibling.scope is not None:
                    sibling.scope.cancel(reason=sibling.command_reason)
                await sibling.exited.wait()
            for sibling in dropped:
                # Temporary: taken down by the strategy, it ends instead of coming back.
                self._finalize(
                    sibling,
                    AgentStatus.CANCELLED,
                    AgentCancelled(
                        reason=f"sibling {cell.path!r} restarted; a temporary agent is not "
                        "restarted"
                    ),
                )
            if decision.delay > 0:
                await trio.sleep(decision.delay)
            cell.restarts += 1
            self._emit(
                AgentRestarted, cell.path, incarnation=cell.incarnation + 1, restarts=cell.restarts
            )
            # Start everything again in start order: the older siblings now, this agent
            # when its task loops, the younger ones once this agent serves.
            order = parent.started_children
            mine = order.index(cell)
            in_order = sorted(affected, key=order.index)
            await self._start_all(parent, [s for s in in_order if order.index(s) < mine])
            cell.restart_after = [s for s in in_order if order.index(s) > mine]
            cell.restart_siblings = list(cell.restart_after)
            return True
        if decision.action is SupervisorAction.STOP:
            self._finalize(
                cell,
                AgentStatus.FAILED,
                _stopped(cell, failure),
            )
            return False
        cell.failure = failure
        cell.status = AgentStatus.FAILED
        self._emit(FailureEscalated, cell.path, error=_error_info(failure))
        # Raising tears down the parent's other children and the parent's own run: say why,
        # before trio cancels them. (At the root, the system ends for this reason.)
        if parent is not self._root:
            parent.escalation = (
                f"agent {cell.path!r} failed and its failure escalated to {parent.path!r}"
            )
        elif not self._closing:  # a system already closing keeps its own reason
            self._cancel_reason = (
                f"agent {cell.path!r} failed and its failure escalated to the root"
            )
        raise ChildFailed(cell.path, failure)

    async def _start_all(self, parent: _Cell | None, cells: Sequence[_Cell]) -> None:
        assert parent is not None
        for sibling in cells:
            if sibling.scope is not None:  # its task is still alive
                if sibling.command is not _Command.SUSPEND:
                    continue  # serving already
                await sibling.exited.wait()  # still unwinding its suspension
            if parent.nursery is not None and sibling.wanted and not sibling.done.is_set():
                await parent.nursery.start(self._run_cell, sibling)

    # pragma: no mutate start
    def _finalize(self, cell: _Cell, status: AgentStatus, error: BaseException | None) -> None:
        """End ``cell`` and its subtree for good, replying to every waiting request."""
        stack = [(cell, status, error)]
        while stack:
            node, node_status, node_error = stack.pop()
            if node.done.is_set() or node.status is None:
                continue
            # Children of an agent its supervisor stopped are stopped too (failed); children
            # of one that escalated, completed or was cancelled are cancelled.
            stopped = node_status is AgentStatus.FAILED and node.failure is None
            if node.failure is not None:
                node_status = AgentStatus.FAILED
                node_error = _escalated(node, node.failure)
            node.status = node_status
            node.end_error = node_error
            node.wanted = False
            if node.scope is not None and node_status is not AgentStatus.COMPLETED:
                node.scope.cancel(reason=f"agent {node.path!r} ended")
            reply_error = (
                node_error
                if node_error is not None
                else AgentStopped(f"agent {node.path!r} is closed")
            )
            if node.current is not None:
                self._reply(node, node.current, None, reply_error)
            if node.recv is not None:
                while True:
                    try:
                        request = node.recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break
                    node.received += 1
                    request.number = node.received
                    self._reply(node, request, None, reply_error)
                node.recv.close()
            if node_status is AgentStatus.COMPLETED and node.final_result is None:
                node.final_result = AgentResult(stop_reason=StopReason.STOP)
            if node.final_result is not None and node_status is AgentStatus.COMPLETED:
                node.final_result = attrs.evolve(node.final_result, usage=node.usage)
            node.done.set()
            self._emit(
                AgentEnded,
                node.path,
                status=node_status.value,
                error=_error_info(node_error) if node_error is not None else None,
            )
            child_status = AgentStatus.FAILED if stopped else AgentStatus.CANCELLED
            for child in node.started_children:
                child_error: BaseException = (
                    AgentStopped(f"agent {child.path!r} stopped with its parent {node.path!r}")
                    if child_status is AgentStatus.FAILED
                    else AgentCancelled(reason=f"parent {node.path!r} ended")
                )
                stack.append((child, child_status, child_error))

    def _finalize_all(self) -> None:
        reason = self._cancel_reason
        for cell in self._root.started_children:
            self._finalize(cell, AgentStatus.CANCELLED, AgentCancelled(reason=reason))


class _Started:
    """The ``task_status`` a watchdog gets: says whether it called ``started()``."""

    __slots__ = ("_status", "done")

    def __init__(self, status: trio.TaskStatus[None]) -> None:
        self._status = status
        self.done = False

    def started(self, value: None = None) -> None:
        self.done = True
        self._status.started()


def _cancelled_by_its_handle(cell: _Cell) -> bool:
    return cell.command is _Command.CANCEL


def _escalated(cell: _Cell, failure: BaseException) -> AgentEscalated:
    parent = cell.parent
    return AgentEscalated(
        cell.path, failure, escalated_to=parent.path if parent is not None else ""
    )


def _stopped(cell: _Cell, failure: BaseException) -> AgentStopped:
    error = AgentStopped(
        f"agent {cell.path!r} was stopped after it failed: {type(failure).__name__}: {failure}"
    )
    error.__cause__ = failure
    return error


# pragma: no mutate end
