"""A read-only view of the first messages of an append-only list.

An agent's history only grows during a run, so each :class:`~trio_agents.ModelRequest`
can share it instead of copying it: the request holds the agent's list and the length it
had when the request was made. Building a request is then O(1), and a run of ``n``
requests costs O(n) instead of O(n²) copying. The view reads as an immutable sequence and
compares equal to the tuple of the same messages.

The agent keeps the list append-only while views of it exist: clearing the history
replaces the list rather than emptying it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import overload

from ._messages import Message


class HistoryView(Sequence[Message]):
    """The first ``length`` messages of an append-only list, without copying them."""

    __slots__ = ("_items", "_length")

    def __init__(self, items: list[Message], length: int) -> None:
        if not 0 <= length <= len(items):
            raise ValueError(f"length must be between 0 and {len(items)}, got {length}")
        self._items = items
        self._length = length

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Message, ...]: ...

    def __getitem__(self, index: int | slice) -> Message | tuple[Message, ...]:
        if isinstance(index, slice):
            return tuple(self._items[i] for i in range(*index.indices(self._length)))
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError(f"history index {index} out of range for {self._length} messages")
        return self._items[position]

    def __iter__(self) -> Iterator[Message]:
        return itertools.islice(self._items, self._length)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, (tuple, HistoryView)):
            return NotImplemented
        return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


def request_messages(value: Iterable[Message]) -> Sequence[Message]:
    """The converter of :attr:`ModelRequest.messages`: a view is kept, anything else copied."""
    if type(value) is HistoryView:
        return value
    return tuple(value)
