"""Agents of asyncio frameworks, run on a trio-asyncio loop as trio_agents agents.

The peer agent runs as one asyncio task on a loop that trio-asyncio runs inside trio
(:func:`open_asyncio_loop`, or a loop opened for the call when none is open). Trio's
cancellation reaches that task as an ``asyncio.CancelledError``, and the caller gets the bare
``trio.Cancelled`` back. The peer's usage becomes a :class:`~trio_agents.Usage` charged to the
caller's budget, and its errors become the library's errors.
"""

from __future__ import annotations

import abc
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import trio

from .._agent import AgentSpec
from .._cancel import reraise_cancelled
from .._delegation import DELEGATE_TOOL, AgentRunner
from .._errors import (
    AgentCancelled,
    AgentError,
    InvalidArgumentError,
    RunTimeout,
    ToolError,
)
from .._events import EventSink, RunFinished, RunStarted
from .._infra import SharedInfra
from .._limits import Budget
from .._messages import (
    AgentResult,
    AssistantMessage,
    JSONValue,
    Message,
    StopReason,
    TextBlock,
    Usage,
    UserMessage,
)
from .._tools import Tool, ToolContext, ToolExecutor, tool

try:
    import trio_asyncio
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "trio_agents.interop needs trio-asyncio: pip install 'trio-agents[interop]'"
    ) from exc

__all__ = ["AsyncioAgent", "AsyncioRunner", "open_asyncio_loop"]


def _see_trio_asyncio_loops() -> None:
    """Point anyio's asyncio backend at the functions trio-asyncio patched.

    Importing trio-asyncio replaces ``asyncio.get_running_loop`` and ``asyncio.current_task``
    with versions that find its loop from trio. A module that imported them by name before
    that keeps the originals, which do not: anyio's asyncio backend does (``from asyncio
    import get_running_loop``), and pydantic-ai, httpx and the MCP SDK run on anyio, so an
    anyio task group inside a peer would fail with "no running event loop" whenever anyio was
    imported first. Outside trio the patched functions fall back to the originals.
    """
    backend = sys.modules.get("anyio._backends._asyncio")
    if backend is None:
        return  # imported later, it binds the patched functions itself
    for name in ("get_running_loop", "current_task"):
        if hasattr(backend, name):
            setattr(backend, name, getattr(asyncio, name))


_see_trio_asyncio_loops()

T = TypeVar("T")


@asynccontextmanager
async def open_asyncio_loop() -> AsyncIterator[None]:
    """An asyncio event loop running inside trio, for the peer agents run in this block.

    Without one, every peer run opens (and closes) its own loop; one loop around many runs
    saves that, and lets asyncio objects the peers keep between runs (HTTP clients, for
    example) stay on one loop. This is ``trio_asyncio.open_loop()``, except that outside
    cancellation leaves it as the bare ``trio.Cancelled``.
    """
    try:
        async with trio_asyncio.open_loop():
            yield
    except BaseExceptionGroup as group:
        reraise_cancelled(group)
        raise


