"""The demo behind ``python -m trio_agents demo``: scenarios that run offline on scripted models.

Structure, so that more scenarios can be appended:

* A scenario is ``async def scenario(ctx: DemoContext) -> None``; it builds its agents with
  ``ctx.model(name)``, prints with ``ctx.say`` (always) and ``ctx.detail`` (not with
  ``--quiet``), and draws randomness only from ``ctx.rng``.
* :data:`SCENARIOS` lists them in the order :func:`run_demo` runs them.
* The models come from a :data:`ModelFactory` (agent name → :class:`~trio_agents.Model`).
  :func:`scripted_models` is the default: deterministic scripted models shipped in the package,
  no network. Another factory (a real provider) can be passed to :func:`run_demo` instead; the
  faults the scenarios inject wrap whatever model the factory returns.

Nothing printed depends on the wall clock or on the scheduler's order. Scenarios 1 and 2 drive
their agents one request at a time, and every delay they show comes from the seeded ``ctx.rng``.
Scenario 3 runs specialists concurrently: it prints what it reads from the event log in call
order (never in the order the scheduler happened to log concurrent events), and the times it
shows are trio's clock, from the scenario's start, driven by the scripted models' simulated
latencies. ``python -m trio_agents demo`` runs the scripted models on a virtual clock
(:class:`trio.testing.MockClock` with ``autojump_threshold=0``), so those times are exact and
cost no real time; on the real clock they vary by the scheduler's overhead.
"""

from __future__ import annotations

import functools
import json
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Literal, TextIO

import attrs
import trio

