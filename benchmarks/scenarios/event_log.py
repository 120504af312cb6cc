"""7. Event-log cost: request/reply (scenario 1) with an event log and a subscriber attached.

trio_agents: scenario 1's agent, with an :class:`~trio_agents.EventLog` as the orchestrator's
event sink (the agent's run events go there too) and one subscriber task draining
``log.subscribe()``. The target compares it with the same run without a log
("trio_agents, no event log"), measured interleaved in the same rounds.

trio_agents + OpenTelemetry: the same run with a :class:`trio_agents.otel.OtelTracer` as the
event sink, recording into the OpenTelemetry SDK: a ``TracerProvider`` whose
``SimpleSpanProcessor`` hands every finished span to an exporter that drops it (so the SDK's
whole span path is paid, the backend's I/O is not), and a ``MeterProvider`` with an
in-memory reader (histograms aggregate on every record). Target: within 1.5x of the run
without tracing.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trio_agents import Agent, AgentOrchestrator
from trio_agents.testing import ScriptedModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from . import request_reply
from ._common import ANSWER, drive

SUBSCRIBER_BUFFER = 100_000
POLL_INTERVAL = 0.01
"""How often the polling subscriber takes what is buffered: a live view's refresh rate."""


def _unavailable() -> str | None:
    try:
        from trio_agents import EventLog  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only before the event log landed
        return f"trio_agents has no EventLog yet ({exc})"
    return None


async def framework(meter: Meter, case: Case) -> None:
    await _with_log(meter, case, subscribe=True)


async def framework_log_only(meter: Meter, case: Case) -> None:
    await _with_log(meter, case, subscribe=False)


async def framework_polled(meter: Meter, case: Case) -> None:
    await _with_log(meter, case, subscribe=True, every=POLL_INTERVAL)


