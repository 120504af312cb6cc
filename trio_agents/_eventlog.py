"""The append-only event log of an agent tree: :class:`EventLog`, its subscriptions and spans.

Rules:

* The log is an :data:`~trio_agents.EventSink`: ``log(event)`` (or ``log.append(event)``) is
  synchronous, never blocks and never yields to the scheduler. Events are kept in the order
  they were appended; an event's *position* is its index in that order, from 0.
* ``events(since=n, until=m)`` selects by position, like ``list(log)[n:m]``, before the other
  filters; ``kind`` and ``agent`` then filter (see :meth:`EventLog.events`).
* Subscribers get every event appended after :meth:`EventLog.subscribe`, in order, through a
  bounded buffer with trio's receive semantics (a checkpoint per receive, as a memory
  channel); appending never waits for them and wakes a waiting receiver only.
* **Overflow rule.** A subscriber whose buffer is full when an event is appended is *cut off*:
  it keeps the events already in its buffer, gets none after, and its ``async for`` ends once
  those are drained (``receive()`` raises :exc:`trio.EndOfChannel`). It is never silently
  gapped: :attr:`Subscription.overflowed` is then true and :attr:`Subscription.resume_from` is
  the position of the first event it missed, so ``log.events(since=sub.resume_from)`` followed
  by a new ``log.subscribe()``, with no checkpoint in between, resumes with nothing lost and
  nothing repeated. (The log never ends, so the ``async for`` of a subscription only ends for
  this reason.)
* JSON Lines export and import use :func:`~trio_agents.dumps_json` and
  :func:`~trio_agents.loads_json` with :class:`~trio_agents.Event` as the type: one event per
  line, loaded back as the class its ``kind`` names; the round trip is exact. Both are plain
  blocking file I/O.
* :meth:`EventLog.tree` builds the span tree from the agent paths: the event of agent
  ``"lead/researcher"`` belongs to the span ``"lead/researcher"``, a child of ``"lead"``, a
  child of the root span ``""`` (which holds the system's own events).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import attrs
import trio

from ._errors import DeserializationError, InvalidArgumentError
from ._events import Event
from ._serde import dumps_json, event_classes, loads_json

KindFilter = str | type[Event] | tuple[str | type[Event], ...]
"""What :meth:`EventLog.events` accepts as ``kind``."""


def _check_position(value: object, argument: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(
            f"{argument} must be None or an int >= 0 (a position in the log, not a time), "
            f"got {value!r}"
        )
    return value


# --------------------------------------------------------------------------- subscriptions


class Subscription:
    """The receiving end of :meth:`EventLog.subscribe`: events appended after subscribing.

    Iterate with ``async for event in subscription``, or call :meth:`receive`; take every
    buffered event at once with :meth:`receive_batch` (one wake-up per batch, the cheapest
    way to keep up). Close it with :meth:`aclose` or by using it as
    ``async with log.subscribe() as subscription:``. See the overflow rule in
    :class:`EventLog`: when the buffer is full at an append, the subscription is cut off and
    its iteration ends after the buffered events.

    One task receives at a time: a second task that waits while one already does gets
    :exc:`trio.BusyResourceError`.
    """

    __slots__ = (
        "_buffer",
        "_closed",
        "_handoff",
        "_log",
        "_max_buffer",
        "_resume_from",
        "_start",
        "_waiter",
    )

    def __init__(self, log: EventLog, max_buffer: int, start: int) -> None:
        self._log: EventLog | None = log
        self._max_buffer = max_buffer
        self._start = start
        self._buffer: deque[Event] = deque()
        self._waiter: trio.lowlevel.Task | None = None
        self._closed = False
        # 1 while the first buffered event is handed to a woken receiver that has not run
        # yet: as with a trio memory channel, that event does not take buffer space.
        self._handoff = 0
        self._resume_from: int | None = None

    @property
    def max_buffer(self) -> int:
        """Events the subscription holds before it overflows."""
        return self._max_buffer

    @property
    def start(self) -> int:
        """Log position of the first event this subscription gets."""
        return self._start

    @property
    def overflowed(self) -> bool:
        """Whether the subscription was cut off because its buffer was full."""
        return self._resume_from is not None

    @property
    def resume_from(self) -> int | None:
        """Log position of the first event it missed when it was cut off; ``None`` before."""
        return self._resume_from

    @property
    def buffered(self) -> int:
        """Events received by the subscription but not yet taken out of it."""
        return len(self._buffer) - self._handoff

    def _cut_off(self, position: int) -> None:
        """The buffer is full at the append of the event at ``position`` (see
        :meth:`EventLog.append`, which delivers events)."""
        self._resume_from = position
        self._detach()

    def _wake(self) -> None:
        task, self._waiter = self._waiter, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _detach(self) -> None:
        if self._log is not None:
            self._log._unsubscribe(self)
            self._log = None
        self._wake()  # a parked receiver sees the end (or the close)

    def _take_nowait(self, batch: bool) -> Any:
        if self._closed:
            raise trio.ClosedResourceError("the subscription was closed")
        buffer = self._buffer
        if buffer:
            self._handoff = 0
            if batch:
                events = list(buffer)
                buffer.clear()
                return events
            return buffer.popleft()
        if self._log is None:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def _take(self, batch: bool) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            taken = self._take_nowait(batch)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return taken
        while True:
            if self._waiter is not None:
                raise trio.BusyResourceError(
                    "another task is already receiving from this subscription"
                )
            self._waiter = trio.lowlevel.current_task()

            def abort(_: object) -> trio.lowlevel.Abort:
                self._waiter = None
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abort)
            # Woken by an event, the cut-off or a close. The wake-up was this call's
            # checkpoint: take without another one (a task that took the events in between
            # sends it back to waiting).
            try:
                return self._take_nowait(batch)
            except trio.WouldBlock:
                continue

    async def receive(self) -> Event:
        """The next event, waiting for one if needed.

        :raises trio.EndOfChannel: the subscription was cut off and its buffer is drained.
        :raises trio.ClosedResourceError: the subscription was closed.
        :raises trio.BusyResourceError: another task is already waiting in it.
        """
        event: Event = await self._take(False)
        return event

    def receive_nowait(self) -> Event:
        """The next event if one is buffered.

        :raises trio.WouldBlock: no event is buffered yet.
        :raises trio.EndOfChannel: the subscription was cut off and its buffer is drained.
        :raises trio.ClosedResourceError: the subscription was closed.
        """
        event: Event = self._take_nowait(False)
        return event

    async def receive_batch(self) -> list[Event]:
        """Every buffered event, oldest first, waiting for at least one if none is.

        A receiver woken by an event also gets every event appended before it runs again.

        :raises: as :meth:`receive`.
        """
        events: list[Event] = await self._take(True)
        return events

    def receive_batch_nowait(self) -> list[Event]:
        """Every buffered event, oldest first.

        :raises: as :meth:`receive_nowait` (:exc:`trio.WouldBlock` when none is buffered).
        """
        events: list[Event] = self._take_nowait(True)
        return events

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            event: Event = await self._take(False)
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        return event

    def close(self) -> None:
        """Stop receiving events and drop the buffered ones. Idempotent."""
        self._closed = True
        self._buffer.clear()
        self._handoff = 0
        self._detach()

    async def aclose(self) -> None:
        """Close the subscription (a checkpoint, like trio's ``aclose``)."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = (
            f"overflowed at {self._resume_from}"
            if self._resume_from is not None
            else ("open" if self._log is not None else "closed")
        )
        return f"<Subscription from {self._start} ({state}, max_buffer={self._max_buffer})>"


