"""Implementation of :mod:`trio_agents.live` (imports rich: use it from there)."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import NoReturn

import attrs

try:
    from rich.console import Console
    from rich.live import Live
    from rich.progress import track
    from rich.tree import Tree
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError("trio_agents.live needs rich: pip install 'trio-agents[live]'") from _exc

import trio

from ._delegation import DelegationFinished, DelegationStarted
from ._errors import InvalidArgumentError
from ._eventlog import EventLog
from ._events import Event, ModelResponded, RunFinished, RunStarted
from ._orchestrator import (
    AgentEnded,
    AgentFailed,
    AgentRestarted,
    AgentSpawned,
    AgentSuspended,
    RequestReceived,
    RequestReplied,
)

_STYLES = {
    "serving": "green",
    "running": "green",
    "busy": "bold green",
    "completed": "blue",
    "done": "blue",
    "failed": "bold red",
    "restarting": "yellow",
    "suspended": "yellow",
    "cancelled": "magenta",
}


@attrs.frozen(kw_only=True)
class AgentRow:
    """What the view shows for one agent."""

    path: str
    """The agent's path in the tree."""
    status: str = "new"
    """``serving``, ``busy``, ``running``, ``failed``, ``restarting``, ``suspended``,
    ``completed``, ``done`` or ``cancelled``."""
    requests: int = 0
    """Requests received."""
    errors: int = 0
    """Requests answered with an error."""
    restarts: int = 0
    """Restarts so far."""
    tokens: int = 0
    """Input plus output tokens of its model calls."""
    cost: float = 0.0
    """Cost of its runs, in USD (0 when the models are unpriced)."""

    def text(self) -> str:
        """The row as one line of plain text."""
        name = self.path.rsplit("/", 1)[-1]
        return (
            f"{name} [{self.status}] requests={self.requests} errors={self.errors} "
            f"restarts={self.restarts} tokens={self.tokens} cost=${self.cost:.4f}"
        )


class TreeView:
    """The state of an agent tree, folded from its events (an :data:`~trio_agents.EventSink`).

    :param events: events to fold first (e.g. a replayed log).
    """

    def __init__(self, events: Iterable[Event] = ()) -> None:
        self._rows: dict[str, AgentRow] = {}
        self.events = 0
        """Events folded so far."""
        for event in events:
            self(event)

    @property
    def rows(self) -> list[AgentRow]:
        """One row per agent path, in order of first appearance."""
        return list(self._rows.values())

    def __call__(self, event: Event) -> None:
        """Fold ``event`` into the rows."""
        if not isinstance(event, Event):
            raise InvalidArgumentError(
                f"event must be a trio_agents.Event, got {type(event).__name__} {event!r}"
            )
        self.events += 1
        if not event.agent:
            return
        row = self._rows.get(event.agent)
        if row is None:
            parent = event.agent.rpartition("/")[0]
            if parent and parent not in self._rows:  # parents first, even if silent so far
                self._rows[parent] = AgentRow(path=parent)
            row = AgentRow(path=event.agent)
        self._rows[event.agent] = self._fold(row, event)

    @staticmethod
    def _fold(row: AgentRow, event: Event) -> AgentRow:
        evolve = attrs.evolve
        if isinstance(event, AgentSpawned):
            return evolve(row, status="serving")
        if isinstance(event, RequestReceived):
            return evolve(row, status="busy", requests=row.requests + 1)
        if isinstance(event, RequestReplied):
            errors = row.errors + (event.error is not None)
            status = "serving" if row.status == "busy" else row.status
            return evolve(row, status=status, errors=errors)
        if isinstance(event, AgentFailed):
            return evolve(row, status="failed")
        if isinstance(event, AgentRestarted):
            return evolve(row, status="restarting", restarts=event.restarts)
        if isinstance(event, AgentSuspended):
            return evolve(row, status="suspended")
        if isinstance(event, AgentEnded):
            return evolve(row, status=event.status)
        if isinstance(event, ModelResponded):
            usage = event.message.usage
            return evolve(row, tokens=row.tokens + usage.input_tokens + usage.output_tokens)
        if isinstance(event, RunFinished):
            cost = row.cost + event.result.cost.total
            if row.status in ("running", "new"):
                failed = event.result.error is not None
                return evolve(row, cost=cost, status="failed" if failed else "done")
            return evolve(row, cost=cost)
        if isinstance(event, RunStarted | DelegationStarted) and row.status in (
            "new",
            "done",
            "failed",
        ):
            return evolve(row, status="running")
        if isinstance(event, DelegationFinished):
            status = "cancelled" if event.cancelled else ("done" if event.success else "failed")
            return evolve(row, status=status)
        return row

    def render(self, title: str = "agents") -> Tree:
        """The rows as a ``rich`` tree, children under their parent."""
        tree = Tree(f"{title} ({self.events} events)")
        nodes: dict[str, Tree] = {}
        for row in self._rows.values():
            parent = nodes.get(row.path.rpartition("/")[0], tree)
            style = _STYLES.get(row.status, "")
            nodes[row.path] = parent.add(
                f"[{style}]{_escape(row.text())}[/]" if style else _escape(row.text())
            )
        return tree

    def text(self) -> str:
        """The tree as plain text (what :meth:`render` shows, without colours)."""
        console = Console(width=200, color_system=None, record=True, file=io.StringIO())
        console.print(self.render())
        return console.export_text()


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


