"""Delegation: a main agent hands subtasks to specialists through a ``delegate`` tool.

:class:`Delegator` holds the team (a main :class:`~trio_agents.AgentSpec` and the specialists'
specs, plus live :class:`~trio_agents.AgentHandle` objects); :meth:`Delegator.run` runs the
main agent with a :class:`DelegatingExecutor` that serves its ``delegate`` tool; an
:class:`AgentRunner` (by default :class:`ModelRunner`) turns each spec into a running agent.

Rules (the semantics the tests pin):

* The ``delegate`` tool takes ``specialist`` (a JSON-schema ``enum`` of the registered names:
  the specialists in order, then the handles that are not also specialists) and ``subtask``
  (a string). Each accepted call runs the specialist in a **child nursery opened by that
  call**, as a fresh agent (from the runner) with only its own tools, so parallel calls of
  one turn run concurrently, and cancelling the caller cancels every specialist under it, at
  every depth, at once. Its answer (the final text) is the tool result.
* Every call with a string ``specialist`` and a string ``subtask`` is recorded as one
  :class:`DelegationRecord`; malformed arguments only get an error result. The model's own
  mistakes are error results it can read and recover from, under every failure policy:
  an unknown specialist (the result lists the available ones), a cycle (``"delegation
  cycle: lead -> a -> b -> a"``: a specialist delegating to a name already on its
  delegation path; the main agent is not part of the pool), and the depth limit
  (``"delegation depth limit N reached"``: the main agent is depth 0, its specialists depth
  1, theirs depth 2, ... up to ``max_depth``).
* Budgets: each delegation (and each retry) first asks the caller's budget
  :meth:`~trio_agents.Budget.check_spawn` and counts itself with
  :meth:`~trio_agents.Budget.charge_spawn`; a refused delegation is recorded as failed with
  the budget's message and is never retried. The main agent itself is not counted. Each
  specialist run draws from ``caller_budget.child(spec.limits)``: budgets only shrink down
  the tree, and every charge reaches the ancestors.
* Deadlines flow down the same way: a specialist runs inside its caller's tool call, so the
  caller's ``run_timeout`` (or any enclosing deadline) also bounds the specialist.
* Failure policies (a *failure* is a specialist run that raised, or a delegation the budget
  refused): ``isolate`` (default) sends ``"specialist 'x' failed: ErrorType: message"`` back
  as an error result; ``fail_fast`` cancels the sibling delegations still running (their
  records say ``cancelled=True``) and fails the caller's run with
  :class:`~trio_agents.DelegationFailed`; ``retry`` runs a fresh specialist again, up to
  ``max_retries`` times, after an exponential backoff on trio's clock (never shorter than the
  error's ``retry_after``; each retry emits :class:`~trio_agents.RetryScheduled`), then
  reports like ``isolate``. Misuse (:class:`~trio_agents.UsageError`: unknown tools or
  models, an exhausted script) and :class:`~trio_agents.BudgetExhausted` are never retried.
* Nested delegation: a specialist whose spec lists ``"delegate"`` in its ``tools`` gets its
  own ``delegate`` tool over the same pool (``"delegate"`` is taken out of the spec the
  runner sees; the main agent always gets the tool).
* Live agents: a name in ``handles`` is served by ``await handle.send_message(subtask)`` on
  that running agent's request channel, instead of a fresh agent (a handle wins over a
  specialist of the same name). Such an agent is not a child of the caller: cancelling the
  caller abandons the request (the record says cancelled) but the live agent keeps serving
  it; its usage is reported in the record but charged to whatever budget that agent has.
* Records: :attr:`DelegatorResult.delegations` holds every delegation at every depth,
  depth-first: each caller's delegations in the order the model made the calls, each
  followed by the delegations its specialist made. A record's ``usage`` covers the
  specialist's runs (all attempts) *and* everything it delegated in turn, so
  :attr:`DelegatorResult.total_usage` is the main run's usage plus the depth-1 records'.
* Events: :class:`DelegationStarted` and :class:`DelegationFinished` (one pair per record)
  go to the event sink (``infra.log`` by default) with ``agent`` set to the specialist's path
  (``"lead/researcher"``).
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol, cast, runtime_checkable

import attrs
import trio

from ._agent import _NO_TOOLS, Agent, AgentSpec, RetryPolicy, current_agent
from ._cancel import reraise_cancelled
from ._errors import (
    AgentError,
    BudgetExhausted,
    DelegationFailed,
    DeserializationError,
    InvalidArgumentError,
    UsageError,
)
from ._events import Event, EventSink, RetryScheduled
from ._infra import SharedInfra
from ._journal import run_nested
from ._limits import Budget, UsageLimits
from ._messages import (
    AgentResult,
    ApprovalDecision,
    AssistantMessage,
    ErrorInfo,
    JSONValue,
    Message,
    PendingApproval,
    StopReason,
    ToolCallBlock,
    ToolResultBlock,
    Usage,
)
from ._models import Model, OutputMode, ToolDefinition, check_model
from ._orchestrator import AgentHandle
from ._output import output_spec
from ._serde import dump, load
from ._supervision import Backoff
from ._tools import (
    Tool,
    ToolContext,
    ToolExecutor,
    ToolPolicy,
    Toolset,
    _is_executor,
    _schema,
    combine_executors,
)

__all__ = [
    "AgentRunner",
    "DelegatingExecutor",
    "DelegationFinished",
    "DelegationRecord",
    "DelegationStarted",
    "Delegator",
    "DelegatorResult",
    "FailurePolicy",
    "ModelRunner",
    "SuspendedAgent",
]

DELEGATE_TOOL = "delegate"


# --------------------------------------------------------------------------- values


class FailurePolicy(enum.Enum):
    """What a :class:`Delegator` does when a specialist fails."""

    ISOLATE = "isolate"
    """Send the failure back to the caller as an error tool result it can recover from."""
    FAIL_FAST = "fail_fast"
    """Cancel the sibling delegations and fail the caller's run with
    :class:`~trio_agents.DelegationFailed`."""
    RETRY = "retry"
    """Run a fresh specialist again (up to ``max_retries`` times, with backoff), then isolate."""


@attrs.frozen(kw_only=True)
class DelegationRecord:
    """One call of the ``delegate`` tool and what came of it."""

    specialist: str
    """The name the caller asked for."""
    subtask: str
    """What the specialist was asked to do."""
    result: str
    """The text sent back to the caller: the specialist's answer, or why there is none."""
    success: bool
    """Whether the specialist answered."""
    duration: float = 0.0
    """Seconds on trio's clock from the call to the record, retries and backoff included."""
    usage: Usage = attrs.field(factory=Usage)
    """Tokens used by the specialist's runs (every attempt) and everything they delegated."""
    depth: int = 1
    """1 for the main agent's delegations, 2 for theirs, ..."""
    error: str | None = None
    """Why it did not succeed (``"ErrorType: message"`` for a failed run), or ``None``."""
    cancelled: bool = False
    """Whether the delegation was cancelled before it finished (its caller was cancelled,
    or a sibling failed under ``fail_fast``)."""
    attempts: int = 0
    """Runs started: 0 when the delegation was refused, more than 1 after retries."""
    path: str = ""
    """The specialist's path in the tree, e.g. ``"lead/researcher"``."""
    input: JSONValue = None
    """The structured subtask of a specialist with an input type (see ``input_types`` of
    :class:`Delegator`), as JSON data; ``None`` otherwise. :attr:`subtask` is its JSON text."""
    output: JSONValue = None
    """The structured answer of a specialist with an output type (see ``output_types`` of
    :class:`Delegator`), as JSON data; ``None`` otherwise. :attr:`result` is its JSON text."""


