"""Implementation of :mod:`trio_agents.otel` (imports OpenTelemetry: use it from there)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics as otel_metrics
    from opentelemetry import trace as otel_trace
    from opentelemetry.trace import Span as OtelSpan
    from opentelemetry.trace import Status, StatusCode
except ImportError as _exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "trio_agents.otel needs OpenTelemetry: pip install 'trio-agents[otel]'"
    ) from _exc

from ._delegation import DELEGATE_TOOL, DelegationFinished, DelegationStarted
from ._errors import InvalidArgumentError
from ._events import (
    Event,
    ModelRequested,
    ModelResponded,
    PatternFinished,
    PatternStarted,
    RetryScheduled,
    RunFinished,
    RunStarted,
    ToolFinished,
    ToolStarted,
)
from ._messages import ErrorInfo, TextBlock
from ._orchestrator import (
    AgentEnded,
    AgentFailed,
    AgentRestarted,
    AgentSpawned,
    AgentSuspended,
    FailureEscalated,
    SupervisorDecided,
)

SEMCONV_VERSION: Final = "1.44.0"
"""The OpenTelemetry semantic conventions version (GenAI conventions) the names follow."""

ATTRIBUTES: Final[Mapping[str, str]] = {
    "operation": "gen_ai.operation.name",
    "agent_name": "gen_ai.agent.name",
    "agent_id": "gen_ai.agent.id",
    "request_model": "gen_ai.request.model",
    "response_model": "gen_ai.response.model",
    "finish_reasons": "gen_ai.response.finish_reasons",
    "input_tokens": "gen_ai.usage.input_tokens",
    "output_tokens": "gen_ai.usage.output_tokens",
    "token_type": "gen_ai.token.type",
    "tool_name": "gen_ai.tool.name",
    "tool_call_id": "gen_ai.tool.call.id",
    "tool_type": "gen_ai.tool.type",
    "tool_arguments": "gen_ai.tool.call.arguments",
    "tool_result": "gen_ai.tool.call.result",
    "output_messages": "gen_ai.output.messages",
    "error_type": "error.type",
}
"""Every semantic-convention attribute name this module records, by role."""

METRICS: Final[Mapping[str, str]] = {
    "token_usage": "gen_ai.client.token.usage",
    "operation_duration": "gen_ai.client.operation.duration",
}
"""The semantic-convention metric names this module records, by role."""

_A = ATTRIBUTES
_SECRET_NAME = re.compile(r"key|token|secret|passw|auth|credential|cookie", re.IGNORECASE)
_REDACTED = "[REDACTED]"
_Key = Hashable


def _env_secrets() -> list[str]:
    return [
        value for name, value in os.environ.items() if _SECRET_NAME.search(name) and len(value) >= 8
    ]


class OtelTracer:
    """An :data:`~trio_agents.EventSink` that records events as OpenTelemetry spans and metrics.

    :param tracer_provider: where spans go (default: the global tracer provider).
    :param meter_provider: where metrics go (default: the global meter provider).
    :param capture_content: record completions, tool arguments and tool results (off by
        default; secret-named arguments are redacted even when on).
    :param secrets: strings that must never be recorded (scrubbed from everything recorded),
        in addition to the values of environment variables named like secrets.

    Call :meth:`close` when the traced work is over: it ends every span still open.
    """

    def __init__(
        self,
        *,
        tracer_provider: otel_trace.TracerProvider | None = None,
        meter_provider: otel_metrics.MeterProvider | None = None,
        capture_content: bool = False,
        secrets: Iterable[str] = (),
    ) -> None:
        if not isinstance(capture_content, bool):
            raise InvalidArgumentError(
                f"capture_content must be True or False, got {capture_content!r}"
            )
        if isinstance(secrets, str):
            raise InvalidArgumentError("secrets must be an iterable of strings, not one string")
        self._tracer = otel_trace.get_tracer("trio_agents", tracer_provider=tracer_provider)
        meter = otel_metrics.get_meter("trio_agents", meter_provider=meter_provider)
        self._token_usage = meter.create_histogram(
            METRICS["token_usage"], unit="{token}", description="Tokens used per model call"
        )
        self._duration = meter.create_histogram(
            METRICS["operation_duration"], unit="s", description="Duration of model calls"
        )
        self.capture_content = capture_content
        self._secrets = sorted({*_env_secrets(), *secrets}, key=len, reverse=True)
        self._epoch: tuple[float, int] | None = None
        self._last = 0.0
        self._agents: dict[str, OtelSpan] = {}
        self._runs: dict[str, OtelSpan] = {}
        self._models: dict[str, tuple[OtelSpan, ModelRequested]] = {}
        self._tools: dict[tuple[str, str], tuple[OtelSpan, ToolStarted]] = {}
        self._delegations: dict[str, OtelSpan] = {}
        self._custom: dict[_Key, OtelSpan] = {}
        # Open pattern spans by (pattern's name, pattern), innermost last, each with the token
        # that made it the current span of the task running the pattern.
        self._patterns: dict[tuple[str, str], list[tuple[OtelSpan, object]]] = {}
        self._registered: dict[type[Event], Callable[[Event], None]] = {}

    # ------------------------------------------------------------------ helpers

    def _ns(self, when: float) -> int:
        """Trio clock seconds to epoch nanoseconds (anchored at the first event)."""
        if self._epoch is None:
            self._epoch = (when, time.time_ns())
        anchor, wall = self._epoch
        return wall + int((when - anchor) * 1e9)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    def _start(
        self, name: str, when: float, parent: OtelSpan | None, **attributes: Any
    ) -> OtelSpan:
        context = otel_trace.set_span_in_context(parent) if parent is not None else None
        return self._tracer.start_span(
            self._scrub(name),
            context=context,
            start_time=self._ns(when),
            attributes={k: v for k, v in attributes.items() if v is not None},
        )

    def _fail(self, span: OtelSpan, error: ErrorInfo | str) -> None:
        error_type = error.type if isinstance(error, ErrorInfo) else error
        span.set_attribute(_A["error_type"], self._scrub(error_type))
        # Error messages can quote a request (and providers have echoed keys in them): the
        # message is content, recorded only when content is.
        message = (
            self._scrub(error.message)
            if self.capture_content and isinstance(error, ErrorInfo)
            else None
        )
        span.set_status(Status(StatusCode.ERROR, message))

    def _parent_of(self, path: str) -> OtelSpan | None:
        """The innermost open span an agent's new work belongs under."""
        for table in (self._delegations, self._agents):
            span = table.get(path)
            if span is not None:
                return span
        return None

    def _close_under(self, path: str, when: float, error: str) -> None:
        """End every open run, model, tool and custom span of ``path``."""
        end = self._ns(when)
        for key in [k for k in self._tools if k[0] == path]:
            span, _ = self._tools.pop(key)
            self._fail(span, error)
            span.end(end)
        model = self._models.pop(path, None)
        if model is not None:
            self._fail(model[0], error)
            model[0].end(end)
        run = self._runs.pop(path, None)
        if run is not None:
            self._fail(run, error)
            run.end(end)

    # ------------------------------------------------------------------ the sink

    def __call__(self, event: Event) -> None:
        """Record ``event`` (an :data:`~trio_agents.EventSink`; never blocks)."""
        self._last = event.time
        custom = self._registered.get(type(event))
        if custom is not None:
            custom(event)
            return
        handler = _HANDLERS.get(type(event))
        if handler is not None:
            handler(self, event)

    def register_span(
        self,
        start: type[Event],
        finish: type[Event],
        *,
        key: Callable[[Event], Hashable],
        name: Callable[[Event], str],
        attributes: Callable[[Event], Mapping[str, Any]] = lambda event: {},
        failed: Callable[[Event], str | None] = lambda event: None,
    ) -> None:
        """Trace another pair of events as a span (e.g. the branches of a pattern).

        A ``start`` event opens a span under the agent's current span; the ``finish`` event
        with the same ``key`` ends it.

        :param key: identifies one span among those open (e.g. ``(event.agent, event.branch)``).
        :param name: the span's name.
        :param attributes: attributes for the span, from the ``start`` event.
        :param failed: from the ``finish`` event, the ``error.type`` if it failed, else ``None``.
        :raises InvalidArgumentError: ``start`` or ``finish`` is not an Event subclass.
        """
        for argument, value in (("start", start), ("finish", finish)):
            if not (isinstance(value, type) and issubclass(value, Event)):
                raise InvalidArgumentError(f"{argument} must be an Event subclass, got {value!r}")

        def on_start(event: Event) -> None:
            parent = self._runs.get(event.agent) or self._parent_of(event.agent)
            self._custom[key(event)] = self._start(
                name(event), event.time, parent, **dict(attributes(event))
            )

        def on_finish(event: Event) -> None:
            span = self._custom.pop(key(event), None)
            if span is not None:
                error = failed(event)
                if error is not None:
                    self._fail(span, error)
                span.end(self._ns(event.time))

        self._registered[start] = on_start
        self._registered[finish] = on_finish

    def close(self) -> None:
        """End every span still open, as of the last event recorded."""
        end = self._ns(self._last) if self._epoch is not None else time.time_ns()
        for table in (self._custom, self._tools, self._models, self._runs):
            for value in table.values():
                span = value[0] if isinstance(value, tuple) else value
                span.end(end)
            table.clear()
        for span in (*self._delegations.values(), *self._agents.values()):
            span.end(end)
        self._delegations.clear()
        self._agents.clear()
        for stack in self._patterns.values():
            for span, _ in stack:
                span.end(end)  # their tasks' contexts are not this one's: not detached
        self._patterns.clear()

    # ------------------------------------------------------------------ supervision

    def _agent_spawned(self, event: AgentSpawned) -> None:
        self._end_agent(event)  # the span of a suspended incarnation, if any
        parent_path = event.agent.rpartition("/")[0]
        name = event.agent.rsplit("/", 1)[-1]
        self._agents[event.agent] = self._start(
            f"agent {name}",
            event.time,
            self._agents.get(parent_path) if parent_path else None,
            **{
                _A["agent_name"]: name,
                _A["agent_id"]: event.agent,
                "trio_agents.agent.incarnation": event.incarnation,
            },
        )

    def _agent_event(self, event: Event, name: str, **attributes: Any) -> OtelSpan | None:
        span = self._agents.get(event.agent)
        if span is not None:
            span.add_event(
                name,
                {k: self._scrub(v) if isinstance(v, str) else v for k, v in attributes.items()},
                timestamp=self._ns(event.time),
            )
        return span

    def _end_agent(self, event: Event) -> None:
        self._close_under(event.agent, event.time, "AgentStopped")
        span = self._agents.pop(event.agent, None)
        if span is not None:
            span.end(self._ns(event.time))

    def _agent_failed(self, event: AgentFailed) -> None:
        span = self._agent_event(event, "agent_failed", **{_A["error_type"]: event.error.type})
        if span is not None:
            self._fail(span, event.error)

    def _supervisor_decided(self, event: SupervisorDecided) -> None:
        self._agent_event(
            event,
            f"supervisor.{event.action}",
            **{
                "trio_agents.supervisor.action": event.action,
                "trio_agents.supervisor.requested": event.requested,
                "trio_agents.supervisor.reason": event.reason,
                "trio_agents.supervisor.delay": event.delay,
                "trio_agents.supervisor.affected": list(event.affected),
                "trio_agents.supervisor.limit_exceeded": event.limit_exceeded,
            },
        )

    def _agent_restarted(self, event: AgentRestarted) -> None:
        self._agent_event(
            event,
            "agent_restarted",
            **{
                "trio_agents.agent.incarnation": event.incarnation,
                "trio_agents.agent.restarts": event.restarts,
            },
        )
        self._end_agent(event)

    def _failure_escalated(self, event: FailureEscalated) -> None:
        self._agent_event(event, "supervisor.escalated", **{_A["error_type"]: event.error.type})
        self._end_agent(event)

    def _agent_suspended(self, event: AgentSuspended) -> None:
        # The span stays open: the agent either comes back (a new incarnation's span ends
        # this one) or ends for good (an agent_ended event on this span).
        self._agent_event(event, "agent_suspended", **{"trio_agents.reason": event.reason})
        self._close_under(event.agent, event.time, "AgentSuspended")

    def _agent_ended(self, event: AgentEnded) -> None:
        attributes: dict[str, Any] = {"trio_agents.agent.status": event.status}
        if event.error is not None:
            attributes[_A["error_type"]] = event.error.type
        span = self._agent_event(event, f"agent_{event.status}", **attributes)
        if span is not None and event.status == "failed" and event.error is not None:
            self._fail(span, event.error)
        self._end_agent(event)

    # ------------------------------------------------------------------ delegation

    def _delegation_started(self, event: DelegationStarted) -> None:
        caller = event.agent.rpartition("/")[0]
        parent: OtelSpan | None = None
        for (path, _), (span, started) in self._tools.items():
            arguments = started.call.arguments
            if (
                path == caller
                and started.call.name == DELEGATE_TOOL
                and arguments.get("specialist") == event.specialist
                and arguments.get("subtask") == event.subtask
            ):
                parent = span
                break
        if parent is None:
            parent = self._runs.get(caller) or self._parent_of(caller)
        self._delegations[event.agent] = self._start(
            f"delegate {event.specialist}",
            event.time,
            parent,
            **{
                _A["agent_name"]: event.specialist,
                _A["agent_id"]: event.agent,
                "trio_agents.delegation.depth": event.depth,
            },
        )

    def _delegation_finished(self, event: DelegationFinished) -> None:
        span = self._delegations.pop(event.agent, None)
        if span is None:
            return
        span.set_attribute("trio_agents.delegation.success", event.success)
        span.set_attribute("trio_agents.delegation.cancelled", event.cancelled)
        if not event.success:
            self._fail(span, "Cancelled" if event.cancelled else "DelegationFailed")
        span.end(self._ns(event.time))

    # ------------------------------------------------------------------ patterns

    def _pattern_started(self, event: PatternStarted) -> None:
        # The span becomes the current span of the task running the pattern, so the runs of
        # its branches and steps (in that task, or in tasks it starts) nest under it.
        span = self._tracer.start_span(
            self._scrub(f"pattern {event.pattern}"),
            start_time=self._ns(event.time),
            attributes={
                "trio_agents.pattern": event.pattern,
                "trio_agents.pattern.name": self._scrub(event.agent),
                "trio_agents.pattern.agents": event.agents,
            },
        )
        token = otel_context.attach(otel_trace.set_span_in_context(span))
        self._patterns.setdefault((event.agent, event.pattern), []).append((span, token))

    def _pattern_finished(self, event: PatternFinished) -> None:
        stack = self._patterns.get((event.agent, event.pattern))
        if not stack:
            return
        span, token = stack.pop()
        if not stack:
            del self._patterns[(event.agent, event.pattern)]
        otel_context.detach(token)  # type: ignore[arg-type]
        if not event.ok:
            self._fail(span, "Cancelled" if event.detail == "cancelled" else "PatternFailed")
        elif event.detail:
            span.set_attribute("trio_agents.pattern.detail", self._scrub(event.detail))
        span.end(self._ns(event.time))

    # ------------------------------------------------------------------ runs, models, tools

    def _run_started(self, event: RunStarted) -> None:
        self._close_under(event.agent, event.time, "Abandoned")
        name = event.agent.rsplit("/", 1)[-1]
        self._runs[event.agent] = self._start(
            f"invoke_agent {name}",
            event.time,
            self._parent_of(event.agent),
            **{
                _A["operation"]: "invoke_agent",
                _A["agent_name"]: name,
                _A["agent_id"]: event.agent,
                "trio_agents.run": event.run,
            },
        )

    def _run_finished(self, event: RunFinished) -> None:
        result = event.result
        error = result.error.type if result.error is not None else None
        if error is None and result.stop_reason.value == "aborted":
            error = "Cancelled"
        for key in [k for k in self._tools if k[0] == event.agent]:
            span, _ = self._tools.pop(key)
            self._fail(span, error or "Abandoned")
            span.end(self._ns(event.time))
        model = self._models.pop(event.agent, None)
        if model is not None:
            self._end_model(model, event.time, result.error or error or "Abandoned")
        run = self._runs.pop(event.agent, None)
        if run is None:
            return
        if run.is_recording():
            run.set_attributes(
                {
                    _A["input_tokens"]: result.usage.input_tokens,
                    _A["output_tokens"]: result.usage.output_tokens,
                }
            )
        if result.error is not None:
            self._fail(run, result.error)
        elif error is not None:
            self._fail(run, error)
        run.end(self._ns(event.time))

    def _model_requested(self, event: ModelRequested) -> None:
        previous = self._models.pop(event.agent, None)
        if previous is not None:
            self._end_model(previous, event.time, "Abandoned")
        span = self._start(
            f"chat {event.model}",
            event.time,
            self._runs.get(event.agent) or self._parent_of(event.agent),
            **{
                _A["operation"]: "chat",
                _A["request_model"]: event.model,
                "trio_agents.attempt": event.attempt,
            },
        )
        self._models[event.agent] = (span, event)

    def _metric_attributes(self, requested: ModelRequested, error: str | None) -> dict[str, str]:
        attributes = {_A["operation"]: "chat", _A["request_model"]: requested.model}
        if error is not None:
            attributes[_A["error_type"]] = error
        return attributes

    def _end_model(
        self, model: tuple[OtelSpan, ModelRequested], when: float, error: ErrorInfo | str
    ) -> None:
        span, requested = model
        self._fail(span, error)
        error_type = error.type if isinstance(error, ErrorInfo) else error
        self._duration.record(
            when - requested.time, self._metric_attributes(requested, self._scrub(error_type))
        )
        span.end(self._ns(when))

    def _model_responded(self, event: ModelResponded) -> None:
        model = self._models.pop(event.agent, None)
        if model is None:
            return
        span, requested = model
        message = event.message
        usage = message.usage
        response_model = self._scrub(message.model) if message.model else None
        # A span the sampler dropped (or a no-op provider's) records nothing: skip building
        # its attributes, and the content's JSON. The metrics are recorded either way.
        if span.is_recording():
            # One call, one lock in the SDK, instead of one per attribute.
            span_attributes: dict[str, Any] = {
                _A["input_tokens"]: usage.input_tokens,
                _A["output_tokens"]: usage.output_tokens,
                _A["finish_reasons"]: [message.stop_reason.value],
            }
            if response_model is not None:
                span_attributes[_A["response_model"]] = response_model
            if self.capture_content:
                text = "".join(b.text for b in message.content if isinstance(b, TextBlock))
                output = [{"role": "assistant", "parts": [{"type": "text", "content": text}]}]
                span_attributes[_A["output_messages"]] = self._scrub(json.dumps(output))
            span.set_attributes(span_attributes)
        attributes = self._metric_attributes(requested, None)
        if response_model is not None:
            attributes[_A["response_model"]] = response_model
        self._duration.record(event.time - requested.time, attributes)
        for token_type, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            self._token_usage.record(count, {**attributes, _A["token_type"]: token_type})
        span.end(self._ns(event.time))

    def _retry_scheduled(self, event: RetryScheduled) -> None:
        model = self._models.pop(event.agent, None)
        if model is not None:
            model[0].add_event(
                "retry_scheduled",
                {"trio_agents.retry.delay": event.delay, _A["error_type"]: event.error.type},
                timestamp=self._ns(event.time),
            )
            self._end_model(model, event.time, event.error)

    def _redact(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {
            key: _REDACTED
            if _SECRET_NAME.search(key)
            else (self._redact(value) if isinstance(value, Mapping) else value)
            for key, value in arguments.items()
        }

    def _tool_started(self, event: ToolStarted) -> None:
        call = event.call
        attributes: dict[str, Any] = {
            _A["operation"]: "execute_tool",
            _A["tool_name"]: call.name,
            _A["tool_call_id"]: call.id,
            _A["tool_type"]: "function",
        }
        if self.capture_content:
            attributes[_A["tool_arguments"]] = self._scrub(
                json.dumps(self._redact(call.arguments), default=str)
            )
        span = self._start(
            f"execute_tool {call.name}",
            event.time,
            self._runs.get(event.agent) or self._parent_of(event.agent),
            **attributes,
        )
        self._tools[(event.agent, call.id)] = (span, event)

    def _tool_finished(self, event: ToolFinished) -> None:
        found = self._tools.pop((event.agent, event.result.tool_call_id), None)
        if found is None:
            return
        span, _ = found
        if self.capture_content:
            span.set_attribute(_A["tool_result"], self._scrub(event.result.content))
        if event.result.is_error:
            self._fail(span, "ToolError")
        span.end(self._ns(event.time))


_HANDLERS: dict[type[Event], Callable[[OtelTracer, Any], None]] = {
    AgentSpawned: OtelTracer._agent_spawned,
    AgentFailed: OtelTracer._agent_failed,
    SupervisorDecided: OtelTracer._supervisor_decided,
    AgentRestarted: OtelTracer._agent_restarted,
    FailureEscalated: OtelTracer._failure_escalated,
    AgentSuspended: OtelTracer._agent_suspended,
    AgentEnded: OtelTracer._agent_ended,
    DelegationStarted: OtelTracer._delegation_started,
    DelegationFinished: OtelTracer._delegation_finished,
    PatternStarted: OtelTracer._pattern_started,
    PatternFinished: OtelTracer._pattern_finished,
    RunStarted: OtelTracer._run_started,
    RunFinished: OtelTracer._run_finished,
    ModelRequested: OtelTracer._model_requested,
    ModelResponded: OtelTracer._model_responded,
    RetryScheduled: OtelTracer._retry_scheduled,
    ToolStarted: OtelTracer._tool_started,
    ToolFinished: OtelTracer._tool_finished,
}