async def _in_asyncio(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` as an asyncio task, on the current trio-asyncio loop or on one
    opened for it; an error of the task comes out as it is (never wrapped in a group)."""
    run = trio_asyncio.aio_as_trio(call)
    if trio_asyncio.current_loop.get() is not None:
        result: T = await run()
        return result
    failure: BaseException | None = None
    try:
        async with trio_asyncio.open_loop():
            try:
                return await run()  # type: ignore[no-any-return]
            except (Exception, asyncio.CancelledError) as exc:
                failure = exc
    except BaseExceptionGroup as group:
        reraise_cancelled(group)
        raise
    assert failure is not None
    try:
        raise failure
    finally:
        failure = None


def json_text(value: Any) -> tuple[JSONValue, str]:
    """A peer's output as JSON data and as the text an agent's answer carries: a str as it
    is, anything else (a pydantic model, a dataclass, a dict) through pydantic's JSON mode."""
    if isinstance(value, str):
        return value, value
    import pydantic

    data = pydantic.TypeAdapter(Any).dump_python(value, mode="json")
    return data, json.dumps(data, ensure_ascii=False)


class AsyncioAgent(abc.ABC):
    """An agent of an asyncio framework, usable where trio_agents expects an agent.

    Use a subclass (:class:`~trio_agents.interop.PydanticAIAgent`,
    :class:`~trio_agents.interop.OpenAIAgentsAgent`). Each :meth:`run` is one run of the peer
    agent on one task; the result is an :class:`~trio_agents.AgentResult` whose messages are
    the task and the peer's final answer (the peer's own intermediate steps stay with it),
    whose ``usage`` is every request the peer made, and whose ``output`` is the peer's
    output (as JSON data when it is not text). The same instance may run concurrently.

    Three ways to use it:

    - ``await peer.run(task)``, from trio;
    - :meth:`as_tool`: a tool of a trio_agents :class:`~trio_agents.Agent`;
    - :class:`AsyncioRunner`: a specialist of a :class:`~trio_agents.Delegator`, named by
      :meth:`spec`.
    """

    __slots__ = ("_description", "_name")

    #: The framework's name, for messages and :attr:`AgentResult.unpriced_models`.
    framework: str = ""

    def __init__(self, name: str, description: str) -> None:
        if not isinstance(name, str) or not name or "/" in name:
            raise InvalidArgumentError(
                f"an interop agent needs a non-empty name without '/', got {name!r}"
            )
        if not isinstance(description, str):
            raise InvalidArgumentError(
                f"description must be a str, got {type(description).__name__}"
            )
        self._name = name
        self._description = description

    @property
    def name(self) -> str:
        """The agent's name: its specialist name and its default tool name."""
        return self._name

    @property
    def description(self) -> str:
        """What the agent does (its instructions when none was given), for a caller's model."""
        return self._description

    # ------------------------------------------------------------------ the peer's side

    @abc.abstractmethod
    def _new_tally(self) -> Any:
        """A fresh usage counter for one run, updated by the peer as it goes."""

    @abc.abstractmethod
    def _usage(self, tally: Any) -> Usage:
        """What ``tally`` has counted so far, as a :class:`~trio_agents.Usage`."""

    @abc.abstractmethod
    async def _run_peer(self, task: str, tally: Any) -> Any:
        """The asyncio-flavoured run: the peer's output for ``task``."""

    @abc.abstractmethod
    def _map_error(self, exc: Exception) -> AgentError:
        """The library error for an error the peer raised."""

    def _model_name(self) -> str:
        """The peer's model, as far as it says (``""`` when it does not)."""
        return ""

    # ------------------------------------------------------------------ trio's side

    def spec(self, *, limits: Any = None, run_timeout: float | None = None) -> AgentSpec:
        """An :class:`~trio_agents.AgentSpec` naming this agent, for a
        :class:`~trio_agents.Delegator`'s specialists (run it with :class:`AsyncioRunner`).

        The spec carries the name and the description (the delegate tool shows it to the
        main agent); ``limits`` and ``run_timeout`` are applied to each delegation as for any
        specialist.
        """
        return AgentSpec(
            name=self._name,
            instructions=self._description,
            limits=limits,
            run_timeout=run_timeout,
        )

    async def run(
        self,
        task: str,
        *,
        path: str | None = None,
        event_sink: EventSink | None = None,
        budget: Budget | None = None,
        infra: SharedInfra | None = None,
        run_timeout: float | None = None,
    ) -> AgentResult:
        """Run the peer agent on ``task`` and return its result.

        :param task: the user message of the run (non-empty text).
        :param path: the agent's path in the tree, for events (default: :attr:`name`).
        :param event_sink: where :class:`~trio_agents.RunStarted` and
            :class:`~trio_agents.RunFinished` go (default: ``infra.log``, else nowhere).
        :param budget: checked before the run starts, and charged with everything the run
            used when it ends, however it ends (default: ``infra.budget``). Limits inside the
            run are the peer's own (pydantic-ai's ``usage_limits``, the Agents SDK's
            ``max_turns``).
        :param infra: the tree's :class:`~trio_agents.SharedInfra`, for the defaults above.
        :param run_timeout: seconds the run may take; past it the peer is cancelled and
            :class:`~trio_agents.RunTimeout` raised.
        :raises InvalidArgumentError: ``task`` is not a non-empty str, or a bad argument.
        :raises BudgetExhausted: the budget is spent before the run starts.
        :raises AgentError: what the peer's error maps to (see :doc:`/interop`); the error's
            ``result`` is the run's partial result, usage included.
        :raises trio.Cancelled: cancelled from outside; the peer's task saw
            ``asyncio.CancelledError``.
        """
        if not isinstance(task, str) or not task:
            raise InvalidArgumentError(f"task must be a non-empty str, got {task!r}")
        if infra is not None and not isinstance(infra, SharedInfra):
            raise InvalidArgumentError(
                f"infra must be a SharedInfra or None, got {type(infra).__name__}"
            )
        if budget is not None and not isinstance(budget, Budget):
            raise InvalidArgumentError(f"budget must be a Budget or None, got {budget!r}")
        if run_timeout is not None and not (
            isinstance(run_timeout, int | float) and run_timeout > 0
        ):
            raise InvalidArgumentError(f"run_timeout must be > 0 or None, got {run_timeout!r}")
        if infra is not None:
            event_sink = infra.log if event_sink is None else event_sink
            budget = infra.budget if budget is None else budget
        path = self._name if path is None else path
        start = trio.current_time()
        if event_sink is not None:
            event_sink(RunStarted(time=start, agent=path, run=1))
        tally = self._new_tally()
        stop = StopReason.ERROR
        error: BaseException | None = None
        output: JSONValue = None
        text = ""
        try:
            if budget is not None:
                budget.check_request()
            with trio.move_on_after(
                run_timeout if run_timeout is not None else float("inf")
            ) as timeout:
                value = await _in_asyncio(lambda: self._run_peer(task, tally))
                output, text = json_text(value)
                stop = StopReason.STOP
            if timeout.cancelled_caught:
                raise RunTimeout(f"{self._name}: the run exceeded run_timeout={run_timeout} s")
        except trio.Cancelled:
            stop = StopReason.ABORTED
            raise
        except AgentError as exc:
            error = exc
            raise
        except asyncio.CancelledError as exc:
            # The peer cancelled its own task (trio did not: that comes out as Cancelled).
            error = AgentCancelled(f"{self._name}: the {self.framework} run was cancelled")
            raise error from exc
        except Exception as exc:
            error = self._map_error(exc)
            raise error from exc
        finally:
            usage = self._usage(tally)
            if budget is not None and usage != Usage():
                budget.charge(usage)
            model = self._model_name()
            messages: list[Message] = [UserMessage.text(task)]
            if stop is StopReason.STOP:
                messages.append(
                    AssistantMessage(content=(TextBlock(text),), usage=usage, model=model)
                )
            result: AgentResult = AgentResult(
                messages=messages,
                stop_reason=stop,
                usage=usage,
                error=error.info() if isinstance(error, AgentError) else None,
                duration=trio.current_time() - start,
                unpriced_models=(model,) if model else (),
                output=output if stop is StopReason.STOP else None,
            )
            if isinstance(error, AgentError):
                error.result = result
            if event_sink is not None:
                event_sink(RunFinished(time=trio.current_time(), agent=path, run=1, result=result))
            error = None  # the traceback holds this frame: no cycle through the error
        return result

    def as_tool(self, *, name: str | None = None, description: str | None = None) -> Tool:
        """A tool that runs this agent on the calling model's ``prompt``.

        The tool result is the agent's answer (its output as JSON when it is not text). A
        failed run is a tool error naming the agent and the error, which the calling model
        reads. In an agent with ``infra``, the run charges ``infra.budget`` and logs to
        ``infra.log`` under ``<caller>/<tool name>``. Cancelling the caller cancels the peer.

        :param name: the tool's name (default: :attr:`name`).
        :param description: what it does, for the model (default: :attr:`description`, or
            ``"Ask the <name> agent."`` when that is empty).
        """
        tool_name = self._name if name is None else name
        text = (
            (self._description.strip() or f"Ask the {self._name} agent.")
            if (description is None)
            else description
        )
        if not isinstance(tool_name, str) or not tool_name:
            raise InvalidArgumentError(f"tool name must be a non-empty str, got {tool_name!r}")
        if not isinstance(text, str) or not text:
            raise InvalidArgumentError(f"description must be a non-empty str, got {text!r}")

        async def call(ctx: ToolContext, prompt: Annotated[str, "What to ask the agent."]) -> Any:
            infra = ctx.infra if isinstance(ctx.infra, SharedInfra) else None
            try:
                result = await self.run(
                    prompt, path=f"{ctx.agent}/{tool_name}" if ctx.agent else None, infra=infra
                )
            except AgentError as exc:
                raise ToolError(
                    f"agent {self._name!r} failed: {type(exc).__name__}: {exc}"
                ) from exc
            return result.output

        return tool(call, name=tool_name, description=text)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r}>"


def _agents(value: Mapping[str, AsyncioAgent] | Iterable[AsyncioAgent]) -> dict[str, AsyncioAgent]:
    if isinstance(value, AsyncioAgent):
        raise InvalidArgumentError("agents must be a sequence or mapping; wrap one: [agent]")
    items: Iterable[tuple[object, object]]
    if isinstance(value, Mapping):
        items = value.items()
    else:
        items = ((getattr(a, "name", None), a) for a in value)
    found: dict[str, AsyncioAgent] = {}
    for key, agent in items:
        if not isinstance(agent, AsyncioAgent):
            raise InvalidArgumentError(
                f"agents must hold interop agents (PydanticAIAgent, OpenAIAgentsAgent); "
                f"got {type(agent).__name__} for {key!r}"
            )
        if not isinstance(key, str) or not key or key in found:
            raise InvalidArgumentError(
                f"agent names must be unique non-empty str; {key!r} is "
                + ("repeated" if key in found else "not one")
            )
        found[key] = agent
    if not found:
        raise InvalidArgumentError("AsyncioRunner needs at least one agent")
    return found


class AsyncioRunner:
    """An :class:`~trio_agents.AgentRunner` that runs the specialists it knows on their
    asyncio agents, and hands every other spec to ``fallback``.

    :param agents: the interop agents, by specialist name (a mapping) or named by their own
        :attr:`AsyncioAgent.name` (a sequence).
    :param fallback: the runner for the other specs (typically a
        :class:`~trio_agents.ModelRunner` for the main agent); without one, such a spec is an
        :class:`~trio_agents.InvalidArgumentError` naming it.

    A spec run by an asyncio agent must not name tools (the peer brings its own, and cannot
    delegate through this tree) nor have an output type (the answer is the peer's output);
    either is an :class:`~trio_agents.InvalidArgumentError` naming the specialist, which the
    delegation reports as failed. ``spec.run_timeout`` is applied; ``spec.limits`` arrive as
    the carved ``budget``.
    """

    __slots__ = ("_agents", "_fallback")

    def __init__(
        self,
        agents: Mapping[str, AsyncioAgent] | Sequence[AsyncioAgent],
        *,
        fallback: AgentRunner | None = None,
    ) -> None:
        self._agents = _agents(agents)
        if fallback is not None and not callable(getattr(fallback, "run", None)):
            raise InvalidArgumentError(
                f"fallback must be an AgentRunner (with a run method), got {fallback!r}"
            )
        self._fallback = fallback

    @property
    def agents(self) -> Mapping[str, AsyncioAgent]:
        """The interop agents by specialist name."""
        return dict(self._agents)

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
        **options: Any,
    ) -> AgentResult:
        """Run ``spec`` on its asyncio agent, or on ``fallback`` (see the class)."""
        if not isinstance(spec, AgentSpec):
            raise InvalidArgumentError(f"spec must be an AgentSpec, got {type(spec).__name__}")
        agent = self._agents.get(spec.name)
        if agent is None:
            if self._fallback is None:
                raise InvalidArgumentError(
                    f"AsyncioRunner has no agent named {spec.name!r} and no fallback runner; "
                    f"its agents: {sorted(self._agents)}"
                )
            return await self._fallback.run(
                spec,
                task,
                tools=tools,
                infra=infra,
                path=spec.name if path is None else path,
                event_sink=event_sink,
                budget=budget,
                **options,
            )
        if spec.tools:
            why = " (it cannot delegate)" if DELEGATE_TOOL in spec.tools else ""
            raise InvalidArgumentError(
                f"specialist {spec.name!r} runs on a {agent.framework} agent, which brings its "
                f"own tools{why}; its AgentSpec must not name tools, got {list(spec.tools)}"
            )
        output_type = options.pop("output_type", str)
        if output_type is not str:
            raise InvalidArgumentError(
                f"specialist {spec.name!r} runs on a {agent.framework} agent, whose answer is "
                f"its own output; drop its entry from the Delegator's output_types"
            )
        if options:
            raise InvalidArgumentError(
                f"AsyncioRunner.run got unexpected arguments {sorted(options)}"
            )
        if budget is None and (infra is not None or spec.limits is not None):
            # as ModelRunner does: the tree's budget, carved for the spec's limits
            parent = infra.budget if infra is not None else None
            budget = Budget(spec.limits, parent=parent)
        return await agent.run(
            task,
            path=path,
            event_sink=event_sink,
            budget=budget,
            infra=infra,
            run_timeout=spec.run_timeout,
        )

    def __repr__(self) -> str:
        return f"<AsyncioRunner agents={sorted(self._agents)} fallback={self._fallback!r}>"
