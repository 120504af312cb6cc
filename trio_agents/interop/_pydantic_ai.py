"""A pydantic-ai agent as a trio_agents agent."""

from __future__ import annotations

from typing import Any

from .._errors import (
    AgentCancelled,
    AgentError,
    AuthenticationError,
    BadRequestError,
    BudgetExhausted,
    ContentFiltered,
    ContextWindowExceeded,
    InvalidArgumentError,
    ModelError,
    ModelOverloaded,
    ModelThrottled,
    ModelTimeout,
    NetworkError,
    RunTimeout,
    UsageError,
)
from .._messages import Usage
from ._core import AsyncioAgent
from ._errors import InteropError

__all__ = ["PydanticAIAgent"]


def _cache_free(total: int, read: int, write: int) -> int:
    # Both peers count cache reads and writes inside their input tokens; Usage keeps them apart.
    return max(total - read - write, 0)


class PydanticAIAgent(AsyncioAgent):
    """A `pydantic-ai <https://ai.pydantic.dev>`_ agent as a trio_agents agent.

    :param agent: the ``pydantic_ai.Agent`` (any model: a real one, or its ``TestModel`` and
        ``FunctionModel`` in tests).
    :param name: the agent's name (default: the pydantic-ai agent's ``name``).
    :param description: what it does, for a calling model (default: its instructions when
        they are a plain string, else ``""``).
    :param run_kwargs: passed on to every ``agent.run`` call: ``deps``, ``usage_limits``,
        ``model_settings``, ``model``, ``toolsets``... (not ``usage``: the run counts it).

    Usage comes from pydantic-ai's ``RunUsage`` (requests, input, output, cache reads and
    writes), counted as the run goes, so a run that fails or is cancelled still reports what it
    used. Errors map by pydantic-ai's error categories (see :doc:`/interop`).
    """

    __slots__ = ("_agent", "_run_kwargs")

    framework = "pydantic-ai"

    def __init__(
        self,
        agent: Any,
        *,
        name: str | None = None,
        description: str | None = None,
        **run_kwargs: Any,
    ) -> None:
        try:
            import pydantic_ai
        except ImportError as exc:  # pragma: no cover - the message is the point
            raise ImportError(
                "PydanticAIAgent needs pydantic-ai: pip install pydantic-ai (or pydantic-ai-slim)"
            ) from exc
        if not isinstance(agent, pydantic_ai.Agent):
            raise InvalidArgumentError(
                f"PydanticAIAgent needs a pydantic_ai.Agent, got {type(agent).__name__}"
            )
        if "usage" in run_kwargs:
            raise InvalidArgumentError(
                "PydanticAIAgent counts usage itself; do not pass usage= (use usage_limits=)"
            )
        if name is None:
            name = agent.name
            if not name:
                raise InvalidArgumentError(
                    "PydanticAIAgent needs name= (the pydantic-ai agent has no name)"
                )
        if description is None:
            # its literal instructions, as far as they can be read (pydantic-ai keeps them in
            # a private list; functions and anything unreadable are left out)
            held = getattr(agent, "_instructions", None)
            held = [held] if isinstance(held, str) else held if isinstance(held, list) else []
            texts = (i if isinstance(i, str) else getattr(i, "instruction", None) for i in held)
            description = "\n".join(t for t in texts if isinstance(t, str))
        super().__init__(name, description)
        self._agent = agent
        self._run_kwargs = run_kwargs

    @property
    def agent(self) -> Any:
        """The pydantic-ai agent."""
        return self._agent

    def _new_tally(self) -> Any:
        from pydantic_ai.usage import RunUsage

        return RunUsage()

    def _usage(self, tally: Any) -> Usage:
        read = int(tally.cache_read_tokens or 0)
        write = int(tally.cache_write_tokens or 0)
        return Usage(
            requests=int(tally.requests or 0),
            input_tokens=_cache_free(int(tally.input_tokens or 0), read, write),
            output_tokens=int(tally.output_tokens or 0),
            cache_read_tokens=read,
            cache_write_tokens=write,
        )

    async def _run_peer(self, task: str, tally: Any) -> Any:
        result = await self._agent.run(task, usage=tally, **self._run_kwargs)
        return result.output

    def _model_name(self) -> str:
        model = self._run_kwargs.get("model", self._agent.model)
        if isinstance(model, str):
            return model
        return str(getattr(model, "model_name", "") or "")

    def _map_error(self, exc: Exception) -> AgentError:
        return map_pydantic_ai_error(exc, self.name)


def map_pydantic_ai_error(exc: Exception, name: str) -> AgentError:
    """The library error for an error a pydantic-ai run raised."""
    from pydantic_ai import exceptions as pe

    from ..models._common import classify_status

    where = f"{name} (pydantic-ai)"
    retry_after = getattr(exc, "retry_after", None)
    message = f"{where}: {exc}"
    # the most specific categories first: several subclass each other
    table: list[tuple[type[BaseException], type[AgentError]]] = [
        (pe.ModelRateLimitError, ModelThrottled),
        (pe.ModelQuotaExceededError, BadRequestError),
        (pe.ModelUnavailableError, ModelOverloaded),  # overloaded is one of these
        (pe.ModelServerError, ModelOverloaded),
        (pe.ModelTimeoutError, ModelTimeout),
        (pe.ModelRequestTimeout, ModelTimeout),
        (pe.ModelConnectionError, NetworkError),
        (pe.ModelContextWindowExceededError, ContextWindowExceeded),
        (pe.ModelAuthenticationError, AuthenticationError),
        (pe.ModelRequestRejectedError, BadRequestError),
        (pe.ContentFilterError, ContentFiltered),
        (pe.UsageLimitExceeded, BudgetExhausted),
        (pe.RunTimedOut, RunTimeout),
        (pe.RunCancelled, AgentCancelled),
    ]
    for peer, ours in table:
        if isinstance(exc, peer):
            if issubclass(ours, ModelThrottled | ModelOverloaded):
                return ours(message, retry_after=retry_after)
            return ours(message)
    if isinstance(exc, pe.ModelHTTPError):
        return classify_status(exc.status_code, str(exc), provider=where)
    if isinstance(exc, pe.ModelAPIError | pe.UnexpectedModelBehavior):
        return ModelError(message)
    if isinstance(exc, pe.UserError):
        return UsageError(message)
    return InteropError(f"{where}: {type(exc).__name__}: {exc}")
