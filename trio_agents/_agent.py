"""The agent loop: model → tool calls → results → … → final answer.

Rules (the narrative version is in ``docs/agents.rst``):

* :meth:`Agent.run` adds its input to the agent's history, then alternates model calls and
  tool execution until the model answers without tool calls.
* At most ``max_turns`` model responses per run. When the last allowed response still asks
  for tools, the tools are *not* run and :class:`MaxTurnsExceeded` is raised.
* Retryable model errors are retried with exponential backoff and full jitter on trio's
  clock; the delay is never shorter than the provider's ``retry_after``. Non-retryable
  errors, and retryable ones past ``RetryPolicy.max_attempts``, end the run.
* A run that fails raises the error with ``error.result`` set to the partial result.
* :meth:`Agent.abort` (or a supervisor) stops a run: it returns an :class:`AgentResult` with
  :attr:`StopReason.ABORTED` and the partial transcript. Cancellation from outside (the
  enclosing scope) propagates ``trio.Cancelled`` untouched; the partial transcript stays in
  :attr:`Agent.messages` and :attr:`Agent.last_result`.
* Tool calls interrupted by abort or cancellation get error results, so the history stays a
  valid conversation for the next run.
"""

from __future__ import annotations

import contextvars
import random
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, Literal, overload

import attrs
import trio

from ._cancel import only_cancelled, reraise_cancelled
from ._errors import (
    AgentError,
    AlreadyRunningError,
    ApprovalPending,
    InvalidArgumentError,
    MaxTurnsExceeded,
    ModelTimeout,
    NetworkError,
    NoMessagesError,
    OutputValidationError,
    RunTimeout,
    UsageError,
)
from ._events import (
    EventSink,
    ModelDelta,
    ModelRequested,
    ModelResponded,
    RetryScheduled,
    RunFinished,
    RunStarted,
    TurnFinished,
    TurnStarted,
)
from ._history import HistoryView
from ._jitter import backoff_delay
from ._limits import Budget, UsageLimits
from ._messages import (
    AgentResult,
    ApprovalDecision,
    AssistantMessage,
    Cost,
    ErrorInfo,
    JSONValue,
    Message,
    OutputT,
    PendingApproval,
    StopReason,
    SystemMessage,
    ToolCallBlock,
    ToolResultBlock,
    ToolResultMessage,
    TransferSignal,
    Usage,
    UserMessage,
)
from ._models import (
    Model,
    ModelRequest,
    ModelSettings,
    OutputMode,
    StreamDone,
    check_model,
    native_output,
)
from ._output import OutputInvalid, OutputSpec, output_spec
from ._tools import Tool, ToolExecutor, ToolPolicy, Toolset, execute_tool_calls
from .models._prices import PriceTable, cost_for

# The agent whose run is in progress in this task (tools run in child tasks, which inherit
# it): how a tool such as ``transfer_to_agent`` reaches the agent that called it.
_CURRENT_AGENT: contextvars.ContextVar[Agent | None] = contextvars.ContextVar(
    "trio_agents_current_agent", default=None
)


def current_agent() -> Agent | None:
    """The :class:`Agent` whose run is in progress in this task (and its tools), if any."""
    return _CURRENT_AGENT.get()


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be > 0 or None, got {value!r}"
        )


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be an int >= 1, got {value!r}"
        )


