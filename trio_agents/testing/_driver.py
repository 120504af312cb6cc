"""Run a list of commands against a live supervision tree on trio's virtual clock.

The same driver serves two uses: :func:`replay` runs a whole command list inside one
``trio.run``; :class:`LiveSystem` keeps one ``trio.run`` going in a background thread and runs
one command at a time for a caller in another thread (the hypothesis state machine, whose rules
are synchronous). After every command the driver waits until every task is blocked, so each
:class:`Observation` is taken at a quiescent point. Virtual time moves only through
:attr:`Op.TICK` commands, deadline by deadline, so timers fire in time order.

Determinism: trio shuffles the tasks that become runnable together. Under hypothesis (whose
trio plugin switches it on) or here, trio's scheduler draws that order from one module-level
``random.Random``; the driver seeds it from ``(seed, step)`` at the start of every command, so
the same commands with the same seed give the same events, in the same order, at the same
virtual times (checked by :func:`~trio_agents.testing.check_deterministic`).
"""

from __future__ import annotations

import enum
import queue
import random
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import trio
import trio.testing

from .._agent import Agent
from .._errors import AgentError, ChildFailed, InvalidArgumentError, UsageError
from .._events import Event
from .._orchestrator import AgentStatus, AgentSystem, PendingReply
from ._trees import AgentTree, Work, WorkItem, WorkModel, work_agent

__all__ = ["Command", "LiveSystem", "Observation", "Op", "Trace", "replay"]


class Op(enum.Enum):
    """What a :class:`Command` does."""

    SPAWN = "spawn"
    """``system.spawn(agent)``."""
    SEND = "send"
    """Send a request doing :attr:`Command.work` to the agent (``send_message_nowait``)."""
    CANCEL = "cancel"
    """Cancel the agent through its handle."""
    CLOSE = "close"
    """Close the agent gracefully (``aclose`` in a background task)."""
    TICK = "tick"
    """Let :attr:`Command.seconds` pass on the virtual clock."""


@attrs.frozen(kw_only=True)
class Command:
    """One step of a supervision run."""

    op: Op
    """What to do."""
    agent: str = ""
    """The agent it concerns (not for :attr:`Op.TICK`)."""
    work: Work = Work.OK
    """What a :attr:`Op.SEND` request asks for."""
    seconds: float = 0.0
    """Duration of a :attr:`Op.TICK`, or of a :attr:`Work.SLEEP` request."""
    id: int = 0
    """Identifies the request (:attr:`Op.SEND`) or close (:attr:`Op.CLOSE`) in outcomes."""

    def __str__(self) -> str:
        if self.op is Op.TICK:
            return f"tick({self.seconds:g})"
        if self.op is Op.SEND:
            extra = f" {self.seconds:g}" if self.work is Work.SLEEP else ""
            return f"send#{self.id}({self.agent}: {self.work.value}{extra})"
        if self.op is Op.CLOSE:
            return f"close#{self.id}({self.agent})"
        return f"{self.op.value}({self.agent})"


@attrs.frozen(kw_only=True)
class Observation:
    """The live system at a quiescent point."""

    time: float
    """Virtual time."""
    statuses: dict[str, AgentStatus | None]
    """Status of every agent by name (``None``: never spawned)."""
    incarnations: dict[str, int]
    """Incarnations started so far, by name."""
    restarts: dict[str, int]
    """Restarts carried out so far, by name."""
    outcomes: dict[int, str | None]
    """Outcome of every request and close by id: ``"ok"``, an error class name, or ``None``
    while it waits."""
    system_error: str | None
    """Origin path of the failure that ended the system, if one did."""
    spawn_error: str | None = None
    """The error class name a :attr:`Op.SPAWN` command raised, if it did."""
    events: int = 0
    """Length of the event log at this point."""


@attrs.frozen(kw_only=True)
class Trace:
    """Everything a run produced: the event log, the outcomes and the observations."""

    events: tuple[Event, ...]
    """Every event, in order."""
    observations: tuple[Observation, ...]
    """One observation after each command, and a last one after the system ended."""

    @property
    def final(self) -> Observation:
        """The observation after the system ended."""
        return self.observations[-1]