def _records(value: Iterable[DelegationRecord]) -> tuple[DelegationRecord, ...]:
    return tuple(value)


def _history(value: Iterable[Message]) -> tuple[Message, ...]:
    return tuple(value)


def _suspended(value: Iterable[SuspendedAgent]) -> tuple[SuspendedAgent, ...]:
    return tuple(value)


@attrs.frozen(kw_only=True)
class SuspendedAgent:
    """An agent of a delegation tree that stopped for approval, as plain data.

    :meth:`Delegator.run` returns the main agent's in :attr:`DelegatorResult.suspended`;
    :meth:`Delegator.resume` rebuilds every agent of it (in any process) and goes on.
    """

    path: str
    """The agent's path (``"lead/research"``)."""
    name: str
    """The specialist's name (the main agent's name for the main agent)."""
    subtask: str
    """The input the agent was given (the task, for the main agent)."""
    call_id: str = ""
    """The caller's ``delegate`` call that runs this agent (``""`` for the main agent)."""
    depth: int = 0
    """0 for the main agent, 1 for its specialists, ..."""
    history: tuple[Message, ...] = attrs.field(default=(), converter=_history)
    """The agent's whole conversation, ending with the turn that waits."""
    waiting: AgentResult
    """The agent's run (its last resumed part) that stopped with
    :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED`: its pending approvals (with the
    :attr:`~trio_agents.PendingApproval.via` of the nested ones) and held results."""
    nested: tuple[SuspendedAgent, ...] = attrs.field(default=(), converter=_suspended)
    """The specialists under this agent's waiting ``delegate`` calls, in call order."""
    usage: Usage = attrs.field(factory=Usage)
    """Tokens used so far by this agent's runs and everything it delegated (a specialist's
    :attr:`DelegationRecord.usage` counts them when it ends)."""


@attrs.frozen(kw_only=True)
class DelegatorResult:
    """What :meth:`Delegator.run` produced."""

    task: str
    """The task given to the main agent."""
    final_answer: str
    """The main agent's final text."""
    delegations: tuple[DelegationRecord, ...] = attrs.field(default=(), converter=_records)
    """Every delegation at every depth, depth-first in call order."""
    result: AgentResult
    """The main agent's run (its own usage only); after :meth:`Delegator.resume`, the
    resumed part."""
    suspended: SuspendedAgent | None = None
    """When the run stopped for approval (:attr:`result` has
    :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED`), the whole tree's waiting state:
    give this result to :meth:`Delegator.resume`."""

    @property
    def pending_approvals(self) -> tuple[PendingApproval, ...]:
        """The calls that wait for a person, at every depth (``agent`` names who asked)."""
        return self.result.pending_approvals

    @property
    def total_usage(self) -> Usage:
        """Usage of the main agent plus every delegation, at every depth."""
        return self.result.usage + sum((r.usage for r in self.delegations if r.depth == 1), Usage())


@attrs.frozen(kw_only=True)
class DelegationStarted(Event):
    """A delegation was accepted (``agent`` is the specialist's path)."""

    kind: ClassVar[str] = "delegation_started"
    specialist: str
    """The name the caller asked for."""
    subtask: str
    """What the specialist is asked to do."""
    depth: int
    """1 for the main agent's delegations, 2 for theirs, ..."""


@attrs.frozen(kw_only=True)
class DelegationFinished(Event):
    """A delegation ended and was recorded (``agent`` is the specialist's path)."""

    kind: ClassVar[str] = "delegation_finished"
    specialist: str
    """The name the caller asked for."""
    subtask: str
    """What the specialist was asked to do."""
    depth: int
    """1 for the main agent's delegations, 2 for theirs, ..."""
    success: bool
    """Whether the specialist answered."""
    cancelled: bool = False
    """Whether it was cancelled before it finished."""
    duration: float = 0.0
    """Seconds on trio's clock, retries included."""
    error: str | None = None
    """Why it did not succeed, or ``None``."""
    usage: Usage = attrs.field(factory=Usage)
    """Tokens used by the specialist and everything it delegated."""
    attempts: int = 0
    """Runs started."""


# --------------------------------------------------------------------------- runners


@runtime_checkable
class AgentRunner(Protocol):
    """Turns an :class:`~trio_agents.AgentSpec` into one finished run.

    :class:`Delegator` calls :meth:`run` once for the main agent and once per delegation (per
    attempt), each time for a fresh agent. :class:`ModelRunner` is the default
    implementation; a test double only needs this one method.
    """

    async def run(
        self,
        spec: AgentSpec,
        task: str,
        *,
        tools: ToolExecutor | Sequence[Tool],
        infra: SharedInfra | None,
        path: str,
        event_sink: EventSink | None,
        budget: Budget | None,
    ) -> AgentResult:
        """Run a fresh agent built from ``spec`` on ``task`` and return its result.

        :param spec: the agent to build; its ``tools`` are the names of its own tools (the
            runner resolves them), never ``"delegate"``.
        :param task: the user message of the run.
        :param tools: extra tools for this run on top of the spec's own (the ``delegate``
            tool's executor, or ``()``).
        :param infra: the :class:`~trio_agents.SharedInfra` of the tree, or ``None``.
        :param path: the agent's path in the tree (``"lead/researcher"``), for events.
        :param event_sink: where the agent's events go (``None``: nowhere).
        :param budget: the budget this run checks and charges, already carved for the spec
            (the delegator passes ``caller_budget.child(spec.limits)``), so ``spec.limits``
            must not be applied again. The run must charge every response to it (as
            :class:`~trio_agents.Agent` does): records read usage off it, so cancelled runs
            still report what they used.
        :raises Exception: whatever ended the run; a raised error is a failed delegation.

        For a specialist that :class:`Delegator` has an output type for, it is also called
        with ``output_type=`` (a keyword a runner only needs if it serves such specialists),
        and the result's :attr:`~trio_agents.AgentResult.output` is the answer.
        """
        ...


_RUNNER_CONTROLLED = frozenset(
    {
        "model",
        "name",
        "instructions",
        "tools",
        "max_turns",
        "model_timeout",
        "run_timeout",
        "limits",
        "budget",
        "infra",
        "policy",
        "event_sink",
        "path",
        "retry",
    }
)
_AGENT_KWARGS = frozenset({"settings", "deps", "max_tool_concurrency", "stream", "rng"})


def _tool_registry(tools: Mapping[str, Tool] | Iterable[Tool]) -> dict[str, Tool]:
    if isinstance(tools, Tool):
        raise InvalidArgumentError("tools must be a mapping or a sequence of Tool; wrap one: [t]")
    found: dict[str, Tool] = {}
    if isinstance(tools, Mapping):
        items: Iterable[tuple[object, object]] = tools.items()
    else:
        items = ((getattr(t, "name", None), t) for t in tools)
    for key, item in items:
        if not isinstance(item, Tool):
            raise InvalidArgumentError(
                f"tools must hold Tool objects (decorate functions with @trio_agents.tool); "
                f"got {type(item).__name__} for {key!r}"
            )
        if not isinstance(key, str) or key in found:
            raise InvalidArgumentError(
                f"tool names must be unique str in tools; {key!r} is "
                + ("repeated" if key in found else "not a str")
            )
        found[key] = item
    return found