def _names(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise InvalidArgumentError(f"tools must be a sequence of tool names, not a str ({value!r})")
    return tuple(value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a run retries retryable model errors.

    The delay before retry *n* (1-based) is drawn uniformly from
    ``[0, min(max_delay, initial_delay * factor ** (n - 1))]`` ("full jitter"), or is that
    cap exactly when ``jitter`` is false, and is raised to the error's ``retry_after`` when
    the provider gave one.
    """

    max_attempts: int = attrs.field(default=3, validator=_at_least_one)
    """Attempts per model call, the first included (1 disables retries)."""
    initial_delay: float = 1.0
    """Cap of the first retry's delay, in seconds."""
    factor: float = 2.0
    """Growth of the cap per retry."""
    max_delay: float = 60.0
    """Largest cap, in seconds."""
    jitter: bool = True
    """Draw the delay uniformly below the cap (full jitter) instead of using the cap."""

    def __attrs_post_init__(self) -> None:
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise InvalidArgumentError(
                "RetryPolicy needs initial_delay >= 0, max_delay >= 0 and factor >= 1; "
                f"got initial_delay={self.initial_delay!r}, max_delay={self.max_delay!r}, "
                f"factor={self.factor!r}"
            )

    def delay(self, retry: int, error: AgentError | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1-based) after ``error``."""
        delay = backoff_delay(
            retry,
            initial=self.initial_delay,
            factor=self.factor,
            max_delay=self.max_delay,
            jitter=self.jitter,
            rng=rng,
        )
        if error is not None and error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return delay


_DEFAULT_RETRY = RetryPolicy()
_NO_TOOLS = Toolset()


@attrs.frozen(kw_only=True)
class AgentSpec:
    """A declarative, serialisable description of an agent."""

    name: str
    """The agent's name (unique among its siblings)."""
    instructions: str = ""
    """The system prompt."""
    tools: tuple[str, ...] = attrs.field(default=(), converter=_names)
    """Names of the tools the agent may use."""
    model: str | None = None
    """Model id, e.g. ``"openai:gpt-4o-mini"``; ``None`` lets the runner choose."""
    max_turns: int = attrs.field(default=10, validator=_at_least_one)
    """Model responses allowed per run."""
    limits: UsageLimits | None = None
    """Usage limits of one run."""
    model_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    """Deadline of each model call, in seconds."""
    run_timeout: float | None = attrs.field(default=None, validator=_positive_or_none)
    """Deadline of each whole run, in seconds."""
    metadata: dict[str, JSONValue] = attrs.field(factory=dict)
    """Free-form data for the application."""


# A tuple, not a union: ``isinstance`` against ``A | B | C | D`` is several times slower, and
# this check runs on every run's input.
_MESSAGE_TYPES = (SystemMessage, UserMessage, AssistantMessage, ToolResultMessage)

# Shared zero values (frozen): a run that has not been charged yet starts from these rather
# than building a fresh Usage() and Cost() (~0.4 µs each) on every run.
_NO_USAGE = Usage()
_NO_COST = Cost()
_NOTHING_PARKED: Mapping[str, tuple[PendingApproval, ...]] = types.MappingProxyType({})
_NO_DECISIONS: Mapping[str, tuple[ApprovalDecision, ...]] = types.MappingProxyType({})


def _as_messages(input: str | Message | Sequence[Message]) -> list[Message]:
    if isinstance(input, str):
        return [UserMessage.text(input)]
    messages: list[Message]
    if isinstance(input, _MESSAGE_TYPES):
        return [input]
    if type(input) is tuple or type(input) is list or isinstance(input, Sequence):
        # (the exact builtins first: an ABC isinstance check is several times slower)
        messages = list(input)  # type: ignore[arg-type]
        for index, message in enumerate(messages):
            if not isinstance(message, _MESSAGE_TYPES):
                raise InvalidArgumentError(
                    f"run() input[{index}] must be a message, got {type(message).__name__}"
                )
        return messages
    raise InvalidArgumentError(
        f"run() takes a str, a message or a sequence of messages, got {type(input).__name__}"
    )


_OUTPUT_MODES = ("auto", "native", "tool")


Watchdog = Callable[["trio.TaskStatus[None]"], Awaitable[None]]
"""What :meth:`Agent.watchdog` returns: ``async def watch(task_status)``, started with
``nursery.start`` for the incarnation's life."""


class Agent(Generic[OutputT]):
    """A model with instructions and tools, and the conversation it has had.

    Generic in its output type: ``Agent(model, output_type=Person)`` is an ``Agent[Person]``
    whose runs return ``AgentResult[Person]``; without ``output_type`` it is an
    ``Agent[str]`` that answers text.

    :param model: the :class:`Model` to call.
    :param name: the agent's name, used in events and errors.
    :param instructions: the system prompt.
    :param tools: :class:`Tool` objects, or any :class:`ToolExecutor`.
    :param max_turns: model responses allowed per run.
    :param retry: how retryable model errors are retried.
    :param settings: model settings sent with every request.
    :param model_timeout: deadline of each model call (retried as a network error).
    :param run_timeout: deadline of each whole run (the run fails with :class:`RunTimeout`).
    :param limits: usage limits of each run (a fresh :class:`Budget` per run, carved from
        ``budget`` when both are given).
    :param budget: a budget shared with other agents (checked before each model call).
    :param deps: anything; tools receive it as :attr:`ToolContext.deps`.
    :param infra: shared infrastructure handed to tools as :attr:`ToolContext.infra`.
    :param policy: checked before every tool call; a denial becomes an error result.
    :param event_sink: receives every event of every run.
    :param max_tool_concurrency: tool calls of one turn that may run at once.
    :param stream: call :meth:`Model.stream` and emit :class:`ModelDelta` events.
    :param rng: source of retry jitter (seed it for reproducible delays).
    :param prices: prices to compute :attr:`AgentResult.cost` with (a
        :class:`~trio_agents.models.PriceTable` or a mapping for one); models it does not
        price are listed in :attr:`AgentResult.unpriced_models` and cost nothing.
    :param use_genai_prices: also look prices up in ``genai-prices`` (extra ``prices``).
        Without ``prices`` and this, no cost is computed and every model is unpriced.
    :param path: the agent's path in a tree (defaults to ``name``).
    :param output_type: the type of the final answer (:attr:`AgentResult.output`): ``str``
        (the default, a text answer), an attrs class, a dataclass, a TypedDict, ``int``,
        ``float``, ``bool``, ``list[X]``, a ``Literal``, an enum, or a union of those. The
        model is given its JSON schema and the answer is loaded by the converter.
    :param output_mode: how the structured answer is asked for: ``"native"`` (the model's
        structured output, :attr:`OutputMode.NATIVE`), ``"tool"`` (a final-result tool,
        :attr:`OutputMode.TOOL`) or ``"auto"`` (native when the model declares
        ``native_output = True``, the tool otherwise).
    :param output_retries: how many times an answer that does not match ``output_type`` is
        sent back to the model with what was wrong before the run fails with
        :class:`OutputValidationError`. Each retry is a turn (it counts against
        ``max_turns``).
    """

    # Slots: an agent's 30 attributes in an instance dict took ~1.6 KB, paid by every spawned
    # agent, restart and delegation; in slots they take ~0.3 KB. ``__dict__`` keeps setting
    # other attributes possible (it is made only when one is set), ``__weakref__`` weak refs.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_abort_reason",
        "_abort_scope",
        "_executor",
        "_history",
        "_last_result",
        "_limiter",
        "_max_tool_concurrency",
        "_model",
        "_output",
        "_parking",
        "_prices",
        "_resuming",
        "_rng",
        "_running",
        "_runs",
        "_tool_definitions",
        "_transfers",
        "_usage",
        "_use_genai_prices",
        "_waiting",
        "budget",
        "deps",
        "event_sink",
        "infra",
        "instructions",
        "limits",
        "max_turns",
        "model_timeout",
        "name",
        "output_retries",
        "path",
        "policy",
        "retry",
        "run_timeout",
        "settings",
        "stream",
    )

    @overload
    def __init__(
        self: Agent[str],
        model: Model,
        *,
        name: str = "agent",
        instructions: str = "",
        tools: Iterable[Tool] | ToolExecutor = (),
        max_turns: int = 10,
        retry: RetryPolicy | None = None,
        settings: ModelSettings | None = None,
        model_timeout: float | None = None,
        run_timeout: float | None = None,
        limits: UsageLimits | None = None,
        budget: Budget | None = None,
        deps: Any = None,
        infra: Any = None,
        policy: ToolPolicy | None = None,
        event_sink: EventSink | None = None,
        max_tool_concurrency: int = 10,
        stream: bool = False,
        rng: random.Random | None = None,
        path: str | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        use_genai_prices: bool = False,
        output_type: type[str] = str,
        output_mode: Literal["auto", "native", "tool"] = "auto",
        output_retries: int = 1,
    ) -> None: ...
    @overload
    def __init__(
        self,
        model: Model,
        *,
        name: str = "agent",
        instructions: str = "",
        tools: Iterable[Tool] | ToolExecutor = (),
        max_turns: int = 10,
        retry: RetryPolicy | None = None,
        settings: ModelSettings | None = None,
        model_timeout: float | None = None,
        run_timeout: float | None = None,
        limits: UsageLimits | None = None,
        budget: Budget | None = None,
        deps: Any = None,
        infra: Any = None,
        policy: ToolPolicy | None = None,
        event_sink: EventSink | None = None,
        max_tool_concurrency: int = 10,
        stream: bool = False,
        rng: random.Random | None = None,
        path: str | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        use_genai_prices: bool = False,
        output_type: type[OutputT],
        output_mode: Literal["auto", "native", "tool"] = "auto",
        output_retries: int = 1,
    ) -> None: ...
    @overload
    def __init__(
        self: Agent[Any],
        model: Model,
        *,
        name: str = "agent",
        instructions: str = "",
        tools: Iterable[Tool] | ToolExecutor = (),
        max_turns: int = 10,
        retry: RetryPolicy | None = None,
        settings: ModelSettings | None = None,
        model_timeout: float | None = None,
        run_timeout: float | None = None,
        limits: UsageLimits | None = None,
        budget: Budget | None = None,
        deps: Any = None,
        infra: Any = None,
        policy: ToolPolicy | None = None,
        event_sink: EventSink | None = None,
        max_tool_concurrency: int = 10,
        stream: bool = False,
        rng: random.Random | None = None,
        path: str | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        use_genai_prices: bool = False,
        output_type: object,
        output_mode: Literal["auto", "native", "tool"] = "auto",
        output_retries: int = 1,
    ) -> None: ...
    def __init__(
        self,
        model: Model,
        *,
        name: str = "agent",
        instructions: str = "",
        tools: Iterable[Tool] | ToolExecutor = (),
        max_turns: int = 10,
        retry: RetryPolicy | None = None,
        settings: ModelSettings | None = None,
        model_timeout: float | None = None,
        run_timeout: float | None = None,
        limits: UsageLimits | None = None,
        budget: Budget | None = None,
        deps: Any = None,
        infra: Any = None,
        policy: ToolPolicy | None = None,
        event_sink: EventSink | None = None,
        max_tool_concurrency: int = 10,
        stream: bool = False,
        rng: random.Random | None = None,
        path: str | None = None,
        prices: PriceTable | Mapping[str, Any] | None = None,
        use_genai_prices: bool = False,
        output_type: Any = str,
        output_mode: Literal["auto", "native", "tool"] = "auto",
        output_retries: int = 1,
    ) -> None:
        self._model = check_model(model)
        if output_mode not in _OUTPUT_MODES:
            raise InvalidArgumentError(
                f"output_mode must be one of {', '.join(map(repr, _OUTPUT_MODES))}, "
                f"got {output_mode!r}"
            )
        if not isinstance(output_retries, int) or output_retries < 0:
            raise InvalidArgumentError(
                f"output_retries must be an int >= 0, got {output_retries!r}"
            )
        mode = (
            OutputMode.NATIVE
            if output_mode == "native" or (output_mode == "auto" and native_output(model))
            else OutputMode.TOOL
        )
        self._output: OutputSpec | None = output_spec(output_type, mode)
        self.output_retries = output_retries
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"name must be a non-empty str, got {name!r}")
        if not isinstance(max_turns, int) or max_turns < 1:
            raise InvalidArgumentError(f"max_turns must be an int >= 1, got {max_turns!r}")
        if not isinstance(max_tool_concurrency, int) or max_tool_concurrency < 1:
            raise InvalidArgumentError(
                f"max_tool_concurrency must be an int >= 1, got {max_tool_concurrency!r}"
            )
        for arg, value in (("model_timeout", model_timeout), ("run_timeout", run_timeout)):
            if value is not None and not value > 0:
                raise InvalidArgumentError(f"{arg} must be > 0 or None, got {value!r}")
        self.name = name
        self.path = path if path is not None else name
        self.instructions = instructions
        if isinstance(tools, tuple) and not tools:
            # The default: one shared empty Toolset (it has no mutators) instead of a new one
            # per agent, which every spawn, restart and delegation would build.
            self._executor: ToolExecutor = _NO_TOOLS
        elif hasattr(tools, "execute") and hasattr(tools, "definitions"):
            self._executor = tools  # type: ignore[assignment]
        else:
            self._executor = Toolset(tools)
        self._tool_definitions = tuple(self._executor.definitions())
        if self._output is not None and self._output.schema.mode is OutputMode.TOOL:
            final = self._output.tool
            if any(d.name == final.name for d in self._tool_definitions):
                raise InvalidArgumentError(
                    f"a tool named {final.name!r} clashes with the final-result tool of "
                    "output_type; rename the tool or use output_mode='native'"
                )
            self._tool_definitions = (*self._tool_definitions, final)
        self.max_turns = max_turns
        # RetryPolicy is frozen and holds only numbers: the default can be shared.
        self.retry = retry if retry is not None else _DEFAULT_RETRY
        self.settings = settings if settings is not None else ModelSettings()
        self.model_timeout = model_timeout
        self.run_timeout = run_timeout
        self.limits = limits
        self.budget = budget
        self.deps = deps
        self.infra = infra
        self.policy = policy
        self.event_sink = event_sink
        self.stream = stream
        self._max_tool_concurrency = max_tool_concurrency
        self._limiter: trio.CapacityLimiter | None = None  # made at the first tool call
        # Made at the first retry when not given: a Random costs ~9 µs (seeded from
        # os.urandom) and 2.5 KB, which every spawn, restart and delegation would pay.
        self._rng: random.Random | None = rng
        self._prices = (
            PriceTable(prices)
            if prices is not None  # skips an ABC isinstance check in the common case
            and isinstance(prices, Mapping)
            and not isinstance(prices, PriceTable)
            else prices
        )
        self._use_genai_prices = use_genai_prices
        # Append-only while requests may share it (HistoryView): replaced, never emptied.
        self._history: list[Message] = []
        self._usage = _NO_USAGE
        self._runs = 0
        self._running = False
        self._abort_scope: trio.CancelScope | None = None
        self._abort_reason: str | None = None
        self._last_result: AgentResult | None = None
        self._waiting: AgentResult[Any] | None = None
        # Transfers requested in the current turn, by tool call id (see request_transfer).
        self._transfers: dict[str, TransferSignal] = {}
        # Tool calls of the current turn that wait for approval deeper in a tree (a
        # delegation whose specialist stopped for approval), by call id: see _park.
        # (A shared empty mapping until used: two dicts per agent would cost every spawn.)
        self._parking: Mapping[str, tuple[PendingApproval, ...]] = _NOTHING_PARKED
        # The decisions a resumed turn hands to those calls, by call id (see resume).
        self._resuming: Mapping[str, tuple[ApprovalDecision, ...]] = _NO_DECISIONS

    @classmethod
    def from_spec(
        cls,
        spec: AgentSpec,
        model: Model,
        *,
        tools: Iterable[Tool] | Mapping[str, Tool] = (),
        **kwargs: Any,
    ) -> Agent:
        """Build an agent from a spec, picking the spec's tools by name from ``tools``."""
        available = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in tools}
        missing = [name for name in spec.tools if name not in available]
        if missing:
            raise InvalidArgumentError(
                f"AgentSpec {spec.name!r} names unknown tools {missing}; "
                f"available: {sorted(available) or 'none'}"
            )
        kwargs.setdefault("model_timeout", spec.model_timeout)
        kwargs.setdefault("run_timeout", spec.run_timeout)
        kwargs.setdefault("limits", spec.limits)
        return cls(
            model,
            name=spec.name,
            instructions=spec.instructions,
            tools=[available[name] for name in spec.tools],
            max_turns=spec.max_turns,
            **kwargs,
        )

    # ------------------------------------------------------------------ state

    @property
    def model(self) -> Model:
        """The model this agent calls."""
        return self._model

    @property
    def messages(self) -> tuple[Message, ...]:
        """The whole conversation so far, across runs (the system prompt is not included)."""
        return tuple(self._history)

    @property
    def usage(self) -> Usage:
        """Usage of every run of this agent."""
        return self._usage

    @property
    def running(self) -> bool:
        """Whether a run is in progress."""
        return self._running

    @property
    def waiting(self) -> AgentResult | None:
        """The result of the run that stopped for approval and waits for :meth:`resume`
        (``None`` when nothing waits)."""
        return self._waiting

    @property
    def last_result(self) -> AgentResult | None:
        """The result of the latest run, including a cancelled or failed one (partial)."""
        return self._last_result

    def abort(self, reason: str = "aborted by owner") -> None:
        """Stop the current run; it returns with :attr:`StopReason.ABORTED`.

        Does nothing when no run is in progress.
        """
        if self._abort_scope is not None:
            self._abort_reason = reason
            self._abort_scope.cancel(reason=reason)

    def watchdog(self) -> Watchdog | None:
        """What an :class:`~trio_agents.AgentOrchestrator` should watch while this agent is
        alive; ``None`` (the default) for nothing.

        A subclass whose agent depends on something outside the process (a host, a server
        session) returns an async function ``watch(task_status)``. The orchestrator starts
        it with ``nursery.start`` in the incarnation's nursery before the agent counts as
        running, and cancels it when the incarnation ends:

        - it calls ``task_status.started()`` once the agent is ready; an exception before
          that is a failure to start (raised to the caller of the first
          :meth:`~trio_agents.AgentSystem.spawn`, supervised for a restart);
        - an exception after that fails the incarnation, even while the agent is idle: the
          request in progress, if any, is answered first, then the supervisor policy decides
          as for a failed request (queued requests stay for the next incarnation);
        - returning ends the watch and nothing else.
        """
        return None

    def incarnation_ended(self) -> None:
        """Called by an :class:`~trio_agents.AgentOrchestrator` once, synchronously, when the
        incarnation this agent was built for ends (completed, failed, stopped, cancelled,
        torn down for a restart, or the system closed). Does nothing by default; a subclass
        holding resources elsewhere releases them here. It must not raise or block.
        """

    def request_transfer(self, signal: TransferSignal, *, call_id: str = "") -> None:
        """End the current run with :attr:`StopReason.TRANSFER` once this turn's tools are done.

        The run's result then carries ``signal`` in :attr:`AgentResult.transfer`, with
        :attr:`~TransferSignal.source` and :attr:`~TransferSignal.messages` (the whole
        conversation) filled in. A tool passes its own ``call_id`` (``ctx.call.id``): when
        several calls of one turn ask for a transfer, the one that comes first in the model's
        response counts, whichever finished first (a request without a call id comes after
        them; between those, the first made counts). A run that is cancelled or fails in the
        same turn ends as it would have without the request: cancellation wins.

        :raises UsageError: no run is in progress.
        """
        if not isinstance(signal, TransferSignal):
            raise InvalidArgumentError(
                f"request_transfer takes a TransferSignal, got {type(signal).__name__}"
            )
        if not self._running:
            raise UsageError(f"agent {self.name!r} is not running; a transfer ends a run")
        self._transfers.setdefault(call_id, signal)

    def _chosen_transfer(self, calls: Sequence[ToolCallBlock]) -> TransferSignal | None:
        if not self._transfers:
            return None
        for call in calls:
            if call.id in self._transfers:
                return self._transfers[call.id]
        return next(iter(self._transfers.values()))

    def _park(self, call_id: str, pending: Iterable[PendingApproval]) -> None:
        """Called by a tool of the current turn (a delegation) whose work waits for approval
        deeper in the tree: once the turn's other calls are done the run stops with
        :attr:`StopReason.APPROVAL_REQUIRED`, listing ``pending`` under ``call_id``."""
        parked = tuple(attrs.evolve(p, via=(call_id, *p.via)) for p in pending)
        self._parking = {**self._parking, call_id: parked}

    def _decisions_for(self, call_id: str) -> tuple[ApprovalDecision, ...] | None:
        """The decisions a resumed turn hands to its tool call ``call_id`` (None: not one
        that waited deeper in the tree)."""
        return self._resuming.get(call_id)

    def load_history(self, messages: Sequence[Message]) -> None:
        """Start from a conversation kept elsewhere (an orchestrated agent's conversation
        journal restores it this way after a restart): the next run continues it.

        :raises InvalidArgumentError: an element of ``messages`` is not a message.
        :raises UsageError: the agent is running, or already has a conversation (call
            :meth:`clear_history` first); nothing changes.
        """
        given: object = messages  # checked: a caller may pass anything
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise InvalidArgumentError(
                f"load_history takes a sequence of messages, got {type(given).__name__}"
            )
        loaded: list[Any] = list(given)
        for index, message in enumerate(loaded):
            if not isinstance(message, _MESSAGE_TYPES):
                raise InvalidArgumentError(
                    f"load_history messages[{index}] must be a message, "
                    f"got {type(message).__name__}"
                )
        if self._running:
            raise UsageError(f"agent {self.name!r} is running; load its history before a run")
        if self._history or self._waiting is not None:
            raise UsageError(
                f"agent {self.name!r} already has a conversation of {len(self._history)} "
                "messages; clear_history() first"
            )
        self._history = loaded

    def clear_history(self) -> None:
        """Forget the conversation, and tool calls waiting for approval (misuse while running)."""
        if self._running:
            raise AlreadyRunningError(f"agent {self.name!r} is running; clear its history after")
        self._history = []  # requests made so far keep sharing the old list
        self._waiting = None

    # Events are built in place, ``sink(Kind(time=trio.current_time(), agent=self.path, ...))``,
    # rather than through a helper taking ``**fields``: the keyword dict and the extra call
    # cost ~0.3 µs per event, and a run emits at least five.

    # ------------------------------------------------------------------ the loop

    async def run(self, input: str | Message | Sequence[Message]) -> AgentResult[OutputT]:
        """Run the agent on ``input`` until it answers; see the module rules."""
        if self._running:
            raise AlreadyRunningError(
                f"agent {self.name!r} is already running; await the current run, "
                "or use one Agent per concurrent conversation"
            )
        new_messages = _as_messages(input)
        if not new_messages:
            raise NoMessagesError("run() needs at least one message; got an empty sequence")
        if self._waiting is not None:
            raise ApprovalPending(
                f"agent {self.name!r} waits for approval of tool calls "
                f"{[p.call_id for p in self._waiting.pending_approvals]}; "
                "resume() it with the decisions, or clear_history() to drop them",
                result=self._waiting,
            )
        return await self._run(new_messages, None)

    async def resume(
        self,
        decisions: Iterable[ApprovalDecision],
        *,
        waiting: AgentResult[Any] | None = None,
        history: Sequence[Message] | None = None,
    ) -> AgentResult[OutputT]:
        """Continue a run that stopped with :attr:`StopReason.APPROVAL_REQUIRED`.

        Approved calls run (the policy's checks still apply), denied ones become error results
        that the model reads, and the calls of that turn that did not need approval give the
        results they already gave (:attr:`AgentResult.held_results`). Then the loop goes on
        as in :meth:`run`, and this returns the result of the resumed part.

        :param decisions: one :class:`ApprovalDecision` per pending call.
        :param waiting: the stored result that stopped for approval; defaults to this agent's
            own :attr:`last_result`. Give it to resume in another agent, e.g. one rebuilt in
            another process.
        :param history: the whole conversation up to the stop, for an agent whose history is
            empty; defaults to ``waiting.messages`` (enough when the waiting run was the
            conversation's first). Ignored when the agent has a history.
        :raises InvalidArgumentError: nothing is waiting, or the decisions do not answer each
            pending call exactly once (the message lists the pending ids). Nothing changes.
        """
        if self._running:
            raise AlreadyRunningError(f"agent {self.name!r} is already running")
        if waiting is None:
            waiting = self._waiting
            if waiting is None:
                raise InvalidArgumentError(
                    f"agent {self.name!r} is not waiting for approval "
                    "(its last run did not stop with StopReason.APPROVAL_REQUIRED); "
                    "pass the stored result as waiting= to resume it here"
                )
        elif waiting.stop_reason is not StopReason.APPROVAL_REQUIRED:
            raise InvalidArgumentError(
                f"waiting must be a result that stopped with StopReason.APPROVAL_REQUIRED, "
                f"got one with {waiting.stop_reason}"
            )
        pending = waiting.pending_approvals
        chosen = _check_decisions(pending, decisions)
        base = (
            self._history
            if self._history
            else list(history if history is not None else waiting.messages)
        )
        last = base[-1] if base else None
        calls = last.tool_calls if isinstance(last, AssistantMessage) else ()
        ids = {call.id for call in calls}
        held = {r.tool_call_id: r for r in waiting.held_results}
        own = {p.call_id for p in pending if not p.via}
        deeper = {p.via[0] for p in pending if p.via}
        waiting_ids = own | deeper
        if (
            not waiting_ids <= ids
            or not set(held) <= ids
            or len(waiting_ids) + len(held) != len(ids)
        ):
            raise InvalidArgumentError(
                "the history does not end with the turn that waits for approval; "
                "resume with the same conversation (history=) that the waiting run had"
            )
        verdicts = {p.call_id: chosen[i] for i, p in enumerate(pending) if not p.via}
        handed: dict[str, list[ApprovalDecision]] = {}
        for i, p in enumerate(pending):
            if p.via:
                handed.setdefault(p.via[0], []).append(chosen[i])
        answered = dict(held)
        for call in calls:
            verdict = verdicts.get(call.id)
            if verdict is not None and not verdict.approved:
                answered[call.id] = ToolResultBlock(
                    tool_call_id=call.id,
                    content="not run: a person denied this call"
                    + (f": {verdict.reason}" if verdict.reason else ""),
                    is_error=True,
                    tool_name=call.name,
                )
        if not self._history:
            self._history.extend(base)
        self._waiting = None
        return await self._run(
            [], (calls, answered, {key: tuple(value) for key, value in handed.items()})
        )

    async def _run(
        self,
        new_messages: list[Message],
        resume: tuple[
            tuple[ToolCallBlock, ...],
            dict[str, ToolResultBlock],
            dict[str, tuple[ApprovalDecision, ...]],
        ]
        | None,
    ) -> AgentResult[OutputT]:
        sink = self.event_sink
        start = trio.current_time()
        run_number = self._runs + 1
        if sink is not None:
            # Before any state changes: a sink that raises leaves the agent as it was.
            sink(RunStarted(time=start, agent=self.path, run=run_number))
        self._running = True
        self._runs = run_number
        run_usage = _NO_USAGE
        run_cost = _NO_COST
        unpriced: dict[str, None] = {}  # ordered set
        first_index = len(self._history)
        self._history.extend(new_messages)
        budget = self.budget
        if self.limits is not None:
            budget = budget.child(self.limits) if budget is not None else Budget(self.limits)
        stop_reason = StopReason.STOP
        error: BaseException | None = None
        pending: tuple[PendingApproval, ...] = ()
        held: tuple[ToolResultBlock, ...] = ()
        output: Any = None
        spec = self._output
        output_retries = 0
        self._transfers = {}
        transfer: TransferSignal | None = None
        agent_token = _CURRENT_AGENT.set(self)

        def snapshot(reason: StopReason, err: BaseException | None) -> AgentResult[OutputT]:
            return AgentResult(
                output=output,
                pending_approvals=pending,
                held_results=held,
                messages=self._history[first_index:],
                stop_reason=reason,
                transfer=attrs.evolve(transfer, source=self.name, messages=tuple(self._history))
                if reason is StopReason.TRANSFER and transfer is not None
                else None,
                usage=run_usage,
                cost=run_cost,
                error=err.info() if isinstance(err, AgentError) else _foreign_info(err),
                duration=trio.current_time() - start,
                unpriced_models=unpriced,
            )

        abort_scope = trio.CancelScope()
        if self.run_timeout is not None:
            abort_scope.deadline = start + self.run_timeout
        self._abort_scope = abort_scope
        self._abort_reason = None
        try:
            with abort_scope:
                turn = 0
                if resume is not None:
                    self._resuming = resume[2]
                    try:
                        results = await self._run_tools(resume[0], resume[1])
                    finally:
                        self._resuming = _NO_DECISIONS
                    if self._parking:  # the resumed part waits for approval again
                        pending = tuple(p for ps in self._parking.values() for p in ps)
                        held = tuple(results)
                        stop_reason = StopReason.APPROVAL_REQUIRED
                while not pending:
                    turn += 1
                    if sink is not None:
                        sink(TurnStarted(time=trio.current_time(), agent=self.path, turn=turn))
                    if budget is not None:
                        budget.check_request()
                    message = await self._call_model(sink)
                    # Usage() + u == u: the first response's usage is the run's so far.
                    run_usage = (
                        message.usage if run_usage is _NO_USAGE else run_usage + message.usage
                    )
                    self._usage = (
                        message.usage if self._usage is _NO_USAGE else self._usage + message.usage
                    )
                    cost = self._price(message, unpriced)
                    if cost is not None:
                        run_cost = cost if run_cost is _NO_COST else run_cost + cost
                    if budget is not None:
                        budget.charge(message.usage, cost)
                    self._history.append(message)
                    calls = message.tool_calls
                    answered: dict[str, ToolResultBlock] = {}
                    problem: str | None = None
                    if spec is not None:
                        try:
                            found, output = self._check_output(spec, message, answered)
                        except OutputInvalid as exc:
                            problem = str(exc)
                        else:
                            if found:
                                stop_reason = StopReason.STOP
                                self._history.append(ToolResultMessage(answered.values()))
                                if sink is not None:
                                    sink(
                                        TurnFinished(
                                            time=trio.current_time(), agent=self.path, turn=turn
                                        )
                                    )
                                break
                    if not calls and problem is None:
                        stop_reason = (
                            StopReason.LENGTH
                            if message.stop_reason is StopReason.LENGTH
                            else StopReason.STOP
                        )
                        output = message.text
                        if sink is not None:
                            sink(TurnFinished(time=trio.current_time(), agent=self.path, turn=turn))
                        break
                    if problem is not None:
                        output_retries += 1
                        if output_retries > self.output_retries:
                            raise OutputValidationError(
                                f"the model's answer does not match output_type after "
                                f"output_retries={self.output_retries}: {problem}",
                                problems=problem,
                            )
                    if turn >= self.max_turns:
                        raise MaxTurnsExceeded(self.max_turns)
                    if calls:
                        asking = self._asking(calls, answered)
                        results = await self._run_tools(calls, answered, hold=asking)
                        if asking or self._parking:
                            pending = tuple(
                                p
                                for call in calls
                                for p in (
                                    (
                                        PendingApproval(
                                            call_id=call.id,
                                            tool=call.name,
                                            arguments=call.arguments,
                                            agent=self.path,
                                        ),
                                    )
                                    if call.id in asking
                                    else self._parking.get(call.id, ())
                                )
                            )
                            held = tuple(results)
                            stop_reason = StopReason.APPROVAL_REQUIRED
                            if sink is not None:
                                sink(
                                    TurnFinished(
                                        time=trio.current_time(), agent=self.path, turn=turn
                                    )
                                )
                            break
                    else:
                        assert problem is not None
                        assert spec is not None
                        self._history.append(UserMessage.text(_retry_prompt(spec, problem)))
                    if sink is not None:
                        sink(TurnFinished(time=trio.current_time(), agent=self.path, turn=turn))
                    transfer = self._chosen_transfer(calls)  # asked by this turn's tools
                    if transfer is not None:
                        stop_reason = StopReason.TRANSFER
                        break
        except AgentError as exc:
            error = exc
            stop_reason = StopReason.ERROR
            raise
        except trio.Cancelled:
            stop_reason = StopReason.ABORTED
            raise
        except Exception as exc:
            error = exc
            stop_reason = StopReason.ERROR
            raise
        except BaseExceptionGroup as group:
            # A model or tool whose own nursery was cancelled from outside: the run was
            # cut off, and the caller gets the bare Cancelled (cancellation rule 1).
            if only_cancelled(group) is not None:
                stop_reason = StopReason.ABORTED
            reraise_cancelled(group)
            raise
        finally:
            _CURRENT_AGENT.reset(agent_token)
            self._abort_scope = None
            self._running = False
            if abort_scope.cancelled_caught:
                stop_reason = StopReason.ABORTED
                if self._abort_reason is None:
                    error = RunTimeout(f"the run exceeded run_timeout={self.run_timeout} s")
                    stop_reason = StopReason.ERROR
            result = snapshot(stop_reason, error)
            self._last_result = result
            if stop_reason is StopReason.APPROVAL_REQUIRED:
                self._waiting = result
            if isinstance(error, AgentError):
                error.result = result  # the same partial result as last_result
            if sink is not None:
                sink(
                    RunFinished(
                        time=trio.current_time(), agent=self.path, run=run_number, result=result
                    )
                )
            timed_out = error if isinstance(error, RunTimeout) else None
            # A raised error's traceback holds this frame: keeping it here too would make a
            # cycle that keeps the whole run (and the agent) alive until a full collection.
            error = None
        if timed_out is not None:
            try:
                raise timed_out
            finally:
                timed_out = None
        return result

    def _price(self, message: AssistantMessage, unpriced: dict[str, None]) -> Cost | None:
        """The cost of one response, or None (and the model noted as unpriced)."""
        model_id = message.model or self._model.model_id
        if self._prices is None and not self._use_genai_prices:
            unpriced[model_id] = None
            return None
        estimate = cost_for(
            model_id, message.usage, prices=self._prices, use_genai_prices=self._use_genai_prices
        )
        if not estimate.known:
            unpriced[model_id] = None
            return None
        return estimate.cost

    async def _call_model(self, sink: EventSink | None) -> AssistantMessage:
        request = ModelRequest(
            system=self.instructions or None,
            messages=HistoryView(self._history, len(self._history)),
            tools=self._tool_definitions,
            settings=self.settings,
            output=self._output.schema if self._output is not None else None,
        )
        # The common case awaits the model directly: two coroutine layers fewer, each of
        # which every resumption of the call passes through.
        direct = self.model_timeout is None and not self.stream
        attempt = 1
        while True:
            if sink is not None:
                sink(
                    ModelRequested(
                        time=trio.current_time(),
                        agent=self.path,
                        model=self._model.model_id,
                        attempt=attempt,
                    )
                )
            try:
                if direct:
                    message = await self._model.request(request)
                else:
                    message = await self._request_once(request, sink)
            except AgentError as exc:
                if not exc.retryable or attempt >= self.retry.max_attempts:
                    raise
                if self._rng is None:
                    self._rng = random.Random()
                delay = self.retry.delay(attempt, exc, self._rng)
                if sink is not None:
                    sink(
                        RetryScheduled(
                            time=trio.current_time(),
                            agent=self.path,
                            attempt=attempt,
                            delay=delay,
                            error=exc.info(),
                        )
                    )
                await trio.sleep(delay)
                attempt += 1
                continue
            if sink is not None:
                sink(ModelResponded(time=trio.current_time(), agent=self.path, message=message))
            return message

    async def _request_once(
        self, request: ModelRequest, sink: EventSink | None
    ) -> AssistantMessage:
        timeout = self.model_timeout
        if timeout is None:
            return await self._dispatch(request, sink)
        with trio.move_on_after(timeout) as scope:
            return await self._dispatch(request, sink)
        assert scope.cancelled_caught
        raise ModelTimeout(f"model call exceeded model_timeout={timeout} s")

    async def _dispatch(self, request: ModelRequest, sink: EventSink | None) -> AssistantMessage:
        if not self.stream:
            return await self._model.request(request)
        final: AssistantMessage | None = None
        async with self._model.stream(request) as events:
            async for event in events:  # consumed to the end, so no generator is left open
                if isinstance(event, StreamDone):
                    final = event.message
                elif sink is not None:
                    sink(ModelDelta(time=trio.current_time(), agent=self.path, delta=event))
        if final is None:
            raise NetworkError("the model's stream ended without a complete message")
        return final

    def _tool_limiter(self) -> trio.CapacityLimiter:
        # Made on first use: ~0.6 KB and ~1 µs that an agent which never calls a tool (and
        # every spawn and restart) would pay.
        if self._limiter is None:
            self._limiter = trio.CapacityLimiter(self._max_tool_concurrency)
        return self._limiter

    def _check_output(
        self, spec: OutputSpec, message: AssistantMessage, answered: dict[str, ToolResultBlock]
    ) -> tuple[bool, Any]:
        """Whether ``message`` holds the final answer, and the answer.

        Raises :class:`OutputInvalid` (the retry prompt) when it holds a bad one. In tool
        mode the final-result calls are answered in ``answered`` (with the problem when the
        answer is bad); when it is good, the other calls of the turn are answered "not run".
        """
        calls = message.tool_calls
        if spec.schema.mode is OutputMode.NATIVE:
            if calls:
                return False, None
            return True, spec.parse_text(message.text)
        name = spec.schema.name
        finals = [call for call in calls if call.name == name]
        if not finals:
            if calls:
                return False, None
            raise OutputInvalid(f"answer by calling the {name!r} tool, not with text")
        call = finals[0]
        try:
            if call.raw_arguments is not None:
                raise OutputInvalid(
                    f"the arguments are not valid JSON: {call.raw_arguments[:200]!r}"
                )
            value = spec.parse(call.arguments)
        except OutputInvalid as exc:
            for final in finals:
                answered[final.id] = ToolResultBlock(
                    tool_call_id=final.id,
                    content=_retry_prompt(spec, str(exc)),
                    is_error=True,
                    tool_name=name,
                )
            raise
        for other in calls:
            answered[other.id] = (
                ToolResultBlock(
                    tool_call_id=other.id, content="final result accepted", tool_name=name
                )
                if other is call
                else ToolResultBlock(
                    tool_call_id=other.id,
                    content="not run: the final result was given in the same turn",
                    is_error=True,
                    tool_name=other.name,
                )
            )
        return True, value

    def _asking(
        self, calls: tuple[ToolCallBlock, ...], answered: Mapping[str, ToolResultBlock]
    ) -> set[str]:
        """Ids of the calls that wait for a person (tool or policy says so)."""
        asking: set[str] = set()
        get = getattr(self._executor, "get", None)
        policy_asks = getattr(self.policy, "needs_approval", None)
        for call in calls:
            if call.id in answered:
                continue
            found = get(call.name) if get is not None else None
            if getattr(found, "requires_approval", False) is True or (
                policy_asks is not None and policy_asks(call, self.path)
            ):
                asking.add(call.id)
        return asking

    async def _run_tools(
        self,
        calls: tuple[ToolCallBlock, ...],
        answered: Mapping[str, ToolResultBlock] | None = None,
        *,
        hold: set[str] | None = None,
    ) -> list[ToolResultBlock]:
        """Run ``calls`` but the ``answered`` ones and append the turn's results; with
        ``hold``, run the others but those and return their results without appending."""
        done = False
        self._parking = _NOTHING_PARKED
        skip = set(answered or ()) | (hold or set())
        to_run = calls if not skip else tuple(c for c in calls if c.id not in skip)
        try:
            results = await execute_tool_calls(
                self._executor,
                to_run,
                agent=self.path,
                deps=self.deps,
                infra=self.infra,
                limiter=self._tool_limiter(),
                policy=self.policy,
                event_sink=self.event_sink,
            )
            parked = self._parking
            if hold or parked:
                done = True
                return [
                    *(r for r in results if r.tool_call_id not in parked),
                    *(answered or {}).values(),
                ]
            if answered:
                by_id = {r.tool_call_id: r for r in results}
                by_id.update(answered)
                results = [by_id[c.id] for c in calls]
            done = True
        finally:
            if not done:
                # Interrupted (abort, cancellation, deadline): keep the history a valid
                # conversation by answering every call.
                reason = self._abort_reason or "cancelled"
                results = [
                    ToolResultBlock(
                        tool_call_id=call.id,
                        content=f"tool call interrupted: {reason}",
                        is_error=True,
                        tool_name=call.name,
                    )
                    for call in calls
                ]
            if not (done and (hold or self._parking)):
                self._history.append(ToolResultMessage(results))
        return list(results)

    def __repr__(self) -> str:
        return f"<Agent {self.path!r} model={self._model.model_id!r} running={self._running}>"


