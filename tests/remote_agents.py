"""Importable agent factories for the distributed tests (they travel as 'module:function').

What each request does is in its text: ``"hang"`` waits until cancelled, ``"slow"`` takes
one second, ``"throttle"``
raises a retryable error, ``"boom"`` a non-retryable one, anything else is echoed back
with the host's agent count of runs so far (``"echo <n>: <text>"``).
"""

from __future__ import annotations

import trio

from trio_agents import (
    Agent,
    BadRequestError,
    ModelRequest,
    ModelThrottled,
    TextBlock,
    ToolResultMessage,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptStep, text, tool_call


async def _respond(request: ModelRequest) -> str:
    last = request.messages[-1]
    said = " ".join(b.text for b in getattr(last, "content", ()) if isinstance(b, TextBlock))
    if said == "hang":
        await trio.sleep_forever()
    if said == "slow":
        await trio.sleep(1)
    if said == "throttle":
        raise ModelThrottled("throttled on the host")
    if said == "boom":
        raise BadRequestError("boom on the host")
    turns = sum(1 for m in request.messages if type(m).__name__ == "UserMessage")
    return f"echo {turns}: {said}"


def echo() -> Agent:
    """An agent whose answers depend on its own history (so a restart is visible)."""
    return Agent(FunctionModel(_respond), name="echo")


async def _stubborn(request: ModelRequest) -> str:
    with trio.CancelScope(shield=True):
        await trio.sleep(100)
    return "done at last"


def stubborn() -> Agent:
    """An agent whose runs ignore cancellation for 100 seconds."""
    return Agent(FunctionModel(_stubborn), name="stubborn")


def not_an_agent() -> object:
    """A factory that returns the wrong thing."""
    return 42


@tool(requires_approval=True)
async def send_email(to: str) -> str:
    """Send an email (it waits for a person's approval); ``"hang"`` never returns."""
    if to == "hang":
        await trio.sleep_forever()
    return f"sent to {to}"


async def _mail(request: ModelRequest) -> ScriptStep:
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return text(f"done: {last.results[0].content}")
    said = " ".join(b.text for b in getattr(last, "content", ()) if isinstance(b, TextBlock))
    return tool_call(
        "send_email", {"to": said.removeprefix("mail ")}, id=f"c{len(request.messages)}"
    )


def mailer() -> Agent:
    """An agent whose "mail X" asks to send an email, which needs approval."""
    return Agent(FunctionModel(_mail), name="mailer", tools=[send_email])
