"""The caller's side of distributed agents: the backend protocol, placement, remote agents.

A remote agent is reached through an ordinary :class:`~trio_agents.AgentHandle`: the
orchestrator's factory for its name builds a :class:`RemoteAgent`, a local stand-in whose
:meth:`~RemoteAgent.run` sends the request to the agent on its host. So requests wait in the
same bounded local queue (backpressure on the caller's side), every request gets exactly one
reply, and a failure on the host — the agent's error, or the loss of the host itself — is an
ordinary failure of the incarnation that the parent's supervisor policy and
:func:`~trio_agents.decide` handle: a restart builds a new :class:`RemoteAgent`, placed on a
host that is still alive.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs
import trio

from .._agent import Agent, AgentSpec, Watchdog, _as_messages, _check_decisions
from .._cancel import reraise_cancelled
from .._errors import (
    AgentCancelled,
    AgentError,
    AlreadyRunningError,
    ApprovalPending,
    InvalidArgumentError,
)
from .._messages import (
    AgentResult,
    ApprovalDecision,
    AssistantMessage,
    ErrorInfo,
    Message,
    StopReason,
)
from .._orchestrator import _raise_flat
from .._serde import dump, load
from ._host import check_factory_path


class HostLost(AgentError):
    """The host running a remote agent died or became unreachable.

    Retryable: the default supervisor restarts the agent, on a host that is still alive.
    """

    retryable = True

    def __init__(self, host: str, message: str = "") -> None:
        super().__init__(message or f"host {host!r} was lost")
        self.host: str = host
        """The lost host."""


class RemoteAgentError(AgentError):
    """A remote agent's run failed on its host; :attr:`original` describes the original error.

    :attr:`retryable` is the original error's (a throttled model on the host is retryable).
    """

    def __init__(self, info: ErrorInfo, *, host: str, agent_id: str) -> None:
        super().__init__(
            f"{info.type} on host {host!r} (agent {agent_id!r}): {info.message}",
            retry_after=info.retry_after,
        )
        self.original: ErrorInfo = info
        """The original error, as it travelled."""
        self.host: str = host
        """The host the agent ran on."""

    @staticmethod
    def from_info(info: ErrorInfo, *, host: str, agent_id: str) -> RemoteAgentError:
        """The error for ``info``: retryable exactly when the original was."""
        cls = _RetryableRemoteAgentError if info.retryable else RemoteAgentError
        return cls(info, host=host, agent_id=agent_id)


class _RetryableRemoteAgentError(RemoteAgentError):
    retryable: ClassVar[bool] = True


@runtime_checkable
class Backend(Protocol):
    """What a cluster must offer: spawn an agent on a host, send it a request, cancel its
    run, kill it, and say when a host is lost.

    Everything that travels is JSON data made by the one converter (:func:`trio_agents.dump`).
    A backend answers every call on a lost host with :class:`HostLost`, pending calls
    included, promptly: never a hang.
    """

    def live_hosts(self) -> Sequence[str]:
        """The hosts that are alive now, in a stable order."""
        ...

    def host_load(self, host: str) -> int:
        """How many agents live on ``host`` now."""
        ...

    async def spawn(self, host: str, agent_id: str, target: Any) -> None:
        """Build the agent ``target`` describes on ``host`` under ``agent_id``.

        Idempotent: an id that already exists there is left as it is (a caller cancelled
        during a spawn does not know whether it happened, and spawns again). A target that
        cannot be built raises :class:`RemoteAgentError`."""
        ...

    async def request(self, host: str, agent_id: str, payload: Any) -> Any:
        """Run one request (a list of messages, as data, or ``{"resume": [decisions]}`` for
        the run waiting for approval); returns ``{"result": ...}`` or ``{"error": ...}`` (an
        :class:`ErrorInfo`, as data)."""
        ...

    async def cancel(self, host: str, agent_id: str) -> None:
        """Cancel the agent's current run and wait until it has ended."""
        ...

    async def kill(self, host: str, agent_id: str) -> None:
        """Remove the agent from its host at once (its current run is abandoned)."""
        ...

    async def wait_host_lost(self, host: str) -> None:
        """Return once ``host`` is lost."""
        ...