def _check_decisions(
    pending: Sequence[PendingApproval], decisions: Iterable[ApprovalDecision]
) -> dict[int, ApprovalDecision]:
    """The decision for each pending call, by its index in ``pending``.

    :raises InvalidArgumentError: a decision is not an :class:`ApprovalDecision`, names an
        unknown call (or an agent where that call does not wait), or answers a call already
        answered; or a pending call has no decision.
    """
    chosen: dict[int, ApprovalDecision] = {}
    for index, decision in enumerate(decisions):
        if not isinstance(decision, ApprovalDecision):
            raise InvalidArgumentError(
                f"decisions[{index}] must be an ApprovalDecision, got {type(decision).__name__}"
            )
        chosen_index = _match(decision, pending)
        if chosen_index in chosen:
            raise InvalidArgumentError(f"two decisions for call id {decision.call_id!r}")
        chosen[chosen_index] = decision
    missing = [p.call_id for i, p in enumerate(pending) if i not in chosen]
    if missing:
        raise InvalidArgumentError(
            f"no decision for pending call ids {missing}; every pending call needs one"
        )
    return chosen


def _match(decision: ApprovalDecision, pending: Sequence[PendingApproval]) -> int:
    """The index of the pending call ``decision`` answers (InvalidArgumentError if none or
    several)."""
    same_id = [i for i, p in enumerate(pending) if p.call_id == decision.call_id]
    found = [i for i in same_id if not decision.agent or pending[i].agent == decision.agent]
    if len(found) == 1:
        return found[0]
    if not same_id:
        raise InvalidArgumentError(
            f"decision for unknown call id {decision.call_id!r}; "
            f"pending: {sorted({p.call_id for p in pending})}"
        )
    agents = sorted(pending[i].agent for i in same_id)
    if not found:
        raise InvalidArgumentError(
            f"decision for call id {decision.call_id!r} names agent {decision.agent!r}, "
            f"but that call waits in {agents}"
        )
    raise InvalidArgumentError(
        f"call id {decision.call_id!r} waits in several agents {agents}; "
        "set ApprovalDecision.agent to the one this decides"
    )


def _retry_prompt(spec: OutputSpec, problem: str) -> str:
    where = (
        f"call the {spec.schema.name!r} tool again with corrected arguments"
        if spec.schema.mode is OutputMode.TOOL
        else "answer again with only a JSON value that matches the schema"
    )
    return f"Your final answer was invalid: {problem}. Fix it and {where}."


def _foreign_info(error: BaseException | None) -> ErrorInfo | None:
    if error is None:
        return None
    return ErrorInfo(type=type(error).__name__, message=str(error))
