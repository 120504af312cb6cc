"""Run a pattern as an agent, so that an orchestrator can supervise it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from .._agent import Agent
from .._errors import InvalidArgumentError, NoMessagesError
from .._messages import AssistantMessage, TextBlock, UserMessage
from .._models import ModelRequest, StreamDone, StreamEvent

__all__ = ["pattern_agent"]


class _PatternModel:
    """A model whose answer is a pattern's output on the last user message."""

    def __init__(self, run: Callable[[str], Awaitable[object]], model_id: str) -> None:
        self._run = run
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    async def request(self, request: ModelRequest) -> AssistantMessage:
        users = [m for m in request.messages if isinstance(m, UserMessage)]
        if not users:
            raise NoMessagesError("a pattern agent needs a user message to work on")
        prompt = "\n".join(b.text for b in users[-1].content if isinstance(b, TextBlock))
        outcome = await self._run(prompt)
        output = getattr(outcome, "output", outcome)
        return AssistantMessage(content=(TextBlock(str(output)),), model=self._model_id)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        message = await self.request(request)

        async def events() -> AsyncIterator[StreamEvent]:
            yield StreamDone(message)

        yield events()


def pattern_agent(run: Callable[[str], Awaitable[object]], *, name: str) -> Agent:
    """An :class:`~trio_agents.Agent` that answers each request by running a pattern.

    ``run`` gets the text of the request's last user message and returns the pattern's result
    (its ``output`` attribute is the answer, else ``str()`` of it), e.g.
    ``lambda text: vote(voters, text)``. Register ``lambda: pattern_agent(run, name="panel")``
    with an :class:`~trio_agents.AgentOrchestrator`: the pattern then runs inside the agent's
    supervised task, a failure of the pattern is the agent's failure (for its supervisor to
    restart, stop or escalate), and stopping the agent cancels every branch.
    """
    if not callable(run):
        raise InvalidArgumentError(f"pattern_agent needs a callable run, got {run!r}")
    return Agent(_PatternModel(run, f"pattern:{name}"), name=name)
