"""Outside cancellation leaves every nursery the library opens as one bare ``trio.Cancelled``.

trio wraps whatever the tasks of a nursery raise in a :exc:`BaseExceptionGroup`
(``strict_exception_groups``), so a nursery under a cancelled scope raises
``BaseExceptionGroup([Cancelled])`` unless the nursery's own scope was the one cancelled. The
scope that *was* cancelled still catches that group (trio splits the ``Cancelled`` out of it),
but every layer in between sees a group: ``except trio.Cancelled`` misses it, a run reports
the wrong stop reason, and a caller that is not itself a cancel scope gets a group where the
cancellation contract (docs/cancellation.rst, rule 1) promises a bare ``trio.Cancelled``.

Every nursery of the library is therefore written as::

    try:
        async with trio.open_nursery() as nursery:
            ...
    except BaseExceptionGroup as group:
        reraise_cancelled(group)
        raise

which costs nothing unless something was raised. A group that holds anything besides
``Cancelled`` (a failure, ``KeyboardInterrupt``) is left as it is for the caller to handle.
"""

from __future__ import annotations

import trio

__all__ = ["only_cancelled", "reraise_cancelled"]


def only_cancelled(exc: BaseException) -> trio.Cancelled | None:
    """The first ``trio.Cancelled`` of ``exc`` when it is one, or a group (nested or not)
    holding nothing else; otherwise None."""
    if isinstance(exc, trio.Cancelled):
        return exc
    if not isinstance(exc, BaseExceptionGroup):
        return None
    first: trio.Cancelled | None = None
    for inner in exc.exceptions:
        found = only_cancelled(inner)
        if found is None:
            return None
        if first is None:
            first = found
    return first


def reraise_cancelled(group: BaseExceptionGroup[BaseException]) -> None:
    """Raise the bare ``trio.Cancelled`` inside ``group`` when it holds nothing else; return
    otherwise (the caller then re-raises the group).

    Meant for the ``except BaseExceptionGroup`` clause around a nursery. The ``Cancelled``
    keeps its own ``__context__``: it does not point back at the group that held it.
    """
    cancelled = only_cancelled(group)
    if cancelled is None:
        return
    context = cancelled.__context__
    try:
        raise cancelled
    finally:
        cancelled.__context__ = context
        del cancelled, context