async def _with_log(
    meter: Meter, case: Case, *, subscribe: bool, every: float | None = None
) -> None:
    from trio_agents import EventLog

    requests = case.params["requests"]
    log = EventLog()
    if not subscribe:
        model = ScriptedModel([ANSWER] * requests)
        orchestrator = AgentOrchestrator(rng=meter.rng, event_sink=log)
        orchestrator.add_agent("server", lambda: Agent(model, name="server"))
        async with orchestrator.open() as system:
            handle = await system.spawn("server")
            meter.begin()
            await drive(case.size, requests, handle.send_message)
            meter.end(requests)
        meter.extra["events_per_request"] = len(log) / requests
        return
    subscription = log.subscribe(max_buffer=SUBSCRIBER_BUFFER)
    received = [0]

    async def subscriber() -> None:
        # Take every buffered event at each wake-up (one scheduler step per batch, not per
        # event), as scenario 1's raw server does.
        while True:
            try:
                received[0] += len(await subscription.receive_batch())
            except trio.EndOfChannel:
                return
            if every is not None:
                await trio.sleep(every)  # the events meanwhile wait in the buffer

    model = ScriptedModel([ANSWER] * requests)
    orchestrator = AgentOrchestrator(rng=meter.rng, event_sink=log)
    orchestrator.add_agent("server", lambda: Agent(model, name="server"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        async with orchestrator.open() as system:
            handle = await system.spawn("server")
            meter.begin()
            await drive(case.size, requests, handle.send_message)
            meter.end(requests)
            await trio.testing.wait_all_tasks_blocked()
            if subscription.overflowed:
                raise RuntimeError("the event-log subscriber was cut off: raise its buffer")
            meter.extra["events_per_request"] = received[0] / requests
        nursery.cancel_scope.cancel()


def _providers() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
    return provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


async def sdk_alone(meter: Meter, case: Case) -> None:
    """The OpenTelemetry SDK's own work for one traced request, with no agent: the spans,
    attributes and metric records the tracer asks of it (its floor)."""
    import time

    from opentelemetry import metrics, trace

    from trio_agents.otel import ATTRIBUTES as A
    from trio_agents.otel import METRICS

    requests = case.params["requests"]
    provider, meters = _providers()
    tracer = trace.get_tracer("trio_agents", tracer_provider=provider)
    instruments = metrics.get_meter("trio_agents", meter_provider=meters)
    tokens = instruments.create_histogram(METRICS["token_usage"], unit="{token}")
    duration = instruments.create_histogram(METRICS["operation_duration"], unit="s")
    meter.begin()
    for run in range(1, requests + 1):
        start = time.time_ns()
        agent = tracer.start_span(
            "invoke_agent server",
            start_time=start,
            attributes={
                A["operation"]: "invoke_agent",
                A["agent_name"]: "server",
                A["agent_id"]: "server",
                "trio_agents.run": run,
            },
        )
        chat = tracer.start_span(
            "chat scripted",
            context=trace.set_span_in_context(agent),
            start_time=start,
            attributes={
                A["operation"]: "chat",
                A["request_model"]: "scripted",
                "trio_agents.attempt": 1,
            },
        )
        chat.set_attributes(
            {
                A["input_tokens"]: 1,
                A["output_tokens"]: 1,
                A["finish_reasons"]: ["end_turn"],
                A["response_model"]: "scripted",
            }
        )
        attributes = {A["operation"]: "chat", A["request_model"]: "scripted"}
        attributes[A["response_model"]] = "scripted"
        duration.record(0.0, attributes)
        for token_type in ("input", "output"):
            tokens.record(1, {**attributes, A["token_type"]: token_type})
        chat.end(start)
        agent.set_attributes({A["input_tokens"]: 1, A["output_tokens"]: 1})
        agent.end(start)
    meter.end(requests)
    await trio.lowlevel.checkpoint()


def _tracer() -> Any:
    from trio_agents.otel import OtelTracer

    provider, meters = _providers()
    return OtelTracer(tracer_provider=provider, meter_provider=meters)


async def framework_traced(meter: Meter, case: Case) -> None:
    requests = case.params["requests"]
    tracer = _tracer()
    model = ScriptedModel([ANSWER] * requests)
    orchestrator = AgentOrchestrator(rng=meter.rng, event_sink=tracer)
    orchestrator.add_agent("server", lambda: Agent(model, name="server"))
    async with orchestrator.open() as system:
        handle = await system.spawn("server")
        meter.begin()
        await drive(case.size, requests, handle.send_message)
        meter.end(requests)
    tracer.close()


async def framework_without_log(meter: Meter, case: Case) -> None:
    await request_reply.framework(meter, case)


async def raw(meter: Meter, case: Case) -> None:
    await request_reply.raw(meter, case)


def build(size: int, profile: Profile) -> list[Case]:
    requests = request_reply.REQUESTS[profile]
    params: dict[str, Any] = {"requests": max(requests, size)}
    return [
        Case(
            scenario="event-log",
            number="7",
            name=f"{size} client{'s' if size != 1 else ''}",
            size=size,
            per="request",
            variants=(
                Variant(FRAMEWORK, "trio_agents + event log", framework),
                Variant(BASELINE, "raw trio", raw),
                Variant("no-log", "trio_agents, no event log", framework_without_log),
                Variant("log-only", "trio_agents + event log, no subscriber", framework_log_only),
                Variant(
                    "polled",
                    f"trio_agents + event log, subscriber every {POLL_INTERVAL * 1000:g} ms",
                    framework_polled,
                ),
                Variant(
                    "otel", "trio_agents + OpenTelemetry (SDK, simple processor)", framework_traced
                ),
                Variant(
                    "otel-sdk", "OpenTelemetry SDK alone: the same spans and records", sdk_alone
                ),
            ),
            targets=(
                Target(
                    metric="time",
                    limit=1.3,
                    against="no-log",
                    text="<= 1.3x without the log",
                ),
                Target(
                    metric="time",
                    limit=1.3,
                    against="no-log",
                    text="<= 1.3x without the log",
                    subject="log-only",
                ),
                Target(
                    metric="time",
                    limit=1.3,
                    against="no-log",
                    text="<= 1.3x without the log",
                    subject="polled",
                ),
                Target(
                    metric="time",
                    limit=1.5,
                    against="no-log",
                    text="<= 1.5x without tracing",
                    subject="otel",
                ),
            ),
            params=params,
        )
    ]


SCENARIO = Scenario(
    key="event-log",
    number="7",
    title="request/reply with an event log and a subscriber attached",
    sizes={"default": (1, 100), "quick": (1, 100), "smoke": (1, 4)},
    size_meaning="concurrent clients",
    build=build,
    unavailable=_unavailable,
)