PROGRESS_AFTER = 10_000
"""Replaying a log of more events than this shows a progress bar while it folds them."""


def replay(log: EventLog, *, console: Console | None = None) -> TreeView:
    """Fold every event of ``log`` (e.g. from :meth:`~trio_agents.EventLog.import_jsonl`).

    Shows a transient progress bar on ``console`` while folding more than
    :data:`PROGRESS_AFTER` events.
    """
    events = list(log)
    view = TreeView()
    for event in track(
        events,
        description="replaying",
        console=console,
        transient=True,
        disable=len(events) <= PROGRESS_AFTER,
    ):
        view(event)
    return view


async def follow(
    log: EventLog,
    *,
    console: Console | None = None,
    refresh_per_second: float = 8.0,
    view: TreeView | None = None,
) -> NoReturn:
    """Show the tree of ``log``'s events live until cancelled (or until the log falls behind).

    Folds every event already in the log, then every event appended; redraws at most
    ``refresh_per_second`` times a second. Outside cancellation leaves as a bare
    :exc:`trio.Cancelled` (after drawing the last state).

    :param console: where to draw (default: a new ``rich`` console on stdout).
    :param view: a :class:`TreeView` to fold into (to read its state afterwards).
    :raises InvalidArgumentError: ``refresh_per_second`` is not a number > 0.
    """
    if isinstance(refresh_per_second, bool) or not (
        isinstance(refresh_per_second, int | float) and refresh_per_second > 0
    ):
        raise InvalidArgumentError(
            f"refresh_per_second must be a number > 0, got {refresh_per_second!r}"
        )
    view = view if view is not None else TreeView()
    # No checkpoint between the catch-up and the subscription: nothing lost, nothing repeated.
    for event in log:
        view(event)
    subscription = log.subscribe(max_buffer=10_000)
    try:
        with Live(view.render(), console=console, auto_refresh=False) as live:
            try:
                while True:
                    try:
                        for event in await subscription.receive_batch():
                            view(event)
                    except trio.EndOfChannel:
                        # Cut off (it fell behind): catch up from the log, subscribe again.
                        resume = subscription.resume_from or 0
                        subscription.close()
                        for event in log.events(since=resume):
                            view(event)
                        subscription = log.subscribe(max_buffer=10_000)
                    live.update(view.render(), refresh=True)
                    await trio.sleep(1 / refresh_per_second)
            finally:
                live.update(view.render(), refresh=True)
    finally:
        subscription.close()