class Spread(enum.Enum):
    """How a placement picks among the hosts it may use."""

    SPREAD = "spread"
    """The host with the fewest agents (ties: the first in :meth:`Backend.live_hosts`)."""
    PACK = "pack"
    """The first host in :meth:`Backend.live_hosts`."""


@attrs.frozen
class Placement:
    """Where a remote agent may run."""

    hosts: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Host affinity: the hosts allowed, in order of preference; empty allows every host."""
    strategy: Spread = Spread.SPREAD
    """How to choose among the allowed live hosts."""
    strict: bool = False
    """With ``True`` an agent never leaves :attr:`hosts`: when they are all lost, its
    restart fails with :class:`HostLost`; with ``False`` it falls back to any live host."""

    def choose(self, live_hosts: Sequence[str], load: Callable[[str], int]) -> str:
        """Pick one of ``live_hosts`` (``load(host)``: agents placed there), or raise
        :class:`HostLost` when none is allowed."""
        live = list(live_hosts)
        allowed = [h for h in self.hosts if h in live] if self.hosts else live
        if not allowed and not self.strict:
            allowed = live
        if not allowed:
            wanted = ", ".join(self.hosts) if self.hosts else "any"
            raise HostLost(
                wanted,
                f"no live host for this placement (wanted: {wanted}; live: {live or 'none'})",
            )
        if self.strategy is Spread.PACK:
            return allowed[0]
        return min(allowed, key=load)


class _HostedModel:
    """The model of a :class:`RemoteAgent`: it lives on the host, never called here."""

    def __init__(self, host: str) -> None:
        self.model_id = f"remote:{host}"

    async def request(self, request: Any) -> AssistantMessage:
        raise InvalidArgumentError("a remote agent's model runs on its host; call run()")

    def stream(self, request: Any) -> Any:
        raise InvalidArgumentError("a remote agent's model runs on its host; call run()")


class RemoteAgent(Agent):
    """The local stand-in of an agent that runs on a remote host (built by a
    :class:`RemoteFactory`). :meth:`run` sends the request there and returns its reply."""

    def __init__(self, cluster: RemoteCluster, host: str, agent_id: str, target: Any) -> None:
        super().__init__(_HostedModel(host), name=agent_id.rpartition("#")[0])
        self.host: str = host
        """The host it runs on."""
        self.agent_id: str = agent_id
        """Its id on the host (the registered name, ``#`` and the incarnation)."""
        self._cluster = cluster
        self._target = target
        self._spawned = False

    def watchdog(self) -> Watchdog:
        """Under an orchestrator: build the agent on its host when the incarnation starts
        (so a target the host cannot build fails the spawn), then watch the host. A host
        lost while the agent is idle fails the incarnation with :class:`HostLost` at once,
        so the supervisor policy places it again before any new request; a host lost during
        a request fails that request with :class:`HostLost` (its one reply)."""
        return self._watch

    async def _watch(self, task_status: trio.TaskStatus[None]) -> None:
        backend = self._cluster.backend
        await self._spawn()
        task_status.started()
        await backend.wait_host_lost(self.host)
        if not self._running:
            raise HostLost(
                self.host, f"host {self.host!r} was lost while agent {self.agent_id!r} was idle"
            )
        # A request is running: the backend answers it with HostLost, which fails the
        # incarnation through the request.

    def incarnation_ended(self) -> None:
        """Its incarnation is over: the agent on the host is killed now (in the cluster's
        tasks), not when the next incarnation is placed or the cluster closes."""
        self._cluster._ended(self.name, self.host, self.agent_id)

    async def _spawn(self) -> None:
        if not self._spawned:
            await self._cluster.backend.spawn(self.host, self.agent_id, self._target)
            self._spawned = True

    async def run(self, input: Any) -> AgentResult:
        """Run the request on the host.

        A cancelled caller cancels the remote run (and waits up to the cluster's
        ``grace`` for it to end, then kills the agent) before ``trio.Cancelled`` goes on.
        """
        if self._running:
            raise AlreadyRunningError(f"remote agent {self.agent_id!r} is already running")
        if self._waiting is not None:
            raise ApprovalPending(
                f"remote agent {self.agent_id!r} waits for approval of tool calls "
                f"{[p.call_id for p in self._waiting.pending_approvals]}; resume() it first",
                result=self._waiting,
            )
        return await self._call(dump(_as_messages(input)))

    async def _call(self, payload: Any) -> AgentResult:
        backend = self._cluster.backend
        self._running = True
        try:
            await self._spawn()  # built by its watchdog under an orchestrator
            try:
                reply = await backend.request(self.host, self.agent_id, payload)
            except trio.Cancelled:
                await self._cluster._stop_remote(self.host, self.agent_id)
                raise
        finally:
            self._running = False
        if "error" in reply:
            info = load(reply["error"], ErrorInfo)
            if info.type == "AgentCancelled":
                raise AgentCancelled(reason=f"cancelled on host {self.host!r}: {info.message}")
            raise RemoteAgentError.from_info(info, host=self.host, agent_id=self.agent_id)
        result = load(reply["result"], AgentResult)
        self._last_result = result
        self._usage = self._usage + result.usage
        if result.stop_reason is StopReason.APPROVAL_REQUIRED:
            self._waiting = result
        return result

    async def resume(
        self,
        decisions: Iterable[ApprovalDecision],
        *,
        waiting: AgentResult[Any] | None = None,
        history: Sequence[Message] | None = None,
    ) -> AgentResult[Any]:
        """Resume, on its host, the run that stopped for approval there.

        The decisions are checked here first, against the waiting result this stand-in
        received, then travel to the host, where the agent that holds the conversation
        resumes (a cancelled caller cancels it there, as for :meth:`run`).

        :raises InvalidArgumentError: nothing waits, the decisions do not answer each pending
            call exactly once, or ``waiting``/``history`` were given (the host holds the
            conversation; they are for resuming in a local :class:`~trio_agents.Agent`).
            Nothing travels.
        """
        if waiting is not None or history is not None:
            raise InvalidArgumentError(
                f"remote agent {self.agent_id!r} resumes the run waiting on its host; "
                "waiting= and history= are for resuming in a local Agent"
            )
        if self._running:
            raise AlreadyRunningError(f"remote agent {self.agent_id!r} is already running")
        stopped = self._waiting
        if stopped is None:
            raise InvalidArgumentError(
                f"remote agent {self.agent_id!r} is not waiting for approval "
                "(its last run did not stop with StopReason.APPROVAL_REQUIRED)"
            )
        chosen = list(decisions)
        _check_decisions(stopped.pending_approvals, chosen)
        self._waiting = None  # as for a local agent: a cut-off resume no longer waits
        return await self._call({"resume": dump(chosen)})


@attrs.frozen(kw_only=True)
class RemoteFactory:
    """An :data:`~trio_agents.AgentFactory` that places a new :class:`RemoteAgent` at every
    call (every spawn and restart); made by :meth:`RemoteCluster.factory`."""

    cluster: RemoteCluster
    """The cluster it places agents in."""
    name: str
    """The name ids are made from."""
    target: Any
    """What the host builds, as data."""
    placement: Placement
    """Where it may run."""

    def __call__(self) -> RemoteAgent:
        """Choose a host and return the stand-in (the agent is built there at its first run)."""
        host = self.placement.choose(self.cluster.backend.live_hosts(), self.cluster.load)
        agent_id = f"{self.name}#{next(self.cluster._ids)}"
        self.cluster._placed(self.name, host, agent_id)
        return RemoteAgent(self.cluster, host, agent_id, self.target)


class RemoteCluster:
    """Remote agents placed on the hosts of a :class:`Backend`; made by
    :func:`open_cluster`, which kills every remote agent it placed when it closes."""

    def __init__(self, backend: Backend, nursery: trio.Nursery, grace: float) -> None:
        self.backend = backend
        self.grace = grace
        self._nursery = nursery
        self._ids = itertools.count(1)
        self._current: dict[str, tuple[str, str]] = {}
        self._closed = False

    def factory(
        self, name: str, target: object, *, placement: Placement | None = None
    ) -> RemoteFactory:
        """A factory for ``orchestrator.add_agent(name, ...)`` that runs the agent remotely.

        :param target: ``"module:function"`` (importable on every host, returning an
            :class:`~trio_agents.Agent`) or an :class:`~trio_agents.AgentSpec`.
        :param placement: where it may run (default: spread over every live host).
        """
        if isinstance(target, AgentSpec):
            wire: Any = {"spec": dump(target)}
        elif isinstance(target, str):
            check_factory_path(target)
            wire = {"factory": target}
        elif callable(target):
            raise InvalidArgumentError(
                f"a remote target must be 'module:function' or an AgentSpec; "
                f"{getattr(target, '__qualname__', target)!r} is a callable, and a closure "
                "or lambda cannot travel to another host: define a module-level function "
                "and pass its 'module:function' path"
            )
        else:
            raise InvalidArgumentError(
                f"a remote target must be 'module:function' or an AgentSpec, "
                f"got {type(target).__name__}"
            )
        if placement is not None and not isinstance(placement, Placement):
            raise InvalidArgumentError(
                f"placement must be a Placement, got {type(placement).__name__}"
            )
        return RemoteFactory(
            cluster=self, name=name, target=wire, placement=placement or Placement()
        )

    def load(self, host: str) -> int:
        """How many current incarnations this cluster placed on ``host``."""
        return sum(1 for placed, _ in self._current.values() if placed == host)

    def host_of(self, name: str) -> str | None:
        """The host of ``name``'s current incarnation (``None`` before its first and after
        its last ended)."""
        placed = self._current.get(name)
        return placed[0] if placed is not None else None

    def _ended(self, name: str, host: str, agent_id: str) -> None:
        if self._current.get(name) != (host, agent_id):
            return  # already replaced (or the cluster closed and killed it)
        del self._current[name]
        if not self._closed:
            self._nursery.start_soon(self._kill_quietly, host, agent_id)

    def _placed(self, name: str, host: str, agent_id: str) -> None:
        old = self._current.get(name)
        self._current[name] = (host, agent_id)
        if old is not None:  # the previous incarnation is over: free its host
            self._nursery.start_soon(self._kill_quietly, *old)

    async def _kill_quietly(self, host: str, agent_id: str) -> None:
        if host in self.backend.live_hosts():
            with suppress(HostLost):
                await self.backend.kill(host, agent_id)

    async def _stop_remote(self, host: str, agent_id: str) -> None:
        """Cancel a remote run, wait up to ``grace``, then kill; shielded (the caller is
        already cancelled)."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(self.grace) as graceful:
                try:
                    await self.backend.cancel(host, agent_id)
                except HostLost:
                    return
            if graceful.cancelled_caught:
                await self._kill_quietly(host, agent_id)


@asynccontextmanager
async def open_cluster(backend: Backend, *, grace: float = 5.0) -> AsyncIterator[RemoteCluster]:
    """Open a :class:`RemoteCluster` on ``backend``: ``async with open_cluster(b) as cluster:``.

    :param grace: seconds a cancelled remote run may take to end before its agent is killed.
    """
    if not isinstance(backend, Backend):
        raise InvalidArgumentError(
            f"backend must implement trio_agents.distributed.Backend, got {type(backend).__name__}"
        )
    if not (isinstance(grace, int | float) and grace >= 0):
        raise InvalidArgumentError(f"grace must be a number of seconds >= 0, got {grace!r}")
    try:
        async with trio.open_nursery() as nursery:
            cluster = RemoteCluster(backend, nursery, float(grace))
            try:
                yield cluster
            finally:
                cluster._closed = True
                with trio.CancelScope(shield=True):
                    for host, agent_id in list(cluster._current.values()):
                        await cluster._kill_quietly(host, agent_id)
                    cluster._current.clear()
    except BaseExceptionGroup as group:
        reraise_cancelled(group)
        _raise_flat(group)
