"""OpenTelemetry export: span trees follow supervision and delegation, names follow semconv."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Hashable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import StatusCode

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentSpec,
    AgentStatus,
    AuthenticationError,
    Backoff,
    DefaultSupervisor,
    Delegator,
    Event,
    EventLog,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    ModelRequested,
    ModelRunner,
    RetryPolicy,
    RunStarted,
    TextBlock,
    ToolResultMessage,
    UserMessage,
    tool,
)
from trio_agents.otel import ATTRIBUTES, METRICS, SEMCONV_VERSION, OtelTracer
from trio_agents.testing import FunctionModel, ScriptedModel, fail, hang, text, tool_call
from trio_agents.testing._models import FunctionResult


@attrs.frozen
class Exported:
    tracer: OtelTracer
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


def exporting(**kwargs: object) -> Exported:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    tracer = OtelTracer(
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        **kwargs,  # type: ignore[arg-type]
    )
    return Exported(tracer, spans, reader)


def tree_of(spans: list[ReadableSpan]) -> set[tuple[str, str]]:
    """(parent name, child name) for every parented span; ``""`` parents the roots."""
    by_id = {span.context.span_id: span for span in spans if span.context is not None}
    edges: set[tuple[str, str]] = set()
    for span in spans:
        parent = by_id.get(span.parent.span_id) if span.parent is not None else None
        edges.add((parent.name if parent is not None else "", span.name))
    return edges


def events_of(span: ReadableSpan) -> list[str]:
    return [event.name for event in span.events]


# --------------------------------------------------------------------------- delegation


def _team(**roles: Callable[[ModelRequest], FunctionResult]) -> FunctionModel:
    return FunctionModel(lambda request: roles[request.system or ""](request), model_id="team")


def _delegating(name: str, subtask: str) -> Callable[[ModelRequest], FunctionResult]:
    def respond(request: ModelRequest) -> FunctionResult:
        last = request.messages[-1]
        if isinstance(last, UserMessage):
            return tool_call("delegate", {"specialist": name, "subtask": subtask})
        assert isinstance(last, ToolResultMessage)
        return " | ".join(r.content for r in last.results)

    return respond


def _answering(request: ModelRequest) -> FunctionResult:
    first = request.messages[0]
    assert isinstance(first, UserMessage) and isinstance(first.content[0], TextBlock)
    return text(f"{request.system} did {first.content[0].text}")


def _spec(name: str, *, tools: tuple[str, ...] = ()) -> AgentSpec:
    return AgentSpec(name=name, instructions=name, tools=tools)


async def test_three_level_delegation_spans_nest_under_the_delegate_tool_calls() -> None:
    out = exporting()
    model = _team(lead=_delegating("a", "plan"), a=_delegating("c", "check"), c=_answering)
    pool = [_spec("a", tools=("delegate",)), _spec("c")]
    result = await Delegator(_spec("lead"), pool).run(
        "go", runner=ModelRunner(model), event_sink=out.tracer
    )
    assert result.result.final_text == "c did check"
    spans = out.finished()
    assert tree_of(spans) == {
        ("", "invoke_agent lead"),
        ("invoke_agent lead", "chat team"),
        ("invoke_agent lead", "execute_tool delegate"),
        ("execute_tool delegate", "delegate a"),
        ("delegate a", "invoke_agent a"),
        ("invoke_agent a", "chat team"),
        ("invoke_agent a", "execute_tool delegate"),
        ("execute_tool delegate", "delegate c"),
        ("delegate c", "invoke_agent c"),
        ("invoke_agent c", "chat team"),
    }
    # one trace for the whole delegation tree
    assert len({span.context.trace_id for span in spans if span.context is not None}) == 1
    depth = {
        s.name: s.attributes["trio_agents.delegation.depth"]
        for s in spans
        if s.name.startswith("delegate ") and s.attributes is not None
    }
    assert depth == {"delegate a": 1, "delegate c": 2}


async def test_delegation_retry_and_cancellation_show_in_the_span_tree(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """lead -> a -> c (c fails once and is run again), lead -> b (hangs, then cancelled)."""
    out = exporting()
    c_runs = [0]

    def lead(request: ModelRequest) -> FunctionResult:
        return tool_call("delegate", {"specialist": "a", "subtask": "plan"}) + tool_call(
            "delegate", {"specialist": "b", "subtask": "wait"}
        )

    def c(request: ModelRequest) -> FunctionResult:
        c_runs[0] += 1
        return fail(ModelOverloaded("busy")) if c_runs[0] == 1 else _answering(request)

    model = _team(lead=lead, a=_delegating("c", "check"), b=lambda request: hang(), c=c)
    pool = [_spec("a", tools=("delegate",)), _spec("b"), _spec("c")]
    delegator = Delegator(_spec("lead"), pool, failure_policy="retry", max_retries=1)
    runner = ModelRunner(model, retry=RetryPolicy(max_attempts=1))
    with trio.move_on_after(1000) as scope:
        await delegator.run("go", runner=runner, event_sink=out.tracer)
    assert scope.cancelled_caught  # cancelled from outside while b hangs
    spans = out.finished()
    edges = tree_of(spans)
    assert {
        ("invoke_agent lead", "execute_tool delegate"),
        ("execute_tool delegate", "delegate a"),
        ("execute_tool delegate", "delegate b"),
        ("delegate a", "invoke_agent a"),
        ("execute_tool delegate", "delegate c"),
        ("delegate c", "invoke_agent c"),
        ("delegate b", "invoke_agent b"),
    } <= edges
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)
    first_c, second_c = sorted(by_name["invoke_agent c"], key=lambda s: s.start_time or 0)
    assert first_c.status.status_code is StatusCode.ERROR
    assert second_c.status.status_code is StatusCode.UNSET
    (delegate_c,) = by_name["delegate c"]
    assert all(
        s.parent is not None and s.parent.span_id == delegate_c.context.span_id
        for s in (first_c, second_c)
    )
    (delegate_b,) = by_name["delegate b"]
    assert delegate_b.status.status_code is StatusCode.ERROR
    assert delegate_b.attributes is not None
    assert delegate_b.attributes["trio_agents.delegation.cancelled"] is True
    # every span was ended: nothing left open in the tracer
    assert not (out.tracer._runs or out.tracer._models or out.tracer._tools)
    assert not out.tracer._delegations


# --------------------------------------------------------------------------- supervision


def _echo(name: str) -> Callable[[], Agent]:
    def respond(request: ModelRequest) -> FunctionResult:
        last = request.messages[-1]
        assert isinstance(last, UserMessage) and isinstance(last.content[0], TextBlock)
        word = last.content[0].text
        if word == "fail":
            raise ModelOverloaded(f"{name} overloaded")
        if word == "hang":
            return hang()
        return f"{name}:{word}"

    return lambda: Agent(
        FunctionModel(respond, model_id="echo"), name=name, retry=RetryPolicy(max_attempts=1)
    )


async def test_supervision_tree_restart_and_cancel_are_spans_and_span_events() -> None:
    out = exporting()
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=out.tracer
    )
    orch.add_agent("lead", _echo("lead"))
    orch.add_child("mid", "lead", _echo("mid"))
    orch.add_child("leaf", "mid", _echo("leaf"))
    async with orch.open() as system:
        lead = await system.spawn("lead")
        await system.spawn("mid")
        leaf = await system.spawn("leaf")
        with pytest.raises(ModelOverloaded):
            await leaf.send_message("fail")
        assert (await leaf.send_message("hi")).final_text == "leaf:hi"
        leaf.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        lead.cancel("user abort")
        assert await lead.wait_done() is AgentStatus.CANCELLED
    spans = out.finished()
    edges = tree_of(spans)
    assert ("", "agent lead") in edges
    assert ("agent lead", "agent mid") in edges
    assert ("agent mid", "agent leaf") in edges
    assert ("agent leaf", "invoke_agent leaf") in edges
    assert ("invoke_agent leaf", "chat echo") in edges
    leaves = [s for s in spans if s.name == "agent leaf"]
    assert len(leaves) == 2  # one span per incarnation
    first, second = sorted(leaves, key=lambda s: s.start_time or 0)
    assert events_of(first) == ["agent_failed", "supervisor.restart", "agent_restarted"]
    decided = first.events[1]
    assert decided.attributes is not None
    assert decided.attributes["trio_agents.supervisor.action"] == "restart"
    assert decided.attributes["trio_agents.supervisor.reason"]
    assert first.status.status_code is StatusCode.ERROR
    assert first.attributes is not None
    assert first.attributes["error.type"] == "ModelOverloaded"
    assert second.attributes is not None
    assert second.attributes["trio_agents.agent.incarnation"] == 2
    assert events_of(second)[-1] == "agent_cancelled"
    assert [events_of(s)[-1] for s in spans if s.name in ("agent lead", "agent mid")] == [
        "agent_cancelled",
        "agent_cancelled",
    ]
    # the run the cancellation cut off is ended, as an error
    cut = [s for s in spans if s.name == "invoke_agent leaf"][-1]
    assert cut.status.status_code is StatusCode.ERROR
    assert out.tracer._agents == {} and out.tracer._runs == {} and out.tracer._models == {}


async def test_outside_cancellation_is_a_bare_cancelled_and_spans_end() -> None:
    out = exporting()
    log = EventLog()
    stop = log.listen(out.tracer)
    orch = AgentOrchestrator(backoff=Backoff.none(), event_sink=log)
    orch.add_agent("lead", _echo("lead"))
    with trio.CancelScope() as scope:
        async with orch.open() as system:
            lead = await system.spawn("lead")
            lead.send_message_nowait("hang")
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.sleep_forever()
    assert scope.cancelled_caught  # a bare trio.Cancelled reached the scope
    stop()
    names = [s.name for s in out.finished()]
    assert "agent lead" in names and "invoke_agent lead" in names


# --------------------------------------------------------------------------- conventions


def test_attribute_and_metric_names_are_the_pinned_conventions() -> None:
    spec_names = {
        value
        for module in (gen_ai_attributes, error_attributes)
        for name, value in vars(module).items()
        if name.isupper() and isinstance(value, str)
    }
    assert set(ATTRIBUTES.values()) <= spec_names
    metric_names = {
        v for k, v in vars(gen_ai_metrics).items() if k.isupper() and isinstance(v, str)
    }
    assert set(METRICS.values()) <= metric_names
    assert SEMCONV_VERSION == "1.44.0"


@tool
async def fetch_page(url: str, api_key: str) -> str:
    """Fetch a page with a key."""
    return f"page {url}"


SECRET = "sk-test-0123456789abcdefSECRET"  # in the environment, quoted by an error
TOOL_SECRET = "tool-secret-9876543210"  # only in a tool argument named like a secret


async def test_every_name_recorded_is_pinned_and_no_secret_is_exported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = exporting(capture_content=True)
    model = ScriptedModel(
        [
            tool_call("fetch_page", {"url": "https://example.com", "api_key": TOOL_SECRET}),
            text("done"),
            fail(AuthenticationError(f"Incorrect API key provided: {SECRET}")),
        ],
        model_id="scripted-1",
    )
    agent = Agent(model, name="fetcher", tools=[fetch_page], event_sink=out.tracer)
    assert (await agent.run("go")).final_text == "done"
    with pytest.raises(AuthenticationError):
        await agent.run("again")
    spans = out.finished()
    assert {s.name for s in spans} == {
        "invoke_agent fetcher",
        "chat scripted-1",
        "execute_tool fetch_page",
    }
    # content was captured (so the scrubbing was exercised) ...
    tool_span = next(s for s in spans if s.name == "execute_tool fetch_page")
    assert tool_span.attributes is not None
    assert "[REDACTED]" in str(tool_span.attributes["gen_ai.tool.call.arguments"])
    assert tool_span.attributes["gen_ai.tool.call.result"] == "page https://example.com"
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert {s.name for s in failed} == {"invoke_agent fetcher", "chat scripted-1"}
    assert all(s.status.description and "[REDACTED]" in s.status.description for s in failed)
    # ... and the key is nowhere in anything exported
    metrics = out.metrics.get_metrics_data()
    assert metrics is not None
    dumped = "\n".join(span.to_json() for span in spans) + metrics.to_json()
    assert "https://example.com" in dumped
    assert SECRET not in dumped
    assert TOOL_SECRET not in dumped
    # every gen_ai.* / error.* attribute recorded is in the pinned table
    recorded = {
        key
        for span in spans
        for key in {
            **(span.attributes or {}),
            **{k: v for e in span.events for k, v in (e.attributes or {}).items()},
        }
        if key.startswith(("gen_ai.", "error."))
    }
    assert recorded <= set(ATTRIBUTES.values())
    assert {
        "gen_ai.operation.name",
        "gen_ai.request.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.agent.name",
        "gen_ai.tool.name",
        "gen_ai.tool.call.id",
        "error.type",
    } <= recorded


async def test_content_is_not_recorded_unless_asked() -> None:
    out = exporting()
    model = ScriptedModel(
        [tool_call("fetch_page", {"url": "https://example.com", "api_key": "k"}), text("done")]
    )
    agent = Agent(model, name="fetcher", tools=[fetch_page], event_sink=out.tracer)
    await agent.run("go")
    dumped = "\n".join(span.to_json() for span in out.finished())
    assert "example.com" not in dumped and "done" not in dumped.replace('"done"', "")
    keys = {k for s in out.finished() for k in (s.attributes or {})}
    assert not keys & {
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "gen_ai.output.messages",
    }


async def test_token_usage_and_duration_metrics(autojump_clock: trio.testing.MockClock) -> None:
    out = exporting()
    agent = Agent(
        ScriptedModel([text("hello", delay=2.0)], model_id="m1"), name="a", event_sink=out.tracer
    )
    result = await agent.run("hi")
    data = out.metrics.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {
        "input": result.usage.input_tokens,
        "output": result.usage.output_tokens,
    }
    for point in points["gen_ai.client.token.usage"]:
        assert point.attributes["gen_ai.operation.name"] == "chat"
        assert point.attributes["gen_ai.request.model"] == "m1"
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.sum == pytest.approx(2.0)  # trio's (virtual) clock, not the wall clock
    chat = next(s for s in out.finished() if s.name == "chat m1")
    assert chat.end_time is not None and chat.start_time is not None
    assert chat.end_time - chat.start_time == pytest.approx(2e9)


# --------------------------------------------------------------------------- the generic hook


@attrs.frozen(kw_only=True)
class BranchStarted(Event):
    branch: str


@attrs.frozen(kw_only=True)
class BranchFinished(Event):
    branch: str
    error: str | None = None


def _branch_key(event: Event) -> Hashable:
    assert isinstance(event, BranchStarted | BranchFinished)
    return (event.agent, event.branch)


async def test_registered_event_pairs_become_spans_under_the_agent() -> None:
    out = exporting()
    out.tracer.register_span(
        BranchStarted,
        BranchFinished,
        key=_branch_key,
        name=lambda e: f"branch {e.branch}",  # type: ignore[attr-defined]
        attributes=lambda e: {"trio_agents.branch": e.branch},  # type: ignore[attr-defined]
        failed=lambda e: e.error,  # type: ignore[attr-defined]
    )
    sink = out.tracer
    orch = AgentOrchestrator(event_sink=sink)
    orch.add_agent("lead", _echo("lead"))
    async with orch.open() as system:
        await system.spawn("lead")
        now = trio.current_time()
        sink(BranchStarted(time=now, agent="lead", branch="x"))
        sink(BranchStarted(time=now, agent="lead", branch="y"))
        sink(BranchFinished(time=now, agent="lead", branch="y", error="Boom"))
        sink(BranchFinished(time=now, agent="lead", branch="x"))
    spans = out.finished()
    assert {("agent lead", "branch x"), ("agent lead", "branch y")} <= tree_of(spans)
    y = next(s for s in spans if s.name == "branch y")
    assert y.status.status_code is StatusCode.ERROR
    assert y.attributes is not None and y.attributes["error.type"] == "Boom"
    with pytest.raises(InvalidArgumentError, match="start must be an Event subclass"):
        out.tracer.register_span(str, BranchFinished, key=_branch_key, name=str)  # type: ignore[arg-type]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(InvalidArgumentError, match="capture_content must be True or False"):
        OtelTracer(capture_content="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="secrets must be an iterable of strings"):
        OtelTracer(secrets="abc")
    with pytest.raises(InvalidArgumentError, match="listener must be callable"):
        EventLog().listen(3)  # type: ignore[arg-type]


def test_event_log_listeners_see_each_event_until_stopped() -> None:
    log = EventLog()
    seen: list[Event] = []
    stop = log.listen(seen.append)
    first = Event(time=0.0, agent="a")
    log.append(first)
    stop()
    stop()  # idempotent
    log.append(Event(time=1.0, agent="a"))
    assert seen == [first]


def test_the_core_never_imports_opentelemetry_and_a_missing_extra_is_named() -> None:
    code = (
        "import sys, trio_agents, trio_agents.testing\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
        "sys.modules['opentelemetry'] = None\n"
        "try:\n    import trio_agents.otel\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'trio-agents[otel]'" in out.stdout


def test_close_ends_every_open_span_at_the_last_event() -> None:
    out = exporting()
    out.tracer(RunStarted(time=5.0, agent="a", run=1))
    out.tracer(ModelRequested(time=7.0, agent="a", model="m", attempt=1))
    assert out.finished() == []
    out.tracer.close()
    spans = {s.name: s for s in out.finished()}
    assert set(spans) == {"invoke_agent a", "chat m"}
    run, chat = spans["invoke_agent a"], spans["chat m"]
    assert run.start_time is not None and run.end_time is not None
    assert chat.end_time == run.end_time == run.start_time + 2_000_000_000
    out.tracer.close()  # idempotent
    assert len(out.finished()) == 2


async def test_pattern_spans_hold_their_branches_runs(autojump_clock: Any) -> None:
    from trio_agents.patterns import Step, map_reduce, vote

    exported = exporting()

    def step(name: str) -> Step:
        return Step(
            name,
            lambda: Agent(
                ScriptedModel([f"{name} says yes"]), name=name, event_sink=exported.tracer
            ),
        )

    with pytest.raises(ValueError, match="boom"):  # a failing pattern leaves no context behind
        from trio_agents.patterns import StepFailed

        try:
            await vote(
                [step("v1"), Step("bad", lambda: Agent(ScriptedModel([fail(ValueError("boom"))])))],
                "q?",
                event_sink=exported.tracer,
            )
        except StepFailed as exc:
            raise exc.__cause__ or exc from None
    await vote([step("v1"), step("v2"), step("v3")], "q?", event_sink=exported.tracer)
    await map_reduce(
        step("mapper").factory,
        step("reducer").factory,
        ["a", "b"],
        event_sink=exported.tracer,
    )
    await Agent(ScriptedModel(["after"]), name="after", event_sink=exported.tracer).run("x")
    # A span the application makes current groups the runs under it the same way.
    from opentelemetry import trace as otel_trace

    from trio_agents.patterns import run_parallel

    app = TracerProvider().get_tracer("app")
    with app.start_as_current_span("trip") as trip:
        await run_parallel([step("oslo"), step("rome")], "go")
    spans = exported.finished()
    grouped = [s for s in spans if s.name in ("invoke_agent oslo", "invoke_agent rome")]
    assert len(grouped) == 2
    assert all(s.parent is not None for s in grouped)
    assert {s.parent.span_id for s in grouped if s.parent} == {trip.get_span_context().span_id}
    assert otel_trace.get_current_span() is otel_trace.INVALID_SPAN
    edges = tree_of(spans)
    assert ("pattern vote", "invoke_agent v1") in edges
    assert ("pattern vote", "invoke_agent v3") in edges
    assert ("pattern map_reduce", "invoke_agent reducer") in edges
    assert ("invoke_agent v2", "chat scripted") in edges
    assert ("", "invoke_agent after") in edges  # the pattern's context was left behind
    patterns = [s for s in spans if s.name.startswith("pattern ")]
    assert [s.name for s in patterns] == ["pattern vote", "pattern vote", "pattern map_reduce"]
    failed, voted, mapped = patterns
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes[ATTRIBUTES["error_type"]] == "PatternFailed"
    assert voted.attributes["trio_agents.pattern.agents"] == 3
    assert voted.status.status_code is not StatusCode.ERROR
    assert mapped.attributes["trio_agents.pattern.detail"] == "2 mapped"
    exported.tracer.close()
