"""OpenTelemetry traces and metrics that follow the supervision and delegation trees.

Needs the ``otel`` extra (``pip install 'trio-agents[otel]'``: ``opentelemetry-api`` and
``opentelemetry-sdk``). The core never imports this module.

:class:`OtelTracer` is an :data:`~trio_agents.EventSink`: it turns the typed events every
layer already emits into spans, span events and metrics as they are emitted, so tracing costs
nothing when it is not attached. Attach it to an :class:`~trio_agents.EventLog` with
:meth:`~trio_agents.EventLog.listen`, or pass it wherever an ``event_sink`` is accepted.

Names and attributes follow the OpenTelemetry GenAI semantic conventions at semantic
conventions version :data:`SEMCONV_VERSION`; every attribute name used is in
:data:`ATTRIBUTES`.

Spans:

* ``agent {name}`` -- one incarnation of an agent in an orchestrator's supervision tree,
  parented to the current incarnation of its supervisor (the parent agent); it ends when a
  new incarnation starts or the agent ends. Failures, supervisor decisions (restart, stop,
  escalate, with their reasons), restarts, suspensions and the end (completed, failed,
  cancelled) are span events on it.
* ``invoke_agent {name}`` -- one run of an agent (``gen_ai.operation.name`` ``invoke_agent``),
  under the agent's delegation span, else its incarnation span.
* ``chat {model}`` -- one model call attempt, with token usage and finish reason.
* ``execute_tool {tool}`` -- one tool call.
* ``delegate {specialist}`` -- one delegation, under the caller's ``delegate`` tool call span;
  the specialist's runs are under it.
* ``pattern {pattern}`` -- one run of a coordination pattern that emits
  :class:`~trio_agents.PatternStarted` (``map_reduce``, ``vote``, ``review_loop``, the
  swarms); while it runs it is the current span of the pattern's task, so the runs of its
  branches and steps nest under it. It fails with ``error.type`` ``PatternFailed`` (or
  ``Cancelled``); a failure's detail is content (not recorded).
* any pair of events registered with :meth:`OtelTracer.register_span` (other work, such as
  the branches of :func:`~trio_agents.patterns.run_parallel`).

Prompt and completion content is recorded only with ``capture_content=True``; even then tool
arguments named like secrets are redacted, and the values of secret-looking environment
variables (and any ``secrets`` given) are scrubbed from every string recorded.
"""

from ._otel import ATTRIBUTES, METRICS, SEMCONV_VERSION, OtelTracer

__all__ = ["ATTRIBUTES", "METRICS", "SEMCONV_VERSION", "OtelTracer"]
