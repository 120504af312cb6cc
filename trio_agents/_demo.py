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

Nothing printed depends on the wall clock or on the scheduler's order: the scenarios drive their
agents one request at a time, and every delay shown comes from the seeded ``ctx.rng``.
"""

from __future__ import annotations

import functools
import json
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Literal, TextIO

import attrs
import trio

from ._agent import Agent, RetryPolicy
from ._errors import (
    AgentError,
    InvalidArgumentError,
    ModelOverloaded,
    ModelThrottled,
    ToolError,
)
from ._events import Event, ModelResponded, RetryScheduled, TurnFinished
from ._messages import AssistantMessage, ToolResultMessage, Usage
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
from ._supervision import Backoff, DefaultSupervisor
from ._tools import tool
from .testing._models import FunctionModel, ScriptedModel, text, tool_call

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
    ctx.say(f"usage of the tree: {_usage_text(total)}")


# --------------------------------------------------------------------------- running


SCENARIOS: list[tuple[str, Scenario]] = [
    ("tools", tools_scenario),
    ("supervision", supervision_scenario),
]
"""The scenarios :func:`run_demo` runs, in order: (name, scenario)."""

_SCRIPTED: dict[str, Callable[[], Model]] = {"assistant": _tools_script}
_SCRIPTED.update({name: functools.partial(_answering, name) for name in _TREE})


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
) -> None:
    """Run the demo scenarios one after the other.

    :param model_factory: the models; :func:`scripted_models` when ``None``.
    :param out: where to print; standard output when ``None``.
    :param seed: seeds every scenario's randomness; the same seed prints the same output.
    :param verbose: print transcripts and lifecycle events, not only the results.
    :param scenarios: which scenarios to run; :data:`SCENARIOS` when ``None``.
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
            model=factory, out=stream, rng=random.Random(f"{seed}/{name}"), verbose=verbose
        )
        await scenario(ctx)
