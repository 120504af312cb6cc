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


async def _with_log(meter: Meter, case: Case, *, subscribe: bool) -> None:
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
        # Drain what is buffered after each wake-up (one scheduler step per batch, not per
        # event), as scenario 1's raw server does.
        while True:
            try:
                await subscription.receive()
                received[0] += 1
                while True:
                    subscription.receive_nowait()
                    received[0] += 1
            except trio.WouldBlock:
                continue
            except trio.EndOfChannel:
                return

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


def _tracer() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from trio_agents.otel import OtelTracer

    class DropExporter(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DropExporter()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
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
                    "otel", "trio_agents + OpenTelemetry (SDK, simple processor)", framework_traced
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