class ModelRunner:
    """The default :class:`AgentRunner`: a fresh :class:`~trio_agents.Agent` per run.

    :param model: one :class:`~trio_agents.Model` for every spec, or a mapping from model id
        to model: a spec's ``model`` picks its entry (a spec without ``model`` takes the only
        entry when there is exactly one).
    :param tools: the tools specs may name, by name (a mapping) or as a sequence of
        :class:`~trio_agents.Tool`; each agent gets only those its spec names.
    :param retry: how the agents retry retryable model errors (default
        :class:`~trio_agents.RetryPolicy`).
    :param agent_kwargs: passed on to :class:`~trio_agents.Agent`: ``settings``, ``deps``,
        ``max_tool_concurrency``, ``stream``, ``rng``. Everything else comes from the spec
        (instructions, tools, ``max_turns``, ``model_timeout``, ``run_timeout``, limits) or
        from :meth:`run` (path, event sink, budget, infra).

    With ``infra``, an agent calls ``infra.model_for(model)`` (the tree-wide rate limits),
    checks every tool call with ``infra.policies``, and sends its events to ``infra.log``
    unless an ``event_sink`` is given.

    :raises InvalidArgumentError: a model is not a :class:`~trio_agents.Model`, the mapping is
        empty, two tools share a name, or an ``agent_kwargs`` key is not one of the above.
    """

    __slots__ = ("_agent_kwargs", "_models", "_retry", "_single", "_tools")

    def __init__(
        self,
        model: Model | Mapping[str, Model],
        *,
        tools: Mapping[str, Tool] | Sequence[Tool] = (),
        retry: RetryPolicy | None = None,
        **agent_kwargs: Any,
    ) -> None:
        if isinstance(model, Mapping):
            if not model:
                raise InvalidArgumentError(
                    "model must be a Model or a non-empty mapping of model id to Model"
                )
            self._models = {
                str(key): check_model(value, argument=f"model[{key!r}]")
                for key, value in model.items()
            }
            self._single: Model | None = None
        else:
            self._single = check_model(model)
            self._models = {}
        self._tools = _tool_registry(tools)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidArgumentError(
                f"retry must be a RetryPolicy or None, got {type(retry).__name__}"
            )
        self._retry = retry
        bad = sorted(set(agent_kwargs) - _AGENT_KWARGS)
        if bad:
            controlled = [k for k in bad if k in _RUNNER_CONTROLLED]
            why = (
                f" ({', '.join(controlled)} come from the spec or from run())" if controlled else ""
            )
            raise InvalidArgumentError(
                f"ModelRunner got unexpected agent arguments {bad}{why}; "
                f"allowed: {', '.join(sorted(_AGENT_KWARGS))}"
            )
        self._agent_kwargs = dict(agent_kwargs)

    @property
    def models(self) -> Mapping[str, Model]:
        """The models by id (empty when one model serves every spec)."""
        return dict(self._models)

    def model_for(self, spec: AgentSpec) -> Model:
        """The model that runs ``spec``.

        :raises InvalidArgumentError: ``spec.model`` is not one of the known ids, or it is
            ``None`` and there are several.
        """
        if self._single is not None:
            return self._single
        known = ", ".join(sorted(self._models))
        if spec.model is None:
            if len(self._models) == 1:
                return next(iter(self._models.values()))
            raise InvalidArgumentError(
                f"AgentSpec {spec.name!r} has model=None but the runner has several models "
                f"({known}); set AgentSpec.model to one of them"
            )
        found = self._models.get(spec.model)
        if found is None:
            raise InvalidArgumentError(
                f"AgentSpec {spec.name!r} asks for model {spec.model!r}; known models: {known}"
            )
        return found

    def build(
        self,
        spec: AgentSpec,
        *,
        tools: ToolExecutor | Sequence[Tool] = (),
        infra: SharedInfra | None = None,
        path: str | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        output_type: Any = str,
    ) -> Agent:
        """The fresh agent :meth:`run` would run (same arguments)."""
        if not isinstance(spec, AgentSpec):
            raise InvalidArgumentError(f"spec must be an AgentSpec, got {type(spec).__name__}")
        model = self.model_for(spec)
        missing = [name for name in spec.tools if name not in self._tools]
        if missing:
            raise InvalidArgumentError(
                f"AgentSpec {spec.name!r} names unknown tools {missing}; "
                f"the runner has: {sorted(self._tools) or 'none'}"
            )
        executor: ToolExecutor = (
            Toolset([self._tools[name] for name in spec.tools]) if spec.tools else _NO_TOOLS
        )
        if _is_executor(tools):  # isinstance(tools, ToolExecutor), cached per class
            executor = combine_executors(executor, tools)
        elif tools:
            executor = combine_executors(executor, Toolset(cast("Sequence[Tool]", tools)))
        policy: ToolPolicy | None = None
        base: Budget | None = None
        if infra is not None:
            model = infra.model_for(model)
            policy = infra.policies
            base = infra.budget
            if event_sink is None:
                event_sink = infra.log
        if budget is None and (base is not None or spec.limits is not None):
            budget = _carve(base, spec.limits)
        return Agent(
            model,
            name=spec.name,
            instructions=spec.instructions,
            tools=executor,
            max_turns=spec.max_turns,
            retry=self._retry,
            model_timeout=spec.model_timeout,
            run_timeout=spec.run_timeout,
            budget=budget,
            infra=infra,
            policy=policy,
            event_sink=event_sink,
            path=path if path is not None else spec.name,
            output_type=output_type,
            **self._agent_kwargs,
        )

    async def run(
        self,
        spec: AgentSpec,
        task: str,
        *,
        tools: ToolExecutor | Sequence[Tool] = (),
        infra: SharedInfra | None = None,
        path: str | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        output_type: Any = str,
    ) -> AgentResult:
        """Build a fresh agent for ``spec`` (see :meth:`build`) and run it on ``task``.

        ``output_type`` is the agent's (see :class:`~trio_agents.Agent`); a
        :class:`Delegator` passes it for the specialists it has ``output_types`` for.

        Without ``budget``, the run draws from ``infra.budget.child(spec.limits)`` (or from
        ``spec.limits`` alone); with one, it charges that budget as it is.
        """
        agent = self.build(
            spec,
            tools=tools,
            infra=infra,
            path=path,
            event_sink=event_sink,
            budget=budget,
            output_type=output_type,
        )
        return await run_nested(agent, task)  # journaled inside a journaled run

    async def resume(
        self,
        spec: AgentSpec,
        waiting: AgentResult,
        decisions: Iterable[ApprovalDecision],
        *,
        history: Sequence[Message],
        tools: ToolExecutor | Sequence[Tool] = (),
        infra: SharedInfra | None = None,
        path: str | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        output_type: Any = str,
    ) -> AgentResult:
        """Build a fresh agent for ``spec`` (see :meth:`build`) and
        :meth:`~trio_agents.Agent.resume` it: ``waiting`` is the run that stopped for
        approval and ``history`` the whole conversation up to it.

        :class:`Delegator` calls this to resume the agents of a tree; a runner without a
        ``resume`` method cannot resume one.
        """
        agent = self.build(
            spec,
            tools=tools,
            infra=infra,
            path=path,
            event_sink=event_sink,
            budget=budget,
            output_type=output_type,
        )
        return await agent.resume(decisions, waiting=waiting, history=history)

    def __repr__(self) -> str:
        models = self._single.model_id if self._single is not None else sorted(self._models)
        return f"<ModelRunner models={models!r} tools={sorted(self._tools)}>"