from ._agent import Agent, AgentSpec, RetryPolicy
from ._delegation import (
    DelegationFinished,
    DelegationRecord,
    DelegationStarted,
    Delegator,
    ModelRunner,
)
from ._errors import (
    AgentError,
    InvalidArgumentError,
    ModelOverloaded,
    ModelThrottled,
    ToolError,
)
from ._eventlog import EventLog, Span
from ._events import (
    Event,
    EventSink,
    ModelResponded,
    RetryScheduled,
    ToolStarted,
    TurnFinished,
)
from ._infra import SharedInfra
from ._limits import Budget, UsageLimits
from ._messages import (
    AssistantMessage,
    TextBlock,
    ToolResultBlock,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from ._models import Model, ModelRequest, StreamEvent
from ._orchestrator import (
    AgentEnded,
    AgentFailed,
    AgentHandle,
    AgentOrchestrator,
    AgentRestarted,
    AgentSpawned,
    FailureEscalated,
    RequestReplied,
    SupervisorDecided,
)
from ._policy import PolicyDenied
from ._ratelimit import RateLimiter
from ._supervision import Backoff, DefaultSupervisor
from ._tools import Tool, tool
from .patterns import Handoff, Merge, Step, StepFinished, run_parallel, transfer_to_agent
from .testing._models import FunctionModel, ScriptedModel, ScriptStep, text, tool_call

ModelFactory = Callable[[str], Model]
"""Builds the model for the agent called ``name``; called once per agent incarnation."""


# --------------------------------------------------------------------------- output and context


@attrs.define(eq=False)
class DemoContext:
    """What a scenario gets: where its models come from, where to print, its randomness."""

    model: ModelFactory
    """Builds the model for an agent name."""
    out: TextIO
    """Where to print."""
    rng: random.Random
    """The scenario's own seeded randomness (retry jitter, backoff jitter)."""
    verbose: bool = True
    """Print transcripts and events (false with ``--quiet``)."""
    events: EventSink | None = None
    """Also gets every event of every agent (``--live`` draws the tree from them)."""

    def observe(self, event: Event) -> None:
        """Hand ``event`` to :attr:`events`, if set."""
        if self.events is not None:
            self.events(event)

    def say(self, line: str = "") -> None:
        """Print a line, also in quiet mode."""
        print(line, file=self.out)

    def detail(self, line: str = "") -> None:
        """Print a line unless quiet."""
        if self.verbose:
            print(line, file=self.out)


Scenario = Callable[[DemoContext], Awaitable[None]]


def _short(value: str, limit: int = 72) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _usage_text(usage: Usage) -> str:
    requests = "model request" if usage.requests == 1 else "model requests"
    return (
        f"{usage.requests} {requests}, {usage.input_tokens} input + "
        f"{usage.output_tokens} output = {usage.total_tokens} tokens"
    )


def _call_text(name: str, arguments: dict[str, object]) -> str:
    args = ", ".join(f"{key}={json.dumps(value)}" for key, value in arguments.items())
    return f"{name}({args})"


# --------------------------------------------------------------------------- fault injection


@attrs.define(eq=False)
class _Fault:
    """The first ``remaining`` model requests raise a fresh ``make()``; shared by every
    incarnation of an agent, so "the first request" means the agent's first, not the model's."""

    make: Callable[[], AgentError]
    remaining: int = 1

    async def trip(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.remaining > 0:
            self.remaining -= 1
            raise self.make()


class _Faulty:
    """A model that raises the fault's error before delegating to ``inner``."""

    def __init__(self, inner: Model, fault: _Fault) -> None:
        self._inner = inner
        self._fault = fault

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    async def request(self, request: ModelRequest) -> AssistantMessage:
        await self._fault.trip()
        return await self._inner.request(request)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        await self._fault.trip()
        async with self._inner.stream(request) as events:
            yield events


# --------------------------------------------------------------------------- scenario 1: tools

_WHEELS = {"bicycle": 2, "car": 4, "tricycle": 3}
_TOOLS_QUESTION = "How many wheels do 12 bicycles and 3 tricycles have together?"


@tool
async def calculate(operation: Literal["add", "multiply"], a: int, b: int) -> int:
    """Add or multiply two integers.

    Args:
        operation: ``add`` or ``multiply``.
        a: the first operand.
        b: the second operand.
    """
    return a + b if operation == "add" else a * b


@tool
async def lookup(key: str) -> int:
    """Look up how many wheels a vehicle has.

    Args:
        key: the vehicle, singular (e.g. ``bicycle``).
    """
    try:
        return _WHEELS[key]
    except KeyError:
        raise ToolError(f"no entry {key!r}; known keys: {', '.join(sorted(_WHEELS))}") from None


def _tools_script() -> ScriptedModel:
    # The model misspells a key once, reads the error result, and recovers.
    return ScriptedModel(
        [
            tool_call("lookup", {"key": "tricycles"}) + tool_call("lookup", {"key": "bicycle"}),
            tool_call("lookup", {"key": "tricycle"}),
            tool_call("calculate", {"operation": "multiply", "a": 12, "b": 2})
            + tool_call("calculate", {"operation": "multiply", "a": 3, "b": 3}),
            tool_call("calculate", {"operation": "add", "a": 24, "b": 9}),
            text("12 bicycles and 3 tricycles have 33 wheels: 12 x 2 = 24, plus 3 x 3 = 9."),
        ],
        model_id="scripted:assistant",
    )


async def tools_scenario(ctx: DemoContext) -> None:
    """One agent, two tools, a throttled first model call, a tool error it recovers from."""
    ctx.say("== 1. An agent with tools ==")
    fault = _Fault(lambda: ModelThrottled("rate limited (injected fault)", retry_after=0.01))
    agent: Agent | None = None

    def show(event: Event) -> None:
        ctx.observe(event)
        if isinstance(event, RetryScheduled):
            ctx.detail(
                f"  ! model call failed ({event.error.type}: {event.error.message}); "
                f"retry {event.attempt} in {event.delay:.3f} s"
            )
        elif isinstance(event, ModelResponded):
            message = event.message
            if message.text:
                ctx.detail(f"assistant: {message.text}")
            for call in message.tool_calls:
                ctx.detail(f"assistant -> {_call_text(call.name, call.arguments)}  [{call.id}]")
        elif isinstance(event, TurnFinished) and agent is not None:
            last = agent.messages[-1]
            if isinstance(last, ToolResultMessage):  # the turn's results, in call order
                for result in last.results:
                    shown = f"error: {result.content}" if result.is_error else result.content
                    ctx.detail(f"tool {result.tool_name} [{result.tool_call_id}] -> {shown}")

    agent = Agent(
        _Faulty(ctx.model("assistant"), fault),
        name="assistant",
        instructions="Answer with the tools; look facts up, never guess them.",
        tools=[calculate, lookup],
        retry=RetryPolicy(max_attempts=3, initial_delay=0.02, max_delay=0.05),
        rng=ctx.rng,
        event_sink=show,
    )
    ctx.detail(f"user: {_TOOLS_QUESTION}")
    result = await agent.run(_TOOLS_QUESTION)
    ctx.say(f"answer: {result.final_text}")
    ctx.say(
        f"usage: {_usage_text(result.usage)} "
        f"({result.turns} turns, {result.tool_call_count} tool calls)"
    )


# ------------------------------------------------------------------- scenario 2: supervision

# name -> (parent, instructions, question); registration and spawn order is this order.
_TREE: dict[str, tuple[str | None, str, str]] = {
    "lead": (None, "You write short reports from your researchers' summaries.", ""),
    "research-a": ("lead", "You research supervision and summarise your workers' findings.", ""),
    "worker-a1": (
        "research-a",
        "You answer one question about trio_agents in one sentence.",
        "What happens to an agent that fails with a retryable error?",
    ),
    "worker-a2": (
        "research-a",
        "You answer one question about trio_agents in one sentence.",
        "What happens past the restart limit?",
    ),
    "research-b": ("lead", "You research cancellation and summarise your workers' findings.", ""),
    "worker-b1": (
        "research-b",
        "You answer one question about trio_agents in one sentence.",
        "What stops a model call that is in progress?",
    ),
    "worker-b2": (
        "research-b",
        "You answer one question about trio_agents in one sentence.",
        "What does a waiting request get when its agent is stopped?",
    ),
}
_FLAKY = "worker-b1"

_ANSWERS = {
    "lead": (
        "Report: trio_agents keeps a tree of agents under control by supervision (failed "
        "agents restart from their factory, repeated failures escalate to the parent) and by "
        "cancel scopes (cancelling a scope stops everything under it, and every waiting "
        "request still gets one reply)."
    ),
    "research-a": (
        "Supervision: retryable failures restart the agent after a backoff; past the limit "
        "the failure escalates to the parent."
    ),
    "research-b": (
        "Cancellation: cancelling the owning scope stops model calls at once, and waiting "
        "requests get AgentStopped or AgentCancelled."
    ),
    "worker-a1": "Its supervisor restarts it from its factory after a backoff; its queue is kept.",
    "worker-a2": "The failure escalates: the parent's own supervisor decides about the parent.",
    "worker-b1": "Cancelling the scope that owns the agent; trio cancels the call at once.",
    "worker-b2": "Exactly one reply: AgentStopped or AgentCancelled, never a hang.",
}


def _answering(name: str) -> FunctionModel:
    answer = _ANSWERS.get(name, f"{name} has nothing to add.")
    return FunctionModel(lambda _request: answer, model_id=f"scripted:{name}")


def _show_lifecycle(ctx: DemoContext, event: Event) -> None:
    ctx.observe(event)
    where = event.agent
    if isinstance(event, AgentSpawned):
        ctx.detail(f"  event: spawned    {where} (incarnation {event.incarnation})")
    elif isinstance(event, RequestReplied) and event.error is not None:
        ctx.detail(
            f"  event: replied    {where} request #{event.request} with "
            f"{event.error.type}: {event.error.message}"
        )
    elif isinstance(event, AgentFailed):
        ctx.detail(f"  event: failed     {where}: {event.error.type}: {event.error.message}")
    elif isinstance(event, SupervisorDecided):
        ctx.detail(
            f"  event: decided    {where}: {event.action}; {event.reason}; "
            f"backoff {event.delay:.3f} s"
        )
    elif isinstance(event, AgentRestarted):
        ctx.detail(
            f"  event: restarted  {where} (incarnation {event.incarnation}, "
            f"restarts so far: {event.restarts})"
        )
    elif isinstance(event, FailureEscalated):
        ctx.detail(f"  event: escalated  {where}: {event.error.type}: {event.error.message}")
    elif isinstance(event, AgentEnded):
        why = f" ({event.error.type}: {event.error.message})" if event.error is not None else ""
        ctx.detail(f"  event: ended      {where}: {event.status}{why}")
    # Other events (the agents' own loop events, requests received and answered) are left out.


async def _ask(ctx: DemoContext, handle: AgentHandle, question: str) -> str:
    ctx.detail(f"{handle.path} <- {_short(question)}")
    try:
        result = await handle.send_message(question)
    except ModelOverloaded as exc:
        # The reply to this request is the agent's error. The agent's supervisor restarts it;
        # the same queue serves the new incarnation, so asking again simply waits for it.
        first_error = f"{type(exc).__name__}: {exc}"
        result = await handle.send_message(question)
        ctx.say(
            f"{handle.path} answered after a restart (first attempt: {first_error}; "
            f"now incarnation {handle.statistics().incarnation})"
        )
    ctx.detail(f"{handle.path} -> {result.final_text}")
    return result.final_text


async def supervision_scenario(ctx: DemoContext) -> None:
    """Seven agents in three levels; one worker fails once and is restarted by its supervisor."""
    ctx.say("== 2. A supervision tree ==")
    fault = _Fault(lambda: ModelOverloaded("the provider is overloaded (injected fault)"))
    orchestrator = AgentOrchestrator(
        supervisor=DefaultSupervisor(max_restarts=3),
        backoff=Backoff(initial=0.05, max_delay=0.05),
        event_sink=lambda event: _show_lifecycle(ctx, event),
        rng=ctx.rng,
    )

    def factory(name: str, instructions: str) -> Callable[[], Agent]:
        def build() -> Agent:
            model = ctx.model(name)
            if name == _FLAKY:
                model = _Faulty(model, fault)
            # One attempt per model call: the failure reaches the supervisor.
            return Agent(
                model, name=name, instructions=instructions, retry=RetryPolicy(max_attempts=1)
            )

        return build

    for name, (parent, instructions, _) in _TREE.items():
        if parent is None:
            orchestrator.add_agent(name, factory(name, instructions))
        else:
            orchestrator.add_child(name, parent, factory(name, instructions))
    ctx.detail("tree: " + _tree_text(orchestrator, "lead"))

    handles: dict[str, AgentHandle] = {}
    async with orchestrator.open() as system:
        for name in _TREE:
            handles[name] = await system.spawn(name)
        summaries: list[str] = []
        for researcher in orchestrator.children_of("lead") or []:
            findings = [
                await _ask(ctx, handles[worker], _TREE[worker][2])
                for worker in orchestrator.children_of(researcher) or []
            ]
            summaries.append(
                await _ask(
                    ctx, handles[researcher], "Summarise these findings: " + " ".join(findings)
                )
            )
        await _ask(ctx, handles["lead"], "Write the report from: " + " ".join(summaries))
        ctx.detail("closing the lead gracefully (its children close first, youngest first)")
        final = await handles["lead"].aclose()
        ctx.detail(
            f"lead closed: {handles['lead'].status.value} "
            f"(its final result counts all it served: {_usage_text(final.usage)})"
        )
    _print_statistics(ctx, list(handles.values()))


def _tree_text(orchestrator: AgentOrchestrator, name: str) -> str:
    children = orchestrator.children_of(name) or []
    if not children:
        return name
    return f"{name}[{', '.join(_tree_text(orchestrator, child) for child in children)}]"


def _print_statistics(ctx: DemoContext, handles: Sequence[AgentHandle]) -> None:
    width = max(len(h.path) for h in handles)
    ctx.say(
        f"{'agent':<{width}}  {'status':<9}  {'requests':>8}  {'served':>6}  "
        f"{'restarts':>8}  {'incarnation':>11}  {'tokens':>6}"
    )
    total = Usage()
    for handle in handles:
        stats = handle.statistics()
        total = total + stats.usage
        ctx.say(
            f"{stats.path:<{width}}  {stats.status.value:<9}  {stats.requests_received:>8}  "
            f"{stats.requests_served:>6}  {stats.restarts:>8}  {stats.incarnation:>11}  "
            f"{stats.usage.total_tokens:>6}"
        )
    ctx.say(
        "(requests: the requests the agent took from its queue, over all its incarnations; "
        "served: those it answered with a result, not with its error)"
    )
    ctx.say(f"usage of the tree: {_usage_text(total)}")


# ------------------------------------------------------------------- scenario 3: delegation

_BRIEF_TASK = (
    "Write a two-sentence brief for the city council on the bike-share fleet: how many "
    "bicycles and stations it runs, and what the new order of 40 cargo tricycles adds."
)
_RESEARCH_SUBTASK = (
    "Find how many bicycles and stations the city bike-share runs today, from its records."
)
_ANALYSIS_SUBTASK = "A new order adds 40 cargo tricycles. How many wheels do they add?"
_CHECK_SUBTASK = "Check one figure: does the 2024 annual report list 80 stations?"

# Simulated model latency of the scripted team, in seconds on trio's clock (``main`` runs the
# scripted demo on a virtual clock, so these cost no real time there).
_LATENCY = {"editor": 0.01, "researcher": 0.02, "analyst": 0.02, "writer": 0.02}
_TEAM_MODEL_ID = "scripted:team"

_SOURCES = {
    "bicycles": "2024 annual report, p. 2: 1,200 bicycles in service",
    "stations": "2024 annual report, p. 3: 80 stations",
}


@tool
async def search(query: str) -> str:
    """Search the city's documents and return the best passage.

    Args:
        query: what to look for.
    """
    found = [passage for word, passage in _SOURCES.items() if word in query.lower()]
    if not found:
        raise ToolError(f"nothing found for {query!r}; try a query about bicycles or stations")
    return "; ".join(found)


def _task_text(request: ModelRequest) -> str:
    first = request.messages[0] if request.messages else None
    if not isinstance(first, UserMessage):
        return ""
    return " ".join(block.text for block in first.content if isinstance(block, TextBlock))


def _tool_results(request: ModelRequest) -> list[ToolResultBlock]:
    return [
        result
        for message in request.messages
        if isinstance(message, ToolResultMessage)
        for result in message.results
    ]


def _editor_script(request: ModelRequest) -> ScriptStep:
    """The lead: fan out, recover from a failed specialist, hand the findings to the writer."""
    delay = _LATENCY["editor"]
    last = request.messages[-1]
    if not isinstance(last, ToolResultMessage):
        return tool_call(
            "delegate", {"specialist": "researcher", "subtask": _RESEARCH_SUBTASK}, delay=delay
        ) + tool_call("delegate", {"specialist": "analyst", "subtask": _ANALYSIS_SUBTASK})
    asked = request.messages[-2]
    assert isinstance(asked, AssistantMessage)
    who = {call.id: str(call.arguments.get("specialist")) for call in asked.tool_calls}
    by_name = {who.get(result.tool_call_id, ""): result for result in last.results}
    writer = by_name.get("writer")
    if writer is None:
        findings = " ".join(result.content for result in last.results)
        subtask = f"Write a two-sentence brief for the city council from these findings: {findings}"
        return tool_call("delegate", {"specialist": "writer", "subtask": subtask}, delay=delay)
    if writer.is_error:
        subtask = str(asked.tool_calls[0].arguments.get("subtask", ""))
        return text("The writer could not answer; asking again.", delay=delay) + tool_call(
            "delegate", {"specialist": "writer", "subtask": subtask}
        )
    return text(f"Brief for the council: {writer.content}", delay=delay)


def _researcher_script(request: ModelRequest) -> ScriptStep:
    """Searches; its first query asks for internal data, which the policy denies."""
    delay = _LATENCY["researcher"]
    checking = _task_text(request).startswith("Check")
    results = _tool_results(request)
    if not results:
        query = "2024 annual report stations" if checking else "internal fleet dashboard bicycles"
        return tool_call("search", {"query": query}, delay=delay)
    if results[-1].is_error:
        return tool_call("search", {"query": "2024 annual report bicycles stations"}, delay=delay)
    if checking:
        return text("Confirmed: the 2024 annual report lists 80 stations (p. 3).", delay=delay)
    return text(
        "The bike-share runs 1,200 bicycles at 80 stations (2024 annual report, pp. 2-3).",
        delay=delay,
    )


def _analyst_script(request: ModelRequest) -> ScriptStep:
    delay = _LATENCY["analyst"]
    results = _tool_results(request)
    if not results:
        return tool_call("calculate", {"operation": "multiply", "a": 40, "b": 3}, delay=delay)
    return text(f"40 cargo tricycles add 40 x 3 = {results[-1].content} wheels.", delay=delay)


def _writer_script(request: ModelRequest) -> ScriptStep:
    """Asks the researcher to check one figure (a nested delegation), then writes."""
    delay = _LATENCY["writer"]
    results = _tool_results(request)
    if not results:
        return tool_call(
            "delegate", {"specialist": "researcher", "subtask": _CHECK_SUBTASK}, delay=delay
        )
    return text(
        "The city bike-share runs 1,200 bicycles at 80 stations (figures checked against the "
        "2024 annual report). The new order of 40 cargo tricycles adds 120 wheels to the fleet.",
        delay=delay,
    )


_TEAM_SCRIPTS: dict[str, Callable[[ModelRequest], ScriptStep]] = {
    "editor": _editor_script,
    "researcher": _researcher_script,
    "analyst": _analyst_script,
    "writer": _writer_script,
}


def _team_member(name: str) -> FunctionModel:
    return FunctionModel(_TEAM_SCRIPTS[name], model_id=_TEAM_MODEL_ID)


@attrs.define(eq=False)
class _Meter:
    """Counts the model calls that went through the rate limiter, and how many at once."""

    calls: int = 0
    failed: int = 0
    in_flight: int = 0
    peak: int = 0

    @contextmanager
    def measure(self) -> Iterator[None]:
        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            yield
        except Exception:
            self.failed += 1
            raise
        finally:
            self.in_flight -= 1


class _Metered:
    """A model whose calls ``meter`` counts; the rate limiter wraps it, so it counts what the
    limiter let through."""

    def __init__(self, inner: Model, meter: _Meter) -> None:
        self._inner = inner
        self._meter = meter

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    async def request(self, request: ModelRequest) -> AssistantMessage:
        with self._meter.measure():
            return await self._inner.request(request)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        with self._meter.measure():
            async with self._inner.stream(request) as events:
                yield events


@attrs.frozen(kw_only=True)
class _Interval:
    """One delegation as the event log shows it: positions and times of its two events."""

    path: str
    subtask: str
    started_at: int
    started: float
    finished_at: int
    finished: float


def _intervals(log: EventLog) -> list[_Interval]:
    """Each DelegationStarted paired with its DelegationFinished (same path and subtask)."""
    waiting: dict[tuple[str, str], list[tuple[int, float]]] = {}
    found: list[_Interval] = []
    for position, event in enumerate(log):
        if isinstance(event, DelegationStarted):
            waiting.setdefault((event.agent, event.subtask), []).append((position, event.time))
        elif isinstance(event, DelegationFinished):
            queue = waiting.get((event.agent, event.subtask))
            if queue:
                at, time = queue.pop(0)
                found.append(
                    _Interval(
                        path=event.agent,
                        subtask=event.subtask,
                        started_at=at,
                        started=time,
                        finished_at=position,
                        finished=event.time,
                    )
                )
    return found


def _in_call_order(
    records: Sequence[DelegationRecord], intervals: Sequence[_Interval]
) -> list[_Interval]:
    pool = list(intervals)
    ordered: list[_Interval] = []
    for record in records:
        for interval in pool:
            if (interval.path, interval.subtask) == (record.path, record.subtask):
                pool.remove(interval)
                ordered.append(interval)
                break
    return ordered


def _overlapping(intervals: Sequence[_Interval]) -> tuple[_Interval, _Interval] | None:
    """The first two delegations of one caller (in the order given) that both started before
    either finished, by their positions in the log. (A nested delegation always overlaps
    its caller's: that is not parallelism.)"""
    for index, first in enumerate(intervals):
        caller = first.path.rpartition("/")[0]
        for second in intervals[index + 1 :]:
            if second.path.rpartition("/")[0] != caller:
                continue
            if max(first.started_at, second.started_at) < min(
                first.finished_at, second.finished_at
            ):
                return first, second
    return None


# The kinds in the order an agent's life produces them; others follow in order of appearance.
_KIND_ORDER = (
    "delegation_started",
    "run_started",
    "turn_started",
    "model_requested",
    "retry_scheduled",
    "model_responded",
    "tool_started",
    "policy_denied",
    "tool_finished",
    "turn_finished",
    "run_finished",
    "delegation_finished",
)


def _kinds_lines(events: Sequence[Event], width: int = 84) -> list[str]:
    """``kind count`` for each kind of ``events``, comma-separated, in lines of ``width``."""
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    kinds = [kind for kind in _KIND_ORDER if kind in counts]
    kinds += [kind for kind in counts if kind not in _KIND_ORDER]
    lines: list[str] = []
    for item in (f"{kind} {counts[kind]}" for kind in kinds):
        if lines and len(lines[-1]) + len(item) + 2 <= width:
            lines[-1] += f" {item}"
        else:
            lines.append(item)
        lines[-1] += ","
    if lines:
        lines[-1] = lines[-1][:-1]
    return lines


def _print_tree(
    ctx: DemoContext, root: Span, records: Sequence[DelegationRecord], start: float
) -> None:
    # Siblings in the order of their first delegation (call order), so that which parallel
    # specialist the scheduler happened to log first does not change the output.
    first_call: dict[str, int] = {}
    for index, record in enumerate(records):
        first_call.setdefault(record.path, index)

    def show(span: Span, depth: int) -> None:
        window = ""
        if span.start is not None and span.end is not None:
            window = f"t={span.start - start:.3f}-{span.end - start:.3f}"
        name = "  " * depth + (span.name or "(system)")
        ctx.say(f"  {name:<16} {window:<15} {len(span.events):>3} events")
        for line in _kinds_lines(span.events):
            ctx.say(f"  {'  ' * depth}    {line}")
        for child in sorted(span.children, key=lambda c: (first_call.get(c.path, -1), c.path)):
            show(child, depth + 1)

    if root.events:
        show(root, 0)
    else:
        for child in root.children:
            show(child, 0)


_TEAM = (
    AgentSpec(
        name="editor",
        instructions="You lead a small team: delegate subtasks, then assemble the answers.",
        model="editor",
    ),
    AgentSpec(
        name="researcher",
        instructions="You find facts with the search tool, from public sources only.",
        tools=("search",),
        model="researcher",
    ),
    AgentSpec(
        name="analyst",
        instructions="You work out numbers with the calculate tool.",
        tools=("calculate",),
        model="analyst",
    ),
    AgentSpec(
        name="writer",
        instructions="You write short briefs; you may ask a specialist to check a figure.",
        tools=("delegate",),
        model="writer",
    ),
)
_FAILS_ONCE = "writer"
_LIMITS = UsageLimits(requests=40, total_tokens=20_000, agents=8)


def _show_transcript(ctx: DemoContext, who: str, messages: Sequence[object]) -> None:
    for message in messages:
        if isinstance(message, AssistantMessage):
            if message.text:
                ctx.detail(f"{who}: {_short(message.text, 110)}")
            for call in message.tool_calls:
                shown = _short(_call_text(call.name, call.arguments), 100)
                ctx.detail(f"{who} -> {shown}  [{call.id}]")
        elif isinstance(message, ToolResultMessage):
            for result in message.results:
                content = _short(result.content, 90)
                content = f"error: {content}" if result.is_error else content
                ctx.detail(f"tool {result.tool_name} [{result.tool_call_id}] -> {content}")


async def delegation_scenario(ctx: DemoContext) -> None:
    """A lead delegates to three specialists, two of them in parallel; one fails once and is
    asked again; the writer delegates once more; the event log shows all of it as a tree."""
    ctx.say("== 3. A lead delegating to specialists in parallel ==")
    start = trio.current_time()  # times are shown from the start of the scenario
    fault = _Fault(lambda: ModelOverloaded("the provider is overloaded (injected fault)"))
    meter = _Meter()
    models: dict[str, Model] = {}
    for spec in _TEAM:
        model = ctx.model(spec.name)
        if spec.name == _FAILS_ONCE:
            model = _Faulty(model, fault)
        models[spec.name] = _Metered(model, meter)
    # One limiter for every model id the team uses: with a real provider that is one id.
    limiter = RateLimiter(max_concurrent=2)
    budget = Budget(_LIMITS)
    infra = SharedInfra(
        budget=budget, rate_limits={model.model_id: limiter for model in models.values()}
    )
    infra.policies.deny_parameter("no-internal-data", "search", "query", r"(?i)\binternal\b")
    if ctx.events is not None:
        infra.log.listen(ctx.events)
    lead, *specialists = _TEAM
    delegator = Delegator(lead, specialists, failure_policy="isolate", max_depth=2, rng=ctx.rng)
    # A spec's ``model`` picks its model: here the key is the agent's name, so the demo's
    # model factory (agent name -> model) plugs in as it is. One attempt per model call: a
    # failure reaches the delegator.
    runner = ModelRunner(
        models, tools=[search, calculate], retry=RetryPolicy(max_attempts=1), rng=ctx.rng
    )
    ctx.detail(
        "team: editor -> researcher, analyst, writer (the writer may delegate too; max depth 2)"
    )
    ctx.detail(
        "shared infra: event log; policy check 'no-internal-data' on search queries; budget of "
        f"{_LIMITS.requests} requests, {_LIMITS.total_tokens} tokens, {_LIMITS.agents} agents; "
        f"RateLimiter(max_concurrent={limiter.max_concurrent}) for model id "
        f"{', '.join(sorted(infra.rate_limits))}"
    )
    ctx.detail(f"user: {_BRIEF_TASK}")
    result = await delegator.run(_BRIEF_TASK, runner=runner, infra=infra)
    _show_transcript(ctx, lead.name, result.result.messages[1:])
    ctx.say(f"answer: {result.final_answer}")

    records = result.delegations
    log = infra.log
    intervals = _in_call_order(records, _intervals(log))
    ctx.detail("delegation timeline (events from the log; seconds on trio's clock):")
    timeline: list[tuple[float, int, int, str]] = []
    for rank, interval in enumerate(intervals):
        timeline.append((interval.started - start, rank, 0, f"started   {interval.path}"))
        timeline.append((interval.finished - start, rank, 1, f"finished  {interval.path}"))
    for time, _, _, what in sorted(timeline):
        ctx.detail(f"  t={time:.3f}  {what}")

    pair = _overlapping(intervals)
    if pair is None:
        ctx.say("parallel: no two delegations of one caller overlapped")
    else:
        one, two = pair
        first_done, last_done = sorted(pair, key=lambda interval: interval.finished_at)
        ctx.say(
            f"parallel: {one.path} and {two.path} both started (t={one.started - start:.3f}, "
            f"t={two.started - start:.3f}) before either finished ({first_done.path} at "
            f"t={first_done.finished - start:.3f}, {last_done.path} at "
            f"t={last_done.finished - start:.3f})"
        )
        together = max(one.finished, two.finished) - min(one.started, two.started)
        apart = (one.finished - one.started) + (two.finished - two.started)
        ctx.say(
            f"          from the first start to the last end: {together:.3f} s; one after the "
            f"other they would take {apart:.3f} s (the sum of their durations)"
        )

    calls = {
        (event.agent, event.call.id): event.call
        for event in log.events(ToolStarted)
        if isinstance(event, ToolStarted)
    }
    for denied in log.events(PolicyDenied):
        assert isinstance(denied, PolicyDenied)
        call = calls.get((denied.agent, denied.call_id))
        what = _call_text(call.name, call.arguments) if call is not None else denied.tool
        ctx.say(f"denied: {denied.agent} {what} by policy check {denied.check!r}")

    for index, record in enumerate(records):
        if record.success:
            continue
        again = next(
            (
                later
                for later in records[index + 1 :]
                if (later.path, later.subtask) == (record.path, record.subtask)
            ),
            None,
        )
        if again is not None and again.success:
            ctx.say(
                f"recovered: {record.path} failed ({record.error}); its caller read the error "
                "result and delegated again, which succeeded"
            )
        else:
            ctx.say(f"failed: {record.path} ({record.error})")

    ctx.say("delegations (depth-first, in call order):")
    ctx.say(
        f"  {'depth':<5}  {'specialist':<14}  {'ok':<3}  {'duration':>9}  {'requests':>8}  "
        f"{'tokens':>6}  subtask"
    )
    for record in records:
        name = "  " * (record.depth - 1) + record.specialist
        ctx.say(
            f"  {record.depth:<5}  {name:<14}  {'yes' if record.success else 'no':<3}  "
            f"{record.duration:>7.3f} s  {record.usage.requests:>8}  "
            f"{record.usage.total_tokens:>6}  {_short(record.subtask, 50)}"
        )
    ctx.say(
        "event tree (infra.log.tree(): one span per agent path, its time window with the "
        "spans under it, its own events by kind):"
    )
    _print_tree(ctx, log.tree(), records, start)
    failed = f" ({meter.failed} failed)" if meter.failed else ""
    ctx.say(
        f"rate limit: {meter.calls} model calls{failed} went through "
        f"RateLimiter(max_concurrent={limiter.max_concurrent}), at most {meter.peak} at once"
    )
    if meter.failed:
        ctx.say(
            f"  (a failed call reports no usage: the usage below counts the "
            f"{meter.calls - meter.failed} that answered)"
        )
    ctx.say(f"total usage: {_usage_text(result.total_usage)}")
    ctx.say(
        f"budget: {budget.usage.requests} of {_LIMITS.requests} requests, "
        f"{budget.usage.total_tokens} of {_LIMITS.total_tokens} tokens, "
        f"{budget.agents_started} of {_LIMITS.agents} agents started"
    )


# --------------------------------------------------------------------- scenario 4: patterns

_PATTERN_SCRIPTS: dict[str, Callable[[], Model]] = {
    "triage": lambda: ScriptedModel(
        [
            tool_call(
                "transfer_to_agent",
                {
                    "target": "billing",
                    "reason": "a payment question",
                    "summary": "charged twice for order 7",
                },
            )
        ]
    ),
    "billing": lambda: ScriptedModel(["The duplicate charge for order 7 is refunded."]),
    "careful": lambda: ScriptedModel([text("Refunds take 3-5 business days.", delay=0.5)]),
    "quick": lambda: ScriptedModel([text("Refunds arrive within a week.", delay=0.05)]),
}


async def patterns_scenario(ctx: DemoContext) -> None:
    """A handoff between two agents, then two agents racing: the first answer wins."""
    ctx.say("== 4. Coordination patterns: a handoff and a race ==")

    def member(name: str, *tools: Tool) -> Callable[[], Agent]:
        return lambda: Agent(ctx.model(name), name=name, tools=tools, rng=ctx.rng)

    handoff = Handoff({"triage": member("triage", transfer_to_agent), "billing": member("billing")})
    question = "I was charged twice for order 7."
    ctx.detail(f"user: {question}")
    outcome = await handoff.run("triage", question)
    first = outcome.results[0].transfer
    if first is not None:
        ctx.detail(f"  triage -> billing ({first.reason}: {first.message})")
    ctx.say(f"handoff: {' -> '.join(outcome.chain)}; answer: {outcome.output}")

    start = trio.current_time()
    lost: list[str] = []

    def show(event: Event) -> None:
        if isinstance(event, StepFinished) and event.cancelled:
            lost.append(event.agent)

    race = await run_parallel(
        [Step("careful", member("careful")), Step("quick", member("quick"))],
        "When does my refund arrive?",
        merge=Merge.FIRST,
        event_sink=show,
    )
    ctx.say(
        f"race: {race.outputs[0].step} answered first at t={trio.current_time() - start:.2f} s: "
        f"{race.output}"
    )
    ctx.say(f"cancelled: {', '.join(lost)}")


# --------------------------------------------------------------------------- running


SCENARIOS: list[tuple[str, Scenario]] = [
    ("tools", tools_scenario),
    ("supervision", supervision_scenario),
    ("delegation", delegation_scenario),
    ("patterns", patterns_scenario),
]
"""The scenarios :func:`run_demo` runs, in order: (name, scenario)."""

_SCRIPTED: dict[str, Callable[[], Model]] = {"assistant": _tools_script}
_SCRIPTED.update({name: functools.partial(_answering, name) for name in _TREE})
_SCRIPTED.update({name: functools.partial(_team_member, name) for name in _TEAM_SCRIPTS})
_SCRIPTED.update(_PATTERN_SCRIPTS)


def scripted_models() -> ModelFactory:
    """The default models: scripted, deterministic, offline (one fresh model per call)."""

    def build(name: str) -> Model:
        try:
            make = _SCRIPTED[name]
        except KeyError:
            raise InvalidArgumentError(
                f"the scripted demo models have no script for agent name={name!r}; "
                f"known names: {', '.join(sorted(_SCRIPTED))}"
            ) from None
        return make()

    return build


async def run_demo(
    model_factory: ModelFactory | None = None,
    out: TextIO | None = None,
    *,
    seed: int = 0,
    verbose: bool = True,
    scenarios: Sequence[tuple[str, Scenario]] | None = None,
    events: EventSink | None = None,
) -> None:
    """Run the demo scenarios one after the other.

    :param model_factory: the models; :func:`scripted_models` when ``None``.
    :param out: where to print; standard output when ``None``.
    :param seed: seeds every scenario's randomness; the same seed prints the same output
        (on a virtual clock such as ``trio.testing.MockClock(autojump_threshold=0)``, as
        ``python -m trio_agents demo`` uses: scenario 3 prints times from trio's clock).
    :param verbose: print transcripts and lifecycle events, not only the results.
    :param scenarios: which scenarios to run; :data:`SCENARIOS` when ``None``.
    :param events: also gets every event of every agent (e.g. an :class:`EventLog` that
        :func:`trio_agents.live.follow` draws).
    """
    factory = model_factory if model_factory is not None else scripted_models()
    stream = out if out is not None else sys.stdout
    chosen = SCENARIOS if scenarios is None else scenarios
    for index, (name, scenario) in enumerate(chosen):
        if index:
            print(file=stream)
        # Each scenario has its own stream of random numbers, so adding a scenario does not
        # change what the others print.
        ctx = DemoContext(
            model=factory,
            out=stream,
            rng=random.Random(f"{seed}/{name}"),
            verbose=verbose,
            events=events,
        )
        await scenario(ctx)
