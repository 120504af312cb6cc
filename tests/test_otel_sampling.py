"""OpenTelemetry export when the sampler drops spans: metrics are still recorded."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler

from trio_agents import Agent
from trio_agents.otel import OtelTracer
from trio_agents.testing import ScriptedModel, text


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


@pytest.mark.parametrize("sampler", [ALWAYS_ON, ALWAYS_OFF], ids=["sampled", "dropped"])
async def test_metrics_do_not_depend_on_span_sampling(
    sampler: Sampler, autojump_clock: trio.testing.MockClock
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    tracer = OtelTracer(
        tracer_provider=provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
        capture_content=True,
    )
    model = ScriptedModel([text("hello", delay=2.0), text("again", delay=1.0)], model_id="m1")
    agent = Agent(model, name="a", event_sink=tracer)
    first = await agent.run("hi")
    second = await agent.run("more")

    points = _points(reader)
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {
        "input": first.usage.input_tokens + second.usage.input_tokens,
        "output": first.usage.output_tokens + second.usage.output_tokens,
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.count == 2
    assert duration.sum == pytest.approx(3.0)

    finished = {span.name: span for span in spans.get_finished_spans()}
    if sampler is ALWAYS_OFF:
        assert finished == {}
        return
    assert set(finished) == {"invoke_agent a", "chat m1"}
    chat = finished["chat m1"]
    assert chat.attributes is not None
    assert chat.attributes["gen_ai.usage.output_tokens"] == second.usage.output_tokens
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "again" in str(chat.attributes["gen_ai.output.messages"])
    run = finished["invoke_agent a"]
    assert run.attributes is not None
    assert run.attributes["gen_ai.usage.input_tokens"] == second.usage.input_tokens
