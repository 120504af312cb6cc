"""Named bounded channels between the agents of one tree: :class:`Mailbox`."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import trio

from ._errors import InvalidArgumentError, UsageError
from ._events import (
    EventSink,
    MailboxClosed,
    MailboxOverflow,
    MailboxReceived,
    MailboxSent,
)

__all__ = ["Mailbox", "MailboxStatistics"]


@attrs.frozen
class MailboxStatistics:
    """A snapshot of one named mailbox, from :meth:`Mailbox.statistics`."""

    name: str
    """The mailbox's name."""
    queued: int
    """Messages waiting to be received."""
    capacity: int
    """Messages it holds before senders block."""
    closed: bool
    """Whether the mailbox set has been closed."""


@attrs.define(eq=False)
class _Box:
    send: trio.MemorySendChannel[object]
    recv: trio.MemoryReceiveChannel[object]


class Mailbox:
    """Named bounded channels between the agents of one tree.

    A mailbox belongs to a *name*, not to an agent instance: an agent that is restarted (a new
    instance from its factory) finds the same mailbox, with the messages that were waiting in
    it. :class:`~trio_agents.AgentOrchestrator` opens one for each registered agent when given
    ``mailbox=``, and closes them all when its ``async with`` block ends.

    Every mailbox holds ``capacity`` messages; past that :meth:`send` blocks (backpressure) and
    :meth:`send_nowait` raises :class:`trio.WouldBlock`. After :meth:`close`, sending raises
    :class:`trio.ClosedResourceError` (also in a task blocked in :meth:`send`) and receiving
    drains the waiting messages, then raises :class:`trio.EndOfChannel`.

    With an ``event_sink`` (e.g. the tree's :class:`~trio_agents.EventLog`), every message put
    in a mailbox is a :class:`~trio_agents.MailboxSent` event and every message taken out a
    :class:`~trio_agents.MailboxReceived` (``agent`` is the mailbox's name); a send that finds
    its mailbox full is first a :class:`~trio_agents.MailboxOverflow` (``waited=True`` for
    :meth:`send` and :meth:`broadcast`, which then wait; ``False`` for :meth:`send_nowait`,
    which raises), and :meth:`close` emits a :class:`~trio_agents.MailboxClosed` per mailbox.

    :param capacity: messages each mailbox holds before senders block (``>= 0``).
    :param names: mailboxes to open at once (see :meth:`open`).
    :param event_sink: receives the mailbox events (none without it).
    """

    def __init__(
        self, capacity: int = 16, names: Iterable[str] = (), *, event_sink: EventSink | None = None
    ) -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise InvalidArgumentError(f"Mailbox capacity must be an int >= 0, got {capacity!r}")
        if event_sink is not None and not callable(event_sink):
            raise InvalidArgumentError(
                f"event_sink must be a callable taking an Event, or None, got {event_sink!r}"
            )
        self.event_sink = event_sink
        """Where the mailbox events go (``None``: nowhere); may be set later."""
        self._capacity = capacity
        self._boxes: dict[str, _Box] = {}
        self._closed = False
        for name in names:
            self.open(name)

    @property
    def capacity(self) -> int:
        """Messages each mailbox holds before senders block."""
        return self._capacity

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def open(self, name: str) -> None:
        """Make sure a mailbox called ``name`` exists; opening an existing one keeps its messages.

        :raises InvalidArgumentError: ``name`` is not a non-empty str.
        :raises UsageError: the mailboxes are closed.
        """
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"mailbox name must be a non-empty str, got {name!r}")
        if self._closed:
            raise UsageError(f"cannot open mailbox {name!r}: the mailboxes are closed")
        if name not in self._boxes:
            send, recv = trio.open_memory_channel[object](self._capacity)
            self._boxes[name] = _Box(send, recv)

    def names(self) -> list[str]:
        """The mailboxes' names, in the order they were opened."""
        return list(self._boxes)

    def __contains__(self, name: object) -> bool:
        return name in self._boxes

    def _box(self, name: str) -> _Box:
        box = self._boxes.get(name)
        if box is None:
            raise InvalidArgumentError(
                f"no mailbox named {name!r} (mailboxes: {sorted(self._boxes) or 'none'})"
            )
        return box

    async def send(self, name: str, message: object) -> None:
        """Put ``message`` in mailbox ``name``; waits while it is full.

        :raises InvalidArgumentError: there is no mailbox called ``name``.
        :raises trio.ClosedResourceError: the mailboxes are (or get) closed.
        """
        box = self._box(name)
        sink = self.event_sink
        if sink is None:
            await box.send.send(message)
            return
        # trio's own send, with an event between finding the mailbox full and waiting.
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            box.send.send_nowait(message)
        except trio.WouldBlock:
            sink(
                MailboxOverflow(
                    time=trio.current_time(), agent=name, capacity=self._capacity, waited=True
                )
            )
            await box.send.send(message)
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
        sink(MailboxSent(time=trio.current_time(), agent=name, queued=self._queued(box)))

    def send_nowait(self, name: str, message: object) -> None:
        """Like :meth:`send`, but raises :class:`trio.WouldBlock` when the mailbox is full."""
        box = self._box(name)
        sink = self.event_sink
        if sink is None:
            box.send.send_nowait(message)
            return
        try:
            box.send.send_nowait(message)
        except trio.WouldBlock:
            sink(
                MailboxOverflow(
                    time=trio.current_time(), agent=name, capacity=self._capacity, waited=False
                )
            )
            raise
        sink(MailboxSent(time=trio.current_time(), agent=name, queued=self._queued(box)))

    @staticmethod
    def _queued(box: _Box) -> int:
        return box.recv.statistics().current_buffer_used

    async def receive(self, name: str) -> object:
        """The next message of mailbox ``name``, waiting for one if it is empty.

        :raises InvalidArgumentError: there is no mailbox called ``name``.
        :raises trio.EndOfChannel: the mailboxes are closed and this one is drained.
        """
        box = self._box(name)
        message = await box.recv.receive()
        if self.event_sink is not None:
            self.event_sink(
                MailboxReceived(time=trio.current_time(), agent=name, queued=self._queued(box))
            )
        return message

    def receive_nowait(self, name: str) -> object:
        """Like :meth:`receive`, but raises :class:`trio.WouldBlock` when it is empty."""
        box = self._box(name)
        message = box.recv.receive_nowait()
        if self.event_sink is not None:
            self.event_sink(
                MailboxReceived(time=trio.current_time(), agent=name, queued=self._queued(box))
            )
        return message

    async def broadcast(self, message: object, *, exclude: Iterable[str] = ()) -> list[str]:
        """Send ``message`` to every mailbox except those in ``exclude``, one after the other.

        Waits on each full mailbox in turn (backpressure). Returns the names it was sent to.

        :raises InvalidArgumentError: a name in ``exclude`` is not a mailbox.
        """
        skip = set(exclude)
        for name in skip:
            self._box(name)
        targets = [name for name in self._boxes if name not in skip]
        for name in targets:
            await self.send(name, message)
        return targets

    def statistics(self, name: str) -> MailboxStatistics:
        """A snapshot of mailbox ``name``."""
        box = self._box(name)
        return MailboxStatistics(
            name=name,
            queued=box.recv.statistics().current_buffer_used,
            capacity=self._capacity,
            closed=self._closed,
        )

    def close(self) -> None:
        """Close every mailbox (idempotent): senders fail, receivers drain then end."""
        first = not self._closed
        self._closed = True
        for name, box in self._boxes.items():
            box.send.close()
            if first and self.event_sink is not None:
                self.event_sink(
                    MailboxClosed(time=trio.current_time(), agent=name, queued=self._queued(box))
                )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Mailbox{state} names={self.names()} capacity={self._capacity}>"
