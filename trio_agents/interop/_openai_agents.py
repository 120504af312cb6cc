"""An OpenAI Agents SDK agent as a trio_agents agent."""

from __future__ import annotations

from typing import Any

from .._errors import (
    AgentError,
    ContentFiltered,
    InvalidArgumentError,
    MaxTurnsExceeded,
    ModelError,
    ModelTimeout,
    ToolTimeout,
    UsageError,
)
from .._messages import Usage
from ._core import AsyncioAgent
from ._errors import InteropError

__all__ = ["OpenAIAgentsAgent"]


class _Tally:
    """The usage of the responses of one run, added up as they arrive."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = Usage()


def _counting_hooks(tally: _Tally, inner: Any) -> Any:
    """Run hooks that add each response's usage to ``tally`` and call ``inner``'s hooks."""
    from agents import RunHooks

    class Counting(RunHooks[Any]):
        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            tally.usage += _usage_of(response.usage)
            if inner is not None:
                await inner.on_llm_end(context, agent, response)

    def forward(hook: str) -> Any:
        async def call(self: Any, *args: Any, **kwargs: Any) -> None:
            if inner is not None:
                await getattr(inner, hook)(*args, **kwargs)

        call.__name__ = hook
        return call

    for hook in dir(RunHooks):
        if hook.startswith("on_") and hook != "on_llm_end":
            setattr(Counting, hook, forward(hook))
    return Counting()


def _usage_of(usage: Any) -> Usage:
    details = getattr(usage, "input_tokens_details", None)
    read = int(getattr(details, "cached_tokens", 0) or 0)
    write = int(getattr(details, "cache_write_tokens", 0) or 0)
    return Usage(
        requests=int(usage.requests or 0),
        input_tokens=max(int(usage.input_tokens or 0) - read - write, 0),
        output_tokens=int(usage.output_tokens or 0),
        cache_read_tokens=read,
        cache_write_tokens=write,
    )


class OpenAIAgentsAgent(AsyncioAgent):
    """An `OpenAI Agents SDK <https://openai.github.io/openai-agents-python/>`_ agent as a
    trio_agents agent.

    :param agent: the ``agents.Agent`` (the start of the run: its handoffs are followed as
        the SDK does).
    :param name: the agent's name (default: the SDK agent's ``name``).
    :param description: what it does, for a calling model (default: its
        ``handoff_description``, else its instructions when they are a string).
    :param run_kwargs: passed on to every ``Runner.run`` call: ``context``, ``max_turns``,
        ``run_config``, ``hooks``, ``session``...

    Usage is added up from every model response of the run (through the run's hooks, which
    still call yours), so a run that fails or is cancelled still reports what it used. The
    SDK traces to OpenAI by default: pass ``run_config=RunConfig(tracing_disabled=True)``
    (or call ``agents.set_tracing_disabled(True)``) where that is not wanted.
    """

    __slots__ = ("_agent", "_run_kwargs")

    framework = "OpenAI Agents SDK"

    def __init__(
        self,
        agent: Any,
        *,
        name: str | None = None,
        description: str | None = None,
        **run_kwargs: Any,
    ) -> None:
        try:
            import agents
        except ImportError as exc:  # pragma: no cover - the message is the point
            raise ImportError(
                "OpenAIAgentsAgent needs the OpenAI Agents SDK: pip install openai-agents"
            ) from exc
        if not isinstance(agent, agents.Agent):
            raise InvalidArgumentError(
                f"OpenAIAgentsAgent needs an agents.Agent, got {type(agent).__name__}"
            )
        if name is None:
            name = agent.name
        if description is None:
            description = agent.handoff_description or (
                agent.instructions if isinstance(agent.instructions, str) else ""
            )
        super().__init__(name, description or "")
        self._agent = agent
        self._run_kwargs = run_kwargs

    @property
    def agent(self) -> Any:
        """The SDK agent."""
        return self._agent

    def _new_tally(self) -> _Tally:
        return _Tally()

    def _usage(self, tally: _Tally) -> Usage:
        return tally.usage

    async def _run_peer(self, task: str, tally: _Tally) -> Any:
        from agents import Runner

        kwargs = dict(self._run_kwargs)
        kwargs["hooks"] = _counting_hooks(tally, kwargs.get("hooks"))
        result = await Runner.run(self._agent, task, **kwargs)
        return result.final_output

    def _model_name(self) -> str:
        model = self._agent.model
        if isinstance(model, str):
            return model
        return str(getattr(model, "model", "") or "")

    def _map_error(self, exc: Exception) -> AgentError:
        return map_openai_agents_error(exc, self.name)


def map_openai_agents_error(exc: Exception, name: str) -> AgentError:
    """The library error for an error an OpenAI Agents SDK run raised."""
    import openai
    from agents import exceptions as ae

    from ..models.openai import map_openai_error

    where = f"{name} (OpenAI Agents SDK)"
    if isinstance(exc, openai.OpenAIError):
        mapped = map_openai_error(exc)
        return type(mapped)(f"{where}: {mapped}", retry_after=mapped.retry_after)
    table: list[tuple[type[BaseException], type[AgentError]]] = [
        (ae.MaxTurnsExceeded, MaxTurnsExceeded),
        (ae.ModelRefusalError, ContentFiltered),
        (ae.ModelTimeoutError, ModelTimeout),
        (ae.ModelBehaviorError, ModelError),
        (ae.ToolTimeoutError, ToolTimeout),
        (ae.InputGuardrailTripwireTriggered, ContentFiltered),
        (ae.OutputGuardrailTripwireTriggered, ContentFiltered),
        (ae.UserError, UsageError),
    ]
    for peer, ours in table:
        if isinstance(exc, peer):
            return ours(f"{where}: {type(exc).__name__}: {exc}")
    return InteropError(f"{where}: {type(exc).__name__}: {exc}")