def _waiting_error(specialist: str, result: AgentResult) -> UsageError | None:
    """The error of a specialist run that stopped for approval (``None`` for any other)
    when its caller cannot wait for the approval (it is not an Agent's tool call): its
    pending calls must not be lost as an empty answer."""
    if result.stop_reason is not StopReason.APPROVAL_REQUIRED:
        return None
    calls = ", ".join(f"{p.tool!r} ({p.call_id})" for p in result.pending_approvals)
    return UsageError(
        f"specialist {specialist!r} stopped for approval of tool calls {calls}, but its "
        "caller is not an Agent that can wait for approval; run the delegate tool in an Agent"
    )


def _carve(parent: Budget | None, limits: UsageLimits | None) -> Budget:
    return parent.child(limits) if parent is not None else Budget(limits)


# --------------------------------------------------------------------------- the delegator


def _check_policy(value: object) -> FailurePolicy:
    if isinstance(value, FailurePolicy):
        return value
    if isinstance(value, str):
        for policy in FailurePolicy:
            if policy.value == value:
                return policy
    allowed = ", ".join(repr(p.value) for p in FailurePolicy)
    raise InvalidArgumentError(
        f"failure_policy must be a FailurePolicy or one of {allowed}; got {value!r}"
    )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_name(argument: str, name: object) -> str:
    if not isinstance(name, str) or not name or "/" in name:
        raise InvalidArgumentError(
            f"{argument} names must be non-empty str without '/', got {name!r}"
        )
    return name


def _check_specialists(
    specialists: Mapping[str, AgentSpec] | Iterable[AgentSpec],
) -> dict[str, AgentSpec]:
    if isinstance(specialists, AgentSpec):
        raise InvalidArgumentError("specialists must be a mapping or a sequence of AgentSpec")
    items: Iterable[tuple[object, object]]
    if isinstance(specialists, Mapping):
        items = specialists.items()
    else:
        items = ((getattr(s, "name", None), s) for s in specialists)
    found: dict[str, AgentSpec] = {}
    for key, spec in items:
        if not isinstance(spec, AgentSpec):
            raise InvalidArgumentError(
                f"specialists[{key!r}] must be an AgentSpec, got {type(spec).__name__}"
            )
        name = _check_name("specialists", key)
        if spec.name != name:
            raise InvalidArgumentError(
                f"specialists[{name!r}] is AgentSpec(name={spec.name!r}); "
                "the key must be the spec's name"
            )
        if name in found:
            raise InvalidArgumentError(f"specialist {name!r} is given twice")
        found[name] = spec
    return found


def _summary(spec: AgentSpec) -> str:
    described = spec.metadata.get("description")
    if isinstance(described, str) and described.strip():
        return described.strip()
    for line in spec.instructions.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _typed(
    argument: str,
    types: Mapping[str, Any] | None,
    found: Mapping[str, AgentSpec],
    live: Mapping[str, Any],
) -> dict[str, Any]:
    """The typed specialists of ``input_types`` / ``output_types`` (``str`` is plain text)."""
    typed: dict[str, Any] = {}
    for name, tp in (types or {}).items():
        if name not in found or name in live:
            raise InvalidArgumentError(
                f"{argument} names {name!r}, which is not a specialist; "
                f"specialists: {', '.join(n for n in found if n not in live) or 'none'}"
            )
        output_spec(tp, OutputMode.TOOL)  # rejects an unsupported type now, naming it
        if tp is not str:
            typed[name] = tp
    return typed


def _input_schema(tp: Any) -> dict[str, JSONValue]:
    return _schema(tp)


def _delegate_definition(
    names: Sequence[str],
    specialists: Mapping[str, AgentSpec],
    handles: Mapping[str, Any],
    inputs: Mapping[str, dict[str, JSONValue]] | None = None,
) -> ToolDefinition:
    lines = []
    for name in names:
        summary = "a running agent" if name in handles else _summary(specialists[name])
        lines.append(f"- {name}: {summary}" if summary else f"- {name}")
    description = (
        "Delegate a subtask to a specialist agent and get its answer back. The specialist "
        "sees only the subtask, so state it completely. Calls made in the same turn run in "
        "parallel. Specialists:\n" + "\n".join(lines)
    )
    return ToolDefinition(
        name=DELEGATE_TOOL,
        description=description,
        parameters={
            "type": "object",
            "properties": {
                "specialist": {
                    "type": "string",
                    "enum": list(names),
                    "description": "Name of the specialist to hand the subtask to.",
                },
                "subtask": _subtask_schema(inputs or {}),
            },
            "required": ["specialist", "subtask"],
            "additionalProperties": False,
        },
    )


def _subtask_schema(inputs: Mapping[str, dict[str, JSONValue]]) -> dict[str, JSONValue]:
    text: dict[str, JSONValue] = {
        "type": "string",
        "description": "The subtask, stated completely: the specialist sees nothing else.",
    }
    if not inputs:
        return text
    typed = ", ".join(repr(name) for name in inputs)
    return {
        "anyOf": [text, *({**schema, "title": name} for name, schema in inputs.items())],
        "description": f"The subtask, stated completely: a string, except for {typed}, "
        "which take a value of the schema titled with their name.",
    }


def _own_spec(spec: AgentSpec) -> AgentSpec:
    """``spec`` without the ``delegate`` tool (the delegator provides it)."""
    if DELEGATE_TOOL not in spec.tools:
        return spec
    return attrs.evolve(spec, tools=tuple(t for t in spec.tools if t != DELEGATE_TOOL))