AgentBuilder = Callable[[str], Agent]


def _check_agent(name: str, agent: object) -> Agent:
    if not isinstance(agent, Agent):
        raise InvalidArgumentError(
            f"build_agent({name!r}) must return an Agent; got {type(agent).__name__}"
        )
    if not isinstance(agent.model, WorkModel):
        raise InvalidArgumentError(
            f"build_agent({name!r}) must return an agent on a WorkModel so that the harness "
            "controls its faults: Agent(WorkModel(your_model, name=name), ...)"
        )
    if agent.retry.max_attempts != 1:
        raise InvalidArgumentError(
            f"build_agent({name!r}) returned an agent that retries model errors itself "
            f"(retry.max_attempts={agent.retry.max_attempts}); pass "
            "retry=RetryPolicy(max_attempts=1) so that every fault reaches its supervisor"
        )
    return agent


# --------------------------------------------------------------------------- determinism


@contextmanager
def deterministic_scheduling() -> Iterator[Callable[[str], None]]:
    """Make trio's scheduler draw its tie-breaking order from a seedable generator.

    Yields ``reseed(key)``. Uses trio's own switch for this (the one its hypothesis plugin
    turns on); with a trio that lacks it, ``reseed`` does nothing and the order of tasks
    woken together stays random.
    """
    try:
        from trio._core import _run
    except ImportError:  # pragma: no cover - a trio without the private module
        yield lambda key: None
        return
    generator = getattr(_run, "_r", None)
    if not isinstance(generator, random.Random) or not hasattr(
        _run, "_ALLOW_DETERMINISTIC_SCHEDULING"
    ):  # pragma: no cover - a different trio
        yield lambda key: None
        return
    allowed = _run._ALLOW_DETERMINISTIC_SCHEDULING
    state = generator.getstate()
    setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 - Final in trio
    try:
        yield generator.seed
    finally:
        setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", allowed)  # noqa: B010
        generator.setstate(state)


# --------------------------------------------------------------------------- the driver


