"""Orchestrated agents that stop for approval: the reply says so, AgentHandle.resume goes on,
other requests meanwhile get ApprovalPending, and a restart drops what waited."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentStatus,
    AlreadyRunningError,
    ApprovalDecision,
    ApprovalPending,
    Backoff,
    DefaultSupervisor,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    RestartStrategy,
    RetryPolicy,
    StopReason,
    TextBlock,
    ToolResultMessage,
    UserMessage,
    tool,
)
from trio_agents.testing import FunctionModel, text, tool_call

sent: list[str] = []


@pytest.fixture(autouse=True)
def _clear_sent() -> None:
    sent.clear()


@tool(requires_approval=True)
async def send_email(to: str) -> str:
    """Send an email."""
    sent.append(to)
    return f"sent to {to}"


def _respond(request: ModelRequest) -> object:
    """ "mail X" asks to mail X; "fail" fails; a tool result is answered; else echo."""
    last = request.messages[-1]
    if isinstance(last, ToolResultMessage):
        return text(f"done: {last.results[0].content}")
    assert isinstance(last, UserMessage)
    block = last.content[0]
    assert isinstance(block, TextBlock)
    word = block.text
    if word == "fail":
        raise ModelOverloaded("overloaded")
    if word.startswith("mail "):
        return tool_call("send_email", {"to": word[5:]}, id=f"c{len(request.messages)}")
    return f"echo {word}"


built: list[str] = []


def _mailer() -> Agent:
    built.append("mailer")
    return Agent(
        FunctionModel(_respond),  # type: ignore[arg-type]
        name="mailer",
        tools=[send_email],
        retry=RetryPolicy(max_attempts=1),
    )


def _orchestrator() -> AgentOrchestrator:
    return AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=Backoff.none())


async def test_the_reply_stops_for_approval_and_resume_goes_on() -> None:
    orch = _orchestrator()
    orch.add_agent("mailer", _mailer)
    async with orch.open() as system:
        handle = await system.spawn("mailer")
        waiting = await handle.send_message("mail bob")
        assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
        (pending,) = waiting.pending_approvals
        assert (pending.tool, pending.agent) == ("send_email", "mailer")
        assert sent == []
        # Any other request meanwhile is answered at once, naming what waits; the agent
        # is not failed and goes on waiting.
        with pytest.raises(ApprovalPending, match=rf"\['{pending.call_id}'\]") as info:
            await handle.send_message("hello")
        assert isinstance(info.value, AlreadyRunningError)
        assert info.value.result == waiting
        assert handle.status is AgentStatus.RUNNING
        done = await handle.resume([ApprovalDecision(call_id=pending.call_id, approved=True)])
        assert sent == ["bob"]
        assert done.stop_reason is StopReason.STOP
        assert done.final_text == "done: sent to bob"
        # Served normally again, with its history.
        assert (await handle.send_message("hi")).final_text == "echo hi"
        assert handle.statistics().incarnation == 1
        assert handle.statistics().restarts == 0


async def test_a_request_queued_while_it_waits_is_refused_not_queued_behind() -> None:
    orch = _orchestrator()
    orch.add_agent("mailer", _mailer)
    async with orch.open() as system:
        handle = await system.spawn("mailer")
        first = handle.send_message_nowait("mail ann")
        second = handle.send_message_nowait("hello")
        await trio.testing.wait_all_tasks_blocked()
        assert first.done and second.done
        waiting = await first.wait()
        assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
        with pytest.raises(ApprovalPending, match=r"handle\.resume"):
            await second.wait()
        call_id = waiting.pending_approvals[0].call_id
        denied = await handle.resume([ApprovalDecision(call_id=call_id, approved=False)])
        assert sent == []
        assert denied.final_text.startswith("done: not run: a person denied this call")


async def test_bad_decisions_through_a_handle_are_refused_at_once() -> None:
    orch = _orchestrator()
    orch.add_agent("mailer", _mailer)
    async with orch.open() as system:
        handle = await system.spawn("mailer")
        with pytest.raises(InvalidArgumentError, match="'mailer' is not waiting for approval"):
            await handle.resume([])
        waiting = await handle.send_message("mail bob")
        call_id = waiting.pending_approvals[0].call_id
        with pytest.raises(InvalidArgumentError, match="unknown call id 'zz'"):
            await handle.resume([ApprovalDecision(call_id="zz", approved=True)])
        with pytest.raises(InvalidArgumentError, match=r"no decision for pending call ids"):
            await handle.resume([])
        assert handle.statistics().requests_received == 1  # nothing was queued
        assert sent == []
        done = await handle.resume([ApprovalDecision(call_id=call_id, approved=True)])
        assert done.final_text == "done: sent to bob"


async def test_a_restart_drops_what_waited() -> None:
    built.clear()
    orch = _orchestrator()
    orch.add_agent(
        "parent",
        lambda: Agent(FunctionModel(_respond), name="parent"),  # type: ignore[arg-type]
        strategy=RestartStrategy.ONE_FOR_ALL,
    )
    orch.add_child("mailer", "parent", _mailer)
    orch.add_child(
        "flaky",
        "parent",
        lambda: Agent(
            FunctionModel(_respond),
            name="flaky",
            retry=RetryPolicy(max_attempts=1),  # type: ignore[arg-type]
        ),
    )
    async with orch.open() as system:
        await system.spawn("parent")
        mailer = await system.spawn("mailer")
        flaky = await system.spawn("flaky")
        waiting = await mailer.send_message("mail bob")
        call_id = waiting.pending_approvals[0].call_id
        with pytest.raises(ModelOverloaded):
            await flaky.send_message("fail")  # one_for_all: mailer restarts too
        await trio.testing.wait_all_tasks_blocked()
        assert built == ["mailer", "mailer"]
        with pytest.raises(InvalidArgumentError, match="a restart drops the calls that waited"):
            await mailer.resume([ApprovalDecision(call_id=call_id, approved=True)])
        assert sent == []
        assert (await mailer.send_message("hi")).final_text == "echo hi"


async def test_outside_cancellation_of_handle_resume_is_a_bare_cancelled() -> None:
    release = trio.Event()

    @tool(name="send_email", requires_approval=True)
    async def slow_email(to: str) -> str:
        """Send an email, slowly."""
        await release.wait()
        return "sent"

    orch = _orchestrator()
    orch.add_agent(
        "mailer",
        lambda: Agent(FunctionModel(_respond), name="mailer", tools=[slow_email]),  # type: ignore[arg-type]
    )
    async with orch.open() as system:
        handle = await system.spawn("mailer")
        waiting = await handle.send_message("mail bob")
        decision = ApprovalDecision(call_id=waiting.pending_approvals[0].call_id, approved=True)
        left: list[BaseException] = []

        async def resume() -> None:
            try:
                await handle.resume([decision])
            except BaseException as exc:
                left.append(exc)
                raise

        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(resume)
                await trio.testing.wait_all_tasks_blocked()  # the approved tool is running
                scope.cancel(reason="owner")
        assert scope.cancelled_caught
        (exc,) = left
        assert type(exc) is trio.Cancelled
        assert exc.reason == "owner"
        release.set()
        await handle.aclose()


async def test_closing_a_handle_while_it_waits_ends_with_the_waiting_result() -> None:
    orch = _orchestrator()
    orch.add_agent("mailer", _mailer)
    async with orch.open() as system:
        handle = await system.spawn("mailer")
        waiting = await handle.send_message("mail bob")
        final = await handle.aclose()
        assert final == waiting
        assert final.stop_reason is StopReason.APPROVAL_REQUIRED
        assert handle.status is AgentStatus.COMPLETED
        assert sent == []