class Delegator:
    """A main agent and the specialists it may delegate subtasks to.

    :param main: the main agent; it always gets the ``delegate`` tool besides its own.
    :param specialists: the pool, keyed by name (each key is its spec's name); a sequence of
        specs is also accepted. A specialist whose spec lists ``"delegate"`` in its tools may
        delegate to the same pool in turn.
    :param failure_policy: ``"isolate"`` (default), ``"fail_fast"`` or ``"retry"``, or a
        :class:`FailurePolicy`.
    :param max_retries: retries of a failed specialist under ``"retry"``.
    :param retry_backoff: delay before retry *n*; the default waits 1, 2, 4, ... seconds
        (with full jitter, capped at 30). The delay is raised to the error's ``retry_after``.
    :param max_depth: deepest delegation allowed (1: specialists may not delegate).
    :param handles: names served by running orchestrated agents instead of fresh ones.
    :param rng: source of backoff jitter (seed it for reproducible delays).
    :param input_types: the input type of specialists that take a structured subtask, by name
        (the same types as ``output_types``). The ``delegate`` tool's schema offers the type's
        JSON schema for ``subtask``; a subtask that does not load into it is an error result
        the model reads; the specialist gets it as JSON text and the record keeps it as
        :attr:`DelegationRecord.input`.
    :param output_types: the output type of specialists that answer a structured value
        instead of text, by name (any ``output_type`` an :class:`~trio_agents.Agent` takes).
        The runner builds them with that ``output_type``; the caller reads the answer as JSON
        text and the record keeps it as :attr:`DelegationRecord.output`.

    The rules are in the "Delegation" section of the API reference.

    :raises InvalidArgumentError: a bad argument (the message names it), or no specialist
        and no handle at all.
    """

    __slots__ = (
        "_definition",
        "_failure_policy",
        "_handles",
        "_input_types",
        "_main",
        "_max_depth",
        "_max_retries",
        "_names",
        "_output_types",
        "_retry_backoff",
        "_rng",
        "_specialists",
    )

    def __init__(
        self,
        main: AgentSpec,
        specialists: Mapping[str, AgentSpec] | Sequence[AgentSpec],
        *,
        failure_policy: FailurePolicy | str = FailurePolicy.ISOLATE,
        max_retries: int = 2,
        retry_backoff: Backoff | None = None,
        max_depth: int = 3,
        handles: Mapping[str, AgentHandle] | None = None,
        rng: random.Random | None = None,
        output_types: Mapping[str, Any] | None = None,
        input_types: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(main, AgentSpec):
            raise InvalidArgumentError(f"main must be an AgentSpec, got {type(main).__name__}")
        found = _check_specialists(specialists)
        live: dict[str, AgentHandle] = {}
        for key, handle in (handles or {}).items():
            name = _check_name("handles", key)
            if not isinstance(handle, AgentHandle):
                raise InvalidArgumentError(
                    f"handles[{name!r}] must be an AgentHandle (from system.spawn()), "
                    f"got {type(handle).__name__}"
                )
            live[name] = handle
        names = list(found) + [name for name in live if name not in found]
        if not names:
            raise InvalidArgumentError(
                "a Delegator needs at least one specialist or handle to delegate to"
            )
        if retry_backoff is not None and not isinstance(retry_backoff, Backoff):
            raise InvalidArgumentError(
                f"retry_backoff must be a Backoff or None, got {type(retry_backoff).__name__}"
            )
        self._main = main
        self._specialists = found
        self._handles = live
        self._names = tuple(names)
        self._failure_policy = _check_policy(failure_policy)
        self._max_retries = _check_int("max_retries", max_retries, 0)
        self._max_depth = _check_int("max_depth", max_depth, 1)
        self._retry_backoff = (
            retry_backoff if retry_backoff is not None else Backoff(initial=1.0, max_delay=30.0)
        )
        self._rng = rng if rng is not None else random.Random()
        self._output_types = _typed("output_types", output_types, found, live)
        self._input_types = _typed("input_types", input_types, found, live)
        inputs = {name: _input_schema(tp) for name, tp in self._input_types.items()}
        self._definition = _delegate_definition(self._names, found, live, inputs)

    @property
    def main(self) -> AgentSpec:
        """The main agent's spec."""
        return self._main

    @property
    def specialists(self) -> Mapping[str, AgentSpec]:
        """The specialists' specs by name."""
        return dict(self._specialists)

    @property
    def handles(self) -> Mapping[str, AgentHandle]:
        """The live agents by name."""
        return dict(self._handles)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the ``delegate`` tool accepts, in the order of its enum."""
        return self._names

    @property
    def failure_policy(self) -> FailurePolicy:
        """What happens when a specialist fails."""
        return self._failure_policy

    @property
    def max_retries(self) -> int:
        """Retries of a failed specialist under :attr:`FailurePolicy.RETRY`."""
        return self._max_retries

    @property
    def retry_backoff(self) -> Backoff:
        """The delay before each retry."""
        return self._retry_backoff

    @property
    def max_depth(self) -> int:
        """The deepest delegation allowed."""
        return self._max_depth

    def definition(self) -> ToolDefinition:
        """The ``delegate`` tool as the model sees it."""
        return self._definition

    def executor(
        self,
        *,
        runner: AgentRunner,
        infra: SharedInfra | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        path: str | None = None,
    ) -> DelegatingExecutor:
        """A :class:`DelegatingExecutor` serving this team's ``delegate`` tool for one caller.

        :meth:`run` uses one for the main agent; use one yourself to give the tool to an agent
        you build (combine it with the agent's other tools with
        :func:`~trio_agents.combine_executors`).

        :param runner: builds and runs the specialists.
        :param infra: shared infrastructure handed to the runner; its ``log`` and ``budget``
            are the defaults of ``event_sink`` and ``budget``.
        :param event_sink: receives the delegation events.
        :param budget: the *caller's* budget: delegations are counted against it and the
            specialists' budgets are carved from it (default: ``infra.budget``, else none).
        :param path: the caller's path (default: the main spec's name).
        """
        return DelegatingExecutor(
            self, runner=runner, infra=infra, event_sink=event_sink, budget=budget, path=path
        )

    async def run(
        self,
        task: str,
        *,
        runner: AgentRunner,
        infra: SharedInfra | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
    ) -> DelegatorResult:
        """Run the main agent on ``task`` with the ``delegate`` tool; return what happened.

        :param task: the main agent's input.
        :param runner: builds and runs every agent (e.g. :class:`ModelRunner`).
        :param infra: the tree's :class:`~trio_agents.SharedInfra`: its log receives every
            event, its policies check every tool call, its budget bounds the whole tree.
        :param event_sink: overrides ``infra.log``.
        :param budget: overrides ``infra.budget``; the main agent draws from
            ``budget.child(main.limits)``.
        :raises DelegationFailed: a specialist failed under ``fail_fast`` (its
            ``delegations`` hold the records so far).
        :raises AgentError: the main agent's run failed (``error.result`` is its partial
            result); cancellation propagates untouched.
        """
        if not isinstance(task, str):
            raise InvalidArgumentError(f"task must be a str, got {type(task).__name__}")
        if not isinstance(runner, AgentRunner):
            raise InvalidArgumentError(
                f"runner must be an AgentRunner (an async run(spec, task, ...) method, e.g. "
                f"ModelRunner); got {type(runner).__name__}"
            )
        sink = event_sink if event_sink is not None else _infra_log(infra)
        base = budget if budget is not None else _infra_budget(infra)
        main_budget = _carve(base, self._main.limits)
        executor = DelegatingExecutor(
            self,
            runner=runner,
            infra=infra,
            event_sink=sink,
            budget=main_budget,
            path=self._main.name,
        )
        try:
            result = await runner.run(
                _own_spec(self._main),
                task,
                tools=executor,
                infra=infra,
                path=self._main.name,
                event_sink=sink,
                budget=main_budget,
            )
        except DelegationFailed as exc:
            # execute_tool_calls re-raises a lone failure ``from None``: restore the cause.
            exc.__cause__ = exc.cause
            executor._transcript = exc.result
            exc.delegations = executor.records()
            raise
        executor._transcript = result
        return DelegatorResult(
            task=task,
            final_answer=result.final_text,
            delegations=executor.records(),
            result=result,
            suspended=_suspension(
                path=self._main.name,
                name=self._main.name,
                subtask=task,
                call_id="",
                depth=0,
                before=(),
                result=result,
                parked=executor._parked,
                usage=result.usage,
            ),
        )

    async def resume(
        self,
        waiting: DelegatorResult,
        decisions: Iterable[ApprovalDecision],
        *,
        runner: AgentRunner,
        infra: SharedInfra | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
    ) -> DelegatorResult:
        """Continue a run that stopped for approval somewhere in the tree.

        Each decision goes to the agent that asked (by :attr:`PendingApproval.via`): that
        agent is rebuilt from :attr:`DelegatorResult.suspended` and resumed, then every agent
        above it, up to the main agent, so the answer is the one a run in which the person
        approved inline would have given. ``waiting`` may come from another process (it
        round-trips through :func:`~trio_agents.dump` / :func:`~trio_agents.load`).

        :param waiting: the result that stopped for approval.
        :param decisions: one :class:`~trio_agents.ApprovalDecision` per pending call (set
            its ``agent`` when two agents' calls share an id).
        :param runner: builds and resumes the agents; it needs a ``resume`` method, as
            :class:`ModelRunner` has.
        :param infra: as in :meth:`run`.
        :param event_sink: as in :meth:`run`.
        :param budget: as in :meth:`run`: the resumed part draws from it afresh.
        :returns: the resumed part: :attr:`DelegatorResult.delegations` holds the records of
            ``waiting`` followed by those made while resuming; it may stop for approval again.
        :raises InvalidArgumentError: ``waiting`` is not waiting, or the decisions do not
            answer each pending call exactly once (unknown call id, missing decision, an
            ``agent`` that is not where the call waits). Nothing runs.
        """
        if not isinstance(waiting, DelegatorResult):
            raise InvalidArgumentError(
                f"waiting must be a DelegatorResult, got {type(waiting).__name__}"
            )
        state = waiting.suspended
        if state is None:
            raise InvalidArgumentError(
                "waiting did not stop for approval (DelegatorResult.suspended is None; its "
                f"stop reason is {waiting.result.stop_reason}); there is nothing to resume"
            )
        resume = getattr(runner, "resume", None)
        if not isinstance(runner, AgentRunner) or resume is None:
            raise InvalidArgumentError(
                f"runner must be an AgentRunner with a resume method (e.g. ModelRunner); "
                f"got {type(runner).__name__}"
            )
        sink = event_sink if event_sink is not None else _infra_log(infra)
        base = budget if budget is not None else _infra_budget(infra)
        main_budget = _carve(base, self._main.limits)
        executor = DelegatingExecutor(
            self,
            runner=runner,
            infra=infra,
            event_sink=sink,
            budget=main_budget,
            path=self._main.name,
        )
        executor._parked = {n.call_id: n for n in state.nested}
        try:
            result = await resume(
                _own_spec(self._main),
                state.waiting,
                decisions,
                history=state.history,
                tools=executor,
                infra=infra,
                path=self._main.name,
                event_sink=sink,
                budget=main_budget,
            )
        except DelegationFailed as exc:
            exc.__cause__ = exc.cause
            executor._transcript = exc.result
            exc.delegations = (*waiting.delegations, *executor.records())
            raise
        executor._transcript = result
        return DelegatorResult(
            task=waiting.task,
            final_answer=result.final_text,
            delegations=(*waiting.delegations, *executor.records()),
            result=result,
            suspended=_suspension(
                path=self._main.name,
                name=self._main.name,
                subtask=waiting.task,
                call_id="",
                depth=0,
                before=state.history,
                result=result,
                parked=executor._parked,
                usage=state.usage + result.usage,
            ),
        )

    def __repr__(self) -> str:
        return (
            f"<Delegator main={self._main.name!r} names={list(self._names)} "
            f"failure_policy={self._failure_policy.value!r}>"
        )


def _suspension(
    *,
    path: str,
    name: str,
    subtask: str,
    call_id: str,
    depth: int,
    before: Sequence[Message],
    result: AgentResult,
    parked: Mapping[str, SuspendedAgent],
    usage: Usage,
) -> SuspendedAgent | None:
    """The waiting state of an agent whose run gave ``result`` (None when it did not stop
    for approval); ``before`` is its conversation before that run, ``parked`` the states of
    the specialists under its delegate calls."""
    if result.stop_reason is not StopReason.APPROVAL_REQUIRED:
        return None
    under = dict.fromkeys(p.via[0] for p in result.pending_approvals if p.via)
    return SuspendedAgent(
        path=path,
        name=name,
        subtask=subtask,
        call_id=call_id,
        depth=depth,
        history=(*before, *result.messages),
        waiting=result,
        nested=tuple(parked[c] for c in under if c in parked),
        usage=usage,
    )


def _infra_log(infra: SharedInfra | None) -> EventSink | None:
    return infra.log if infra is not None else None


def _infra_budget(infra: SharedInfra | None) -> Budget | None:
    return infra.budget if infra is not None else None


# --------------------------------------------------------------------------- the executor


@attrs.define(eq=False)
class _Entry:
    """One recorded delegation while it runs."""

    call_id: str
    specialist: str
    subtask: str
    input: JSONValue
    path: str
    depth: int
    start: float
    scope: trio.CancelScope | None = None
    record: DelegationRecord | None = None
    failure: BaseException | None = None  # raised as DelegationFailed under fail_fast
    nested: list[DelegatingExecutor] = attrs.Factory(list)
    # Resuming a specialist that stopped for approval: its state and the decisions for it.
    resuming: tuple[SuspendedAgent, tuple[ApprovalDecision, ...]] | None = None
    # The specialist stopped for approval (the caller's turn waits): its state.
    suspended: SuspendedAgent | None = None
    # Whether the caller is an Agent that can wait for approval of this call.
    can_park: bool = False


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _describe(exc: BaseException) -> str:
    leaf = _leaf(exc)
    text = str(leaf)
    return f"{type(leaf).__name__}: {text}" if text else type(leaf).__name__


def _cancelled_in(exc: BaseException) -> trio.Cancelled | None:
    if isinstance(exc, trio.Cancelled):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _cancelled_in(inner)
            if found is not None:
                return found
    return None


def _retryable(exc: BaseException) -> bool:
    leaf = _leaf(exc)
    return isinstance(leaf, Exception) and not isinstance(leaf, UsageError | BudgetExhausted)


_NO_USAGE = Usage()  # shared (frozen): no Usage() built per delegation


def _spent(budget: Budget, result: AgentResult | None) -> Usage:
    if budget.usage != _NO_USAGE or result is None:
        return budget.usage
    return result.usage  # a runner that does not charge its budget


def _error_info(exc: BaseException) -> ErrorInfo:
    leaf = _leaf(exc)
    if isinstance(leaf, AgentError):
        return leaf.info()
    return ErrorInfo(type=type(leaf).__name__, message=str(leaf))


def _result_of(exc: BaseException) -> AgentResult | None:
    leaf = _leaf(exc)
    return leaf.result if isinstance(leaf, AgentError) else None


class DelegatingExecutor:
    """The :class:`~trio_agents.ToolExecutor` of one caller's ``delegate`` tool.

    Made by :meth:`Delegator.executor` (and by :meth:`Delegator.run` for the main agent;
    nested ones are made for specialists that delegate). Each call opens a child nursery in
    which the specialist runs; see the rules in the "Delegation" section of the API reference.
    """

    __slots__ = (
        "_budget",
        "_chain",
        "_delegator",
        "_depth",
        "_entries",
        "_failing",
        "_infra",
        "_parked",
        "_path",
        "_runner",
        "_sink",
        "_transcript",
    )

    def __init__(
        self,
        delegator: Delegator,
        *,
        runner: AgentRunner,
        infra: SharedInfra | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        path: str | None = None,
    ) -> None:
        if not isinstance(delegator, Delegator):
            raise InvalidArgumentError(
                f"delegator must be a Delegator, got {type(delegator).__name__}"
            )
        if not isinstance(runner, AgentRunner):
            raise InvalidArgumentError(
                f"runner must be an AgentRunner (an async run(spec, task, ...) method, e.g. "
                f"ModelRunner); got {type(runner).__name__}"
            )
        self._delegator = delegator
        self._runner = runner
        self._infra = infra
        self._sink = event_sink if event_sink is not None else _infra_log(infra)
        if budget is None:
            budget = _infra_budget(infra)
        self._budget = budget if budget is not None else Budget()
        self._path = path if path is not None else delegator.main.name
        self._depth = 0
        self._chain: tuple[str, ...] = (self._path,)  # display of the delegation path
        self._entries: list[_Entry] = []
        self._failing = False
        self._transcript: AgentResult | None = None
        # Specialists that stopped for approval, by the delegate call that ran them.
        self._parked: dict[str, SuspendedAgent] = {}

    @property
    def path(self) -> str:
        """The caller's path."""
        return self._path

    @property
    def depth(self) -> int:
        """The caller's depth (0 for the main agent)."""
        return self._depth

    @property
    def budget(self) -> Budget:
        """The caller's budget (delegations are counted against it)."""
        return self._budget

    def definitions(self) -> Sequence[ToolDefinition]:
        """The ``delegate`` tool."""
        return (self._delegator.definition(),)

    def records(self) -> tuple[DelegationRecord, ...]:
        """Every finished delegation made through this executor and, nested, through its
        specialists: depth-first, each caller's in call order."""
        out: list[DelegationRecord] = []
        self._collect(out)
        return tuple(out)

    def _collect(self, out: list[DelegationRecord]) -> None:
        for entry in self._ordered():
            if entry.record is not None:
                out.append(entry.record)
            for child in entry.nested:
                child._collect(out)

    def _ordered(self) -> list[_Entry]:
        # Entries are reserved when execute() is entered, which is call order when the turn's
        # calls start one after another (as Agent runs them); the caller's transcript, when
        # known, settles the order for any executor.
        if self._transcript is None:
            return list(self._entries)
        positions: dict[str, int] = {}
        for message in self._transcript.messages:
            if isinstance(message, AssistantMessage):
                for call in message.tool_calls:
                    positions.setdefault(call.id, len(positions))
        last = len(positions)
        return sorted(self._entries, key=lambda e: positions.get(e.call_id, last))

    def _child(self, entry: _Entry, budget: Budget) -> DelegatingExecutor:
        child = DelegatingExecutor(
            self._delegator,
            runner=self._runner,
            infra=self._infra,
            event_sink=self._sink,
            budget=budget,
            path=entry.path,
        )
        child._depth = entry.depth
        child._chain = (*self._chain, entry.specialist)
        return child

    def _emit(self, event: Event) -> None:
        if self._sink is not None:
            self._sink(event)

    # ------------------------------------------------------------------ one call

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        """Run one ``delegate`` call; only ``fail_fast`` raises (:class:`DelegationFailed`)."""
        if call.name != DELEGATE_TOOL:
            return _error(call, f"unknown tool {call.name!r}; available tools: {DELEGATE_TOOL}")
        if call.raw_arguments is not None:
            return _error(
                call,
                f"invalid JSON arguments for tool {DELEGATE_TOOL!r}; send one JSON object "
                'like {"specialist": "...", "subtask": "..."}',
            )
        delegator = self._delegator
        name = call.arguments.get("specialist")
        subtask = call.arguments.get("subtask")
        extra = sorted(set(call.arguments) - {"specialist", "subtask"})
        given: JSONValue = None
        typed_input = delegator._input_types.get(name) if isinstance(name, str) else None
        if typed_input is not None and not extra:
            # A typed specialist's subtask is a value of its input type, sent as JSON text.
            try:
                given = dump(load(subtask, typed_input))
            except DeserializationError as exc:
                return _error(
                    call,
                    f"invalid subtask for specialist {name!r}: {exc}; send a value of its "
                    "input type as the subtask",
                )
            subtask = json.dumps(given)
        if not isinstance(name, str) or not isinstance(subtask, str) or extra:
            problem = (
                f"unexpected arguments {extra}"
                if extra and isinstance(name, str) and isinstance(subtask, str)
                else "it needs 'specialist' and 'subtask' as strings"
            )
            return _error(
                call,
                f"invalid arguments for tool {DELEGATE_TOOL!r}: {problem}; specialist must be "
                f"one of: {', '.join(delegator.names)}",
            )
        caller = current_agent()
        decisions = (
            caller._decisions_for(call.id) if caller is not None and caller._resuming else None
        )
        resuming: SuspendedAgent | None = None
        if decisions is not None:
            resuming = self._parked.get(call.id)
            if resuming is None:
                return _error(
                    call,
                    f"delegation {call.id!r} waits for approval but no suspended specialist "
                    "is held for it; resume the tree with Delegator.resume",
                )
        if self._failing and all(
            e.record is not None or e.suspended is not None for e in self._entries
        ):
            # The failed turn is over (every delegation of it has its record): a later run
            # of the same agent starts afresh.
            self._failing = False
        now = trio.current_time()
        entry = _Entry(
            call_id=call.id,
            specialist=name,
            subtask=subtask,
            input=given,
            path=f"{self._path}/{name}",
            depth=self._depth + 1,
            start=now,
            can_park=caller is not None,
        )
        if resuming is not None:
            assert decisions is not None
            del self._parked[call.id]
            entry.resuming = (resuming, decisions)
        self._entries.append(entry)
        self._emit(
            DelegationStarted(
                time=now, agent=entry.path, specialist=name, subtask=subtask, depth=entry.depth
            )
        )
        if self._failing:
            record = self._finish(
                entry,
                result=f"specialist {name!r} was not started: a sibling delegation failed",
                error="Cancelled: a sibling delegation failed (fail_fast)",
                attempts=0,
                cancelled=True,
            )
            return _error(call, record.result)
        refusal, budget_error = (None, None) if resuming is not None else self._refusal(entry)
        if refusal is not None:
            self._finish(entry, result=refusal, error=refusal, attempts=0)
            if budget_error is not None and self._fail_fast(entry):
                raise DelegationFailed(name, budget_error)
            return _error(call, refusal)
        try:
            async with trio.open_nursery() as nursery:
                entry.scope = nursery.cancel_scope
                nursery.start_soon(self._delegate, entry, name=f"delegate {entry.path}")
        except BaseExceptionGroup as group:
            # Cancelled from outside: the caller gets the bare Cancelled, not a group.
            reraise_cancelled(group)
            raise
        if entry.suspended is not None:
            # The specialist waits for a person: so does this call, and the caller's turn.
            self._parked[call.id] = entry.suspended
            assert caller is not None
            caller._park(call.id, entry.suspended.waiting.pending_approvals)
            return ToolResultBlock(
                tool_call_id=call.id,
                content=f"specialist {name!r} waits for approval",
                tool_name=call.name,
            )
        done = entry.record
        assert done is not None
        if entry.failure is not None:
            raise DelegationFailed(name, entry.failure)
        return ToolResultBlock(
            tool_call_id=call.id,
            content=done.result,
            is_error=not done.success,
            tool_name=call.name,
        )

    def _refusal(self, entry: _Entry) -> tuple[str | None, BudgetExhausted | None]:
        """Why this delegation may not start (and the budget error, when that is why)."""
        delegator = self._delegator
        name = entry.specialist
        if name not in delegator._specialists and name not in delegator._handles:
            return (
                f"unknown specialist {name!r}; available specialists: {', '.join(delegator.names)}",
                None,
            )
        if name in self._chain[1:]:
            return f"delegation cycle: {' -> '.join((*self._chain, name))}", None
        if entry.depth > delegator.max_depth:
            return (
                f"delegation depth limit {delegator.max_depth} reached: {self._path!r} may not "
                "delegate further; do the subtask yourself",
                None,
            )
        try:
            self._budget.check_spawn()
        except BudgetExhausted as exc:
            return f"specialist {name!r} was not started: {exc}", exc
        self._budget.charge_spawn()
        return None, None

    def _fail_fast(self, entry: _Entry) -> bool:
        """Under fail_fast, make ``entry`` the failure of this caller (True) unless another
        delegation already is; cancel the siblings still running."""
        if self._delegator.failure_policy is not FailurePolicy.FAIL_FAST or self._failing:
            return False
        self._failing = True
        reason = f"delegation to {entry.specialist!r} failed (fail_fast)"
        for other in self._entries:
            if other is not entry and other.record is None and other.scope is not None:
                other.scope.cancel(reason=reason)
        return True

    async def _delegate(self, entry: _Entry) -> None:
        """The task of one delegation: attempts, retries, and the record."""
        delegator = self._delegator
        handle = delegator._handles.get(entry.specialist)
        spec = delegator._specialists.get(entry.specialist)
        # A resumed specialist is never run afresh: that would redo approved calls.
        retrying = delegator.failure_policy is FailurePolicy.RETRY and entry.resuming is None
        # Of the finished attempts (and, when resuming, of the runs before the stop).
        usage = entry.resuming[0].usage if entry.resuming is not None else _NO_USAGE
        attempts = 0
        current: Budget | None = None  # of the attempt in flight
        error: BaseException | None = None
        result: AgentResult | None = None
        try:
            while True:
                attempts += 1
                current = self._budget.child(spec.limits if spec is not None else None)
                try:
                    if handle is not None and entry.resuming is not None:
                        result = await handle.resume(entry.resuming[1])
                    elif handle is not None:
                        result = await handle.send_message(entry.subtask)
                    else:
                        assert spec is not None
                        result = await self._run_spec(entry, spec, current)
                except Exception as exc:
                    error, result = exc, None
                    spent = _spent(current, _result_of(exc))
                else:
                    parks = entry.can_park
                    error = None if parks else _waiting_error(entry.specialist, result)
                    spent = _spent(current, result)
                usage = spent if usage is _NO_USAGE else usage + spent  # 0 + u == u
                current = None
                if error is None:
                    break
                if not retrying or attempts > delegator.max_retries or not _retryable(error):
                    break
                try:
                    self._budget.check_spawn()
                except BudgetExhausted:
                    break  # report the failure itself
                self._budget.charge_spawn()
                delay = delegator.retry_backoff.delay(attempts, delegator._rng)
                leaf = _leaf(error)
                if isinstance(leaf, AgentError) and leaf.retry_after is not None:
                    delay = max(delay, leaf.retry_after)
                self._emit(
                    RetryScheduled(
                        time=trio.current_time(),
                        agent=entry.path,
                        attempt=attempts,
                        delay=delay,
                        error=_error_info(error),
                    )
                )
                await trio.sleep(delay)
        except BaseException as exc:
            if current is not None:
                usage = usage + current.usage
            cancelled = _cancelled_in(exc)
            why = (cancelled.reason or cancelled.source) if cancelled is not None else None
            if cancelled is not None:
                outcome, error_text = f"cancelled: {why}", f"Cancelled: {why}"
            else:
                outcome, error_text = f"interrupted: {_describe(exc)}", _describe(exc)
            self._finish(
                entry,
                result=f"specialist {entry.specialist!r} was {outcome}",
                error=error_text,
                attempts=attempts,
                usage=usage,
                cancelled=True,
            )
            raise
        if error is None:
            assert result is not None
            if result.stop_reason is StopReason.APPROVAL_REQUIRED:
                entry.suspended = _suspension(
                    path=entry.path,
                    name=entry.specialist,
                    subtask=entry.subtask,
                    call_id=entry.call_id,
                    depth=entry.depth,
                    before=entry.resuming[0].history if entry.resuming is not None else (),
                    result=result,
                    parked=entry.nested[-1]._parked if entry.nested else {},
                    usage=usage,
                )
                return  # no record yet: the delegation goes on when resumed
            if entry.specialist in delegator._output_types and handle is None:
                output = dump(result.output)
                self._finish(
                    entry,
                    result=json.dumps(output),
                    success=True,
                    attempts=attempts,
                    usage=usage,
                    output=output,
                )
            else:
                self._finish(
                    entry, result=result.final_text, success=True, attempts=attempts, usage=usage
                )
        else:
            self._failed(entry, error, attempts, usage)

    def _failed(self, entry: _Entry, error: BaseException, attempts: int, usage: Usage) -> None:
        described = _describe(error)
        self._finish(
            entry,
            result=f"specialist {entry.specialist!r} failed: {described}",
            error=described,
            attempts=attempts,
            usage=usage,
        )
        if self._fail_fast(entry):
            leaf = _leaf(error)
            if isinstance(leaf, DelegationFailed):
                leaf.__cause__ = leaf.cause  # see Delegator.run
            entry.failure = leaf

    async def _run_spec(self, entry: _Entry, spec: AgentSpec, budget: Budget) -> AgentResult:
        tools: ToolExecutor | Sequence[Tool] = ()
        child: DelegatingExecutor | None = None
        if DELEGATE_TOOL in spec.tools:
            child = self._child(entry, budget)
            if entry.resuming is not None:
                child._parked = {n.call_id: n for n in entry.resuming[0].nested}
            entry.nested.append(child)
            tools = child
        try:
            typed = self._delegator._output_types.get(entry.specialist)
            extra: dict[str, Any] = {} if typed is None else {"output_type": typed}
            if entry.resuming is None:
                result = await self._runner.run(
                    _own_spec(spec),
                    entry.subtask,
                    tools=tools,
                    infra=self._infra,
                    path=entry.path,
                    event_sink=self._sink,
                    budget=budget,
                    **extra,
                )
            else:
                state, decisions = entry.resuming
                resume = getattr(self._runner, "resume", None)
                if resume is None:
                    raise UsageError(
                        f"runner {type(self._runner).__name__} has no resume method; "
                        "it cannot resume a specialist that waited for approval"
                    )
                result = await resume(
                    _own_spec(spec),
                    state.waiting,
                    decisions,
                    history=state.history,
                    tools=tools,
                    infra=self._infra,
                    path=entry.path,
                    event_sink=self._sink,
                    budget=budget,
                    **extra,
                )
        except Exception as exc:
            if child is not None:
                child._transcript = _result_of(exc)
            raise
        if child is not None:
            child._transcript = result
        return result

    def _finish(
        self,
        entry: _Entry,
        *,
        result: str,
        success: bool = False,
        error: str | None = None,
        attempts: int,
        usage: Usage | None = None,
        cancelled: bool = False,
        output: JSONValue = None,
    ) -> DelegationRecord:
        now = trio.current_time()
        record = DelegationRecord(
            specialist=entry.specialist,
            subtask=entry.subtask,
            result=result,
            success=success,
            duration=now - entry.start,
            usage=usage if usage is not None else _NO_USAGE,
            depth=entry.depth,
            error=error,
            cancelled=cancelled,
            attempts=attempts,
            path=entry.path,
            input=entry.input,
            output=output,
        )
        entry.record = record
        self._emit(
            DelegationFinished(
                time=now,
                agent=entry.path,
                specialist=record.specialist,
                subtask=record.subtask,
                depth=record.depth,
                success=record.success,
                cancelled=record.cancelled,
                duration=record.duration,
                error=record.error,
                usage=record.usage,
                attempts=record.attempts,
            )
        )
        return record

    def __repr__(self) -> str:
        return f"<DelegatingExecutor {self._path!r} depth={self._depth}>"


def _error(call: ToolCallBlock, content: str) -> ToolResultBlock:
    return ToolResultBlock(
        tool_call_id=call.id, content=content, is_error=True, tool_name=call.name
    )