class _Driver:
    """Runs commands against one :class:`AgentSystem`; lives inside ``trio.run``."""

    def __init__(
        self,
        tree: AgentTree,
        *,
        seed: int,
        build_agent: AgentBuilder,
        clock: trio.testing.MockClock,
        reseed: Callable[[str], None],
    ) -> None:
        self.tree = tree
        self.seed = seed
        self.clock = clock
        self.reseed = reseed
        self.names = tree.names()
        self.events: list[Event] = []
        self.orchestrator = tree.build(
            lambda name: _check_agent(name, build_agent(name)),
            event_sink=self.events.append,
            rng=random.Random(seed),
            channel_buffer=1024,
        )
        self.system: AgentSystem | None = None
        self.system_error: ChildFailed | None = None
        self.system_done = trio.Event()
        self.system_scope: trio.CancelScope | None = None
        self.requests: dict[int, PendingReply | str] = {}
        self.closes: dict[int, str | None] = {}
        self.step = 0

    async def main(
        self,
        next_command: Callable[[], Awaitable[Command | None]],
        report: Callable[[Observation], None],
    ) -> None:
        self.reseed(f"{self.seed}:open")
        async with trio.open_nursery() as harness:
            self.harness = harness
            await harness.start(self._serve_system)
            while True:
                command = await next_command()
                if command is None:
                    break
                report(await self.execute(command))
            await self._settle()
            self.reseed(f"{self.seed}:shutdown")
            assert self.system_scope is not None
            self.system_scope.cancel(reason="the harness closed the system")
            await self.system_done.wait()
            await self._settle()
            harness.cancel_scope.cancel(reason="the harness is done")
        report(self.observe())

    async def _serve_system(self, task_status: trio.TaskStatus[None]) -> None:
        try:
            with trio.CancelScope() as scope:
                self.system_scope = scope
                async with self.orchestrator.open() as system:
                    self.system = system
                    task_status.started()
                    await trio.sleep_forever()
        except ChildFailed as exc:
            self.system_error = exc
        finally:
            self.system_done.set()

    async def _settle(self) -> None:
        await trio.testing.wait_all_tasks_blocked()

    async def execute(self, command: Command) -> Observation:
        """Run one command and observe the system once everything has settled."""
        await self._settle()
        self.step += 1
        self.reseed(f"{self.seed}:{self.step}")
        spawn_error: str | None = None
        system = self.system
        if system is None or self.system_done.is_set():
            pass  # the system has ended: commands do nothing
        elif command.op is Op.SPAWN:
            try:
                await system.spawn(command.agent)
            except (AgentError, Exception) as exc:
                spawn_error = type(exc).__name__
        elif command.op is Op.SEND:
            item = WorkItem(
                agent=command.agent,
                work=command.work,
                seconds=command.seconds,
                label=f"r{command.id}",
            )
            try:
                self.requests[command.id] = system.handle(command.agent).send_message_nowait(
                    item.text
                )
            except (AgentError, trio.WouldBlock) as exc:
                self.requests[command.id] = type(exc).__name__
        elif command.op is Op.CANCEL:
            system.handle(command.agent).cancel(reason="cancelled by the harness")
        elif command.op is Op.CLOSE:
            self.closes[command.id] = None
            self.harness.start_soon(self._close, system, command.agent, command.id)
        else:
            await self._advance(command.seconds)
        await self._settle()
        return self.observe(spawn_error)

    async def _close(self, system: AgentSystem, name: str, id: int) -> None:
        try:
            await system.handle(name).aclose()
        except AgentError as exc:
            self.closes[id] = type(exc).__name__
        else:
            self.closes[id] = "ok"

    async def _advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` ahead, stopping at every deadline on the way."""
        target = trio.current_time() + seconds
        while True:
            await self._settle()
            gap = trio.lowlevel.current_statistics().seconds_to_next_deadline
            now = trio.current_time()
            if now + gap > target:
                break
            self.clock.jump(max(gap, 0.0))
        self.clock.jump(max(target - trio.current_time(), 0.0))

    def observe(self, spawn_error: str | None = None) -> Observation:
        system = self.system
        statuses: dict[str, AgentStatus | None] = {}
        incarnations: dict[str, int] = {}
        restarts: dict[str, int] = {}
        for name in self.names:
            status = system.status(name) if system is not None else None
            statuses[name] = status
            if system is not None and status is not None:
                stats = system.handle(name).statistics()
                incarnations[name], restarts[name] = stats.incarnation, stats.restarts
            else:
                incarnations[name] = restarts[name] = 0
        outcomes: dict[int, str | None] = {}
        for id, pending in self.requests.items():
            outcomes[id] = pending if isinstance(pending, str) else _outcome(pending)
        outcomes.update(self.closes)
        error = self.system_error
        return Observation(
            time=trio.current_time(),
            statuses=statuses,
            incarnations=incarnations,
            restarts=restarts,
            outcomes=dict(sorted(outcomes.items())),
            system_error=error.origin if error is not None else None,
            spawn_error=spawn_error,
            events=len(self.events),
        )


def _outcome(pending: PendingReply) -> str | None:
    if not pending.done:
        return None
    request = pending._request
    if request.error is not None:
        return type(request.error).__name__
    return "ok"


# --------------------------------------------------------------------------- replay


def replay(
    tree: AgentTree,
    commands: Sequence[Command],
    *,
    seed: int = 0,
    build_agent: AgentBuilder = work_agent,
) -> Trace:
    """Run ``commands`` against a fresh system of ``tree`` inside one ``trio.run``.

    The system opens at virtual time 0 on a :class:`trio.testing.MockClock` that only
    :attr:`Op.TICK` moves; after the last command it is closed (leaving its ``async with``)
    and a last observation is taken. Must not be called from inside ``trio.run`` (use a
    thread).

    :param tree: the supervision tree.
    :param commands: the steps.
    :param seed: seeds the orchestrator's jitter and trio's scheduling order.
    :param build_agent: builds each agent (see :class:`~trio_agents.testing.SupervisionMachine`).
    """
    observations: list[Observation] = []
    remaining = iter(commands)

    async def next_command() -> Command | None:
        return next(remaining, None)

    with deterministic_scheduling() as reseed:
        clock = trio.testing.MockClock()
        driver = _Driver(tree, seed=seed, build_agent=build_agent, clock=clock, reseed=reseed)
        trio.run(driver.main, next_command, observations.append, clock=clock)
    return Trace(events=tuple(driver.events), observations=tuple(observations))


class LiveSystem:
    """A supervision tree running in a background thread, driven one command at a time.

    :meth:`execute` runs one command and returns the :class:`Observation` after it;
    :meth:`close` shuts the system down, joins the thread and returns the :class:`Trace`.
    Running the same commands with the same seed through :func:`replay` gives the same trace.

    :param timeout: real seconds to wait for a command before declaring the system stuck.
    """

    def __init__(
        self,
        tree: AgentTree,
        *,
        seed: int = 0,
        build_agent: AgentBuilder = work_agent,
        timeout: float = 30.0,
    ) -> None:
        self._timeout = timeout
        self._results: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._observations: list[Observation] = []
        self._closed = False
        self.commands: list[Command] = []
        """Every command executed, in order."""
        ready: queue.Queue[tuple[trio.lowlevel.TrioToken, trio.MemorySendChannel[Any]]] = (
            queue.Queue()
        )
        self._scheduling = deterministic_scheduling()
        self._restored = False
        reseed = self._scheduling.__enter__()
        clock = trio.testing.MockClock()
        self._driver = _Driver(tree, seed=seed, build_agent=build_agent, clock=clock, reseed=reseed)

        async def main() -> None:
            send, receive = trio.open_memory_channel[Command | None](1)
            ready.put((trio.lowlevel.current_trio_token(), send))

            async def next_command() -> Command | None:
                return await receive.receive()

            def report(observation: Observation) -> None:
                self._results.put(("ok", observation))

            await self._driver.main(next_command, report)

        def run() -> None:
            try:
                trio.run(main, clock=clock)
            except BaseException as exc:
                self._results.put(("error", exc))
            self._results.put(("ended", None))

        self._thread = threading.Thread(target=run, name="trio-agents-live-system", daemon=True)
        self._thread.start()
        try:
            self._token, self._send = ready.get(timeout=timeout)
        except queue.Empty:  # pragma: no cover - trio failed to start
            self._restore()
            raise UsageError("the live system's trio thread did not start") from None

    def _restore(self) -> None:
        if not self._restored:
            self._restored = True
            self._scheduling.__exit__(None, None, None)

    @property
    def events(self) -> list[Event]:
        """The event log so far (read it only between commands)."""
        return self._driver.events

    def _result(self) -> Observation:
        try:
            kind, value = self._results.get(timeout=self._timeout)
        except queue.Empty:
            raise AssertionError(
                f"the live system did not settle within {self._timeout} s of real time "
                f"after {self.commands[-1] if self.commands else 'opening'}: a task is busy "
                "forever (a livelock) or the trio thread is stuck"
            ) from None
        if kind == "error":
            self._closed = True
            self._thread.join(self._timeout)
            self._restore()
            raise value
        if kind == "ended":  # pragma: no cover - only after an error
            raise AssertionError("the live system ended unexpectedly")
        observation: Observation = value
        self._observations.append(observation)
        return observation

    def execute(self, command: Command) -> Observation:
        """Run ``command`` in the trio thread and return the observation after it."""
        if self._closed:
            raise UsageError("this LiveSystem is closed")
        self.commands.append(command)
        trio.from_thread.run_sync(self._send.send_nowait, command, trio_token=self._token)
        return self._result()

    def close(self) -> Trace:
        """Close the system (cancelling every agent), stop the thread, return the trace."""
        if not self._closed:
            self._closed = True
            try:
                trio.from_thread.run_sync(self._send.send_nowait, None, trio_token=self._token)
                self._result()
            finally:
                self._thread.join(self._timeout)
                self._restore()
        return Trace(events=tuple(self._driver.events), observations=tuple(self._observations))