# --------------------------------------------------------------------------- spans


@attrs.frozen
class Span:
    """One agent's part of a run: its events and the spans of the agents under it.

    Built by :meth:`EventLog.tree` from agent paths; the root span has path ``""`` and holds
    the events of the system itself.
    """

    path: str
    """The agent's path, e.g. ``"lead/researcher"`` (``""`` for the root)."""
    events: tuple[Event, ...]
    """This agent's own events, in log order."""
    children: tuple[Span, ...]
    """Spans of the agents directly under this one, in order of their first event."""

    @property
    def name(self) -> str:
        """The last part of :attr:`path` (``""`` for the root)."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def start(self) -> float | None:
        """Earliest event time in this span and its descendants; ``None`` if none has events."""
        times = [event.time for span in self.walk() for event in span.events]
        return min(times) if times else None

    @property
    def end(self) -> float | None:
        """Latest event time in this span and its descendants; ``None`` if none has events."""
        times = [event.time for span in self.walk() for event in span.events]
        return max(times) if times else None

    def walk(self) -> Iterator[Span]:
        """This span and every descendant, depth first, parents before children."""
        stack: list[Span] = [self]
        while stack:
            span = stack.pop()
            yield span
            stack.extend(reversed(span.children))

    def find(self, path: str) -> Span | None:
        """The span with exactly this ``path`` in this tree, or ``None``."""
        for span in self.walk():
            if span.path == path:
                return span
        return None


class _Node:
    __slots__ = ("children", "events", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.events: list[Event] = []
        self.children: dict[str, _Node] = {}

    def freeze(self) -> Span:
        return Span(
            self.path,
            tuple(self.events),
            tuple(child.freeze() for child in self.children.values()),
        )


# --------------------------------------------------------------------------- the log


class EventLog:
    """Append-only log of typed events; an :data:`~trio_agents.EventSink`.

    :param events: events to start with (e.g. from :meth:`import_jsonl`).

    The rules (positions, the subscriber overflow rule, JSON Lines, spans) are in the
    :ref:`infrastructure rules <infra-rules>`; in short: appending is synchronous and never
    blocks, and a subscriber that falls behind by more than its buffer is cut off with the
    position to resume from, never silently gapped.
    """

    __slots__ = ("_events", "_listeners", "_subscribers")

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._events: list[Event] = []
        # Tuples, replaced when one is added or removed: appending (the hot path) iterates
        # them without a copy, and a subscription cut off meanwhile cannot skip another.
        self._subscribers: tuple[Subscription, ...] = ()
        self._listeners: tuple[Callable[[Event], None], ...] = ()
        for event in events:
            self.append(event)

    # ------------------------------------------------------------------ writing

    def append(self, event: Event) -> None:
        """Add ``event`` at the end and hand it to every subscriber (never blocks).

        :raises InvalidArgumentError: ``event`` is not an :class:`~trio_agents.Event`.
        """
        if not isinstance(event, Event):
            raise InvalidArgumentError(
                f"event must be a trio_agents.Event, got {type(event).__name__} {event!r}"
            )
        events = self._events
        events.append(event)
        if self._subscribers:
            # Delivery to each subscription, inlined: this is every event's path.
            for subscription in self._subscribers:
                buffer = subscription._buffer
                if len(buffer) - subscription._handoff < subscription._max_buffer:
                    buffer.append(event)
                    if subscription._waiter is not None:
                        subscription._handoff = 1
                        subscription._wake()
                else:
                    subscription._cut_off(len(events) - 1)
        if self._listeners:
            for listener in self._listeners:
                listener(event)

    __call__ = append

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener(event)`` synchronously for every event appended from now on.

        For sinks that must see each event as it happens and never fall behind, such as
        :class:`trio_agents.otel.OtelTracer`; a listener must not block. Returns a function
        that stops the listening (idempotent).

        :raises InvalidArgumentError: ``listener`` is not callable.
        """
        if not callable(listener):
            raise InvalidArgumentError(f"listener must be callable, got {listener!r}")
        self._listeners = (*self._listeners, listener)
        stopped = False

        def stop() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                listeners = list(self._listeners)
                listeners.remove(listener)  # this registration's entry (there may be others)
                self._listeners = tuple(listeners)

        return stop

    def subscribe(self, max_buffer: int = 100) -> Subscription:
        """A :class:`Subscription` to every event appended from now on.

        Overflow rule: appending never waits for a subscriber. When an event is appended while
        the subscription already holds ``max_buffer`` events, the subscription is cut off: it
        keeps those events, gets no more, and its ``async for`` ends once they are drained;
        :attr:`~Subscription.overflowed` is then true and :attr:`~Subscription.resume_from` is
        the position of the first missed event. Resume with
        ``log.events(since=subscription.resume_from)`` and a new ``log.subscribe()``, with no
        checkpoint in between, to lose and repeat nothing.

        :param max_buffer: events it may hold before it is cut off.
        :raises InvalidArgumentError: ``max_buffer`` is not an int >= 1.
        """
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise InvalidArgumentError(f"max_buffer must be an int >= 1, got {max_buffer!r}")
        subscription = Subscription(self, max_buffer, len(self._events))
        self._subscribers = (*self._subscribers, subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not subscription)

    @property
    def subscribers(self) -> int:
        """How many subscriptions currently receive events (a count)."""
        return len(self._subscribers)

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        """The events logged when iteration begins, oldest first."""
        return iter(tuple(self._events))

    def events(
        self,
        kind: KindFilter | None = None,
        *,
        agent: str | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> list[Event]:
        """The events that match every filter given, in log order.

        :param kind: an event kind (``"tool_started"``), an event class (matches its
            subclasses too), or a tuple of these (matches any).
        :param agent: an agent path: matches that agent and every agent under it
            (``"lead"`` matches ``"lead"`` and ``"lead/researcher"``, not ``"leader"``);
            ``""`` matches only the system's own events.
        :param since: first position to include (positions count from 0).
        :param until: first position to leave out.
        :raises InvalidArgumentError: an unknown kind, or a filter of the wrong type.
        """
        start = _check_position(since, "since")
        stop = _check_position(until, "until")
        matches_kind = self._kind_matcher(kind)
        if agent is not None and not isinstance(agent, str):
            raise InvalidArgumentError(
                f"agent must be None or an agent path (str), got {type(agent).__name__} {agent!r}"
            )
        selected = self._events[start:stop]
        if matches_kind is not None:
            selected = [event for event in selected if matches_kind(event)]
        if agent is not None:
            prefix = agent + "/"
            selected = [
                event
                for event in selected
                if event.agent == agent or (agent and event.agent.startswith(prefix))
            ]
        return selected

    def _kind_matcher(self, kind: KindFilter | None) -> Callable[[Event], bool] | None:
        if kind is None:
            return None
        items: tuple[object, ...] = kind if isinstance(kind, tuple) else (kind,)
        names: set[str] = set()
        classes: list[type[Event]] = []
        known: set[str] | None = None
        for item in items:
            if isinstance(item, str):
                if known is None:
                    known = {cls.kind for cls in event_classes()}
                    known.update(type(event).kind for event in self._events)
                if item not in known:
                    raise InvalidArgumentError(
                        f"unknown event kind {item!r} in kind; known kinds: "
                        f"{', '.join(sorted(known))}"
                    )
                names.add(item)
            elif isinstance(item, type) and issubclass(item, Event):
                classes.append(item)
            else:
                raise InvalidArgumentError(
                    "kind must be an event kind (str), an Event subclass, or a tuple of these; "
                    f"got {item!r}"
                )
        class_tuple = tuple(classes)
        return lambda event: type(event).kind in names or isinstance(event, class_tuple)

    def tree(self) -> Span:
        """The span tree of the events logged so far (see :class:`Span`)."""
        root = _Node("")
        nodes: dict[str, _Node] = {"": root}
        for event in self._events:
            node = nodes.get(event.agent)
            if node is None:
                parent = root
                path = ""
                for part in event.agent.split("/"):
                    path = f"{path}/{part}" if path else part
                    child = parent.children.get(path)
                    if child is None:
                        child = parent.children[path] = nodes[path] = _Node(path)
                    parent = child
                node = parent
            node.events.append(event)
        return root.freeze()

    # ------------------------------------------------------------------ JSON Lines

    def export_jsonl(self, target: str | os.PathLike[str] | IO[str]) -> int:
        """Write the events logged so far to ``target`` as JSON Lines; returns how many.

        :param target: a path (the file is created or replaced) or an open text file.
        """
        events = tuple(self._events)
        if isinstance(target, str | os.PathLike):
            with open(target, "w", encoding="utf-8") as file:
                return _write_jsonl(events, file)
        if not callable(getattr(target, "write", None)):
            raise InvalidArgumentError(
                f"target must be a path or a text file open for writing, got {target!r}"
            )
        return _write_jsonl(events, target)

    @classmethod
    def import_jsonl(cls, source: str | os.PathLike[str] | Iterable[str | bytes]) -> EventLog:
        """A new log holding the events of a JSON Lines file (as :meth:`export_jsonl` writes).

        Blank lines are skipped.

        :param source: a path, or an open file (any iterable of lines).
        :raises DeserializationError: a line is not an event; the message gives its number.
        """
        if isinstance(source, str | os.PathLike):
            with open(source, encoding="utf-8") as file:
                return cls(_read_jsonl(file))
        candidate: object = source
        if isinstance(candidate, bytes) or not isinstance(candidate, Iterable):
            raise InvalidArgumentError(
                f"source must be a path or a file open for reading, got {source!r}"
            )
        return cls(_read_jsonl(source))

    def __repr__(self) -> str:
        return f"<EventLog {len(self._events)} events, {len(self._subscribers)} subscribers>"


def _write_jsonl(events: Iterable[Event], file: IO[str]) -> int:
    count = 0
    for event in events:
        file.write(dumps_json(event) + "\n")
        count += 1
    return count


def _read_jsonl(lines: Iterable[Any]) -> list[Event]:
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(loads_json(line, Event))
        except DeserializationError as exc:
            raise DeserializationError(f"line {number}: {exc}") from exc
    return events
