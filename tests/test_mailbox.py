"""Mailbox: named bounded channels between agents, owned by the name (they survive restarts)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AgentOrchestrator,
    Backoff,
    DefaultSupervisor,
    InvalidArgumentError,
    Mailbox,
    MailboxStatistics,
    ModelOverloaded,
    RetryPolicy,
    SharedInfra,
    TextBlock,
    ToolResultMessage,
    UsageError,
    UserMessage,
    tool,
)
from trio_agents.testing import FunctionModel, tool_call


async def test_send_then_receive_in_order() -> None:
    box = Mailbox(names=["a"])
    await box.send("a", "one")
    box.send_nowait("a", {"n": 2})
    assert box.statistics("a") == MailboxStatistics(name="a", queued=2, capacity=16, closed=False)
    assert await box.receive("a") == "one"
    assert box.receive_nowait("a") == {"n": 2}
    with pytest.raises(trio.WouldBlock):
        box.receive_nowait("a")


async def test_full_mailbox_blocks_sender_and_nowait_raises() -> None:
    box = Mailbox(capacity=1, names=["a"])
    box.send_nowait("a", 1)
    with pytest.raises(trio.WouldBlock):
        box.send_nowait("a", 2)
    sent = trio.Event()

    async def sender() -> None:
        await box.send("a", 2)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # backpressure: the sender waits for room
        assert await box.receive("a") == 1
        await trio.testing.wait_all_tasks_blocked()
        assert sent.is_set()
    assert await box.receive("a") == 2


async def test_unknown_mailbox_is_a_clear_error_and_loses_nothing() -> None:
    box = Mailbox(names=["writer", "editor"])
    await box.send("writer", "kept")
    for call in (
        lambda: box.send_nowait("nobody", 1),
        lambda: box.receive_nowait("nobody"),
        lambda: box.statistics("nobody"),
    ):
        with pytest.raises(InvalidArgumentError, match=r"'nobody'.*\['editor', 'writer'\]"):
            call()
    with pytest.raises(InvalidArgumentError, match="nobody"):
        await box.send("nobody", 1)
    with pytest.raises(InvalidArgumentError, match="nobody"):
        await box.broadcast("x", exclude=["nobody"])
    assert box.statistics("editor").queued == 0  # the bad broadcast sent nothing
    assert box.receive_nowait("writer") == "kept"


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="capacity must be an int >= 0"):
        Mailbox(capacity=-1)
    with pytest.raises(InvalidArgumentError, match="non-empty str"):
        Mailbox().open("")
    with pytest.raises(InvalidArgumentError, match=r"SharedInfra\.mailbox must be a Mailbox"):
        SharedInfra(mailbox="nope")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="mailbox must be a Mailbox"):
        AgentOrchestrator(mailbox=object())  # type: ignore[arg-type]


async def test_broadcast_reaches_every_mailbox_but_the_excluded() -> None:
    box = Mailbox(names=["a", "b", "c"])
    assert await box.broadcast("hi", exclude=["b"]) == ["a", "c"]
    assert box.receive_nowait("a") == "hi"
    assert box.receive_nowait("c") == "hi"
    assert box.statistics("b").queued == 0


async def test_broadcast_waits_on_a_full_mailbox() -> None:
    box = Mailbox(capacity=1, names=["a", "b"])
    box.send_nowait("b", "old")
    done: list[list[str]] = []

    async def shout() -> None:
        done.append(await box.broadcast("new"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(shout)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [] and box.statistics("a").queued == 1
        assert box.receive_nowait("b") == "old"
    assert done == [["a", "b"]]
    assert box.receive_nowait("b") == "new"


async def test_reopening_keeps_messages() -> None:
    box = Mailbox(names=["a"])
    box.send_nowait("a", 1)
    box.open("a")
    assert box.names() == ["a"]
    assert box.receive_nowait("a") == 1


async def test_close_fails_senders_and_drains_receivers() -> None:
    box = Mailbox(capacity=1, names=["a", "b"])
    box.send_nowait("a", "queued")
    box.send_nowait("b", "full")
    errors: list[BaseException] = []

    async def blocked_sender() -> None:
        try:
            await box.send("b", "never")
        except trio.ClosedResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_sender)
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    assert len(errors) == 1
    assert box.closed and box.statistics("a").closed
    with pytest.raises(trio.ClosedResourceError):
        await box.send("a", "late")
    assert await box.receive("a") == "queued"
    with pytest.raises(trio.EndOfChannel):
        await box.receive("a")
    with pytest.raises(UsageError, match="closed"):
        box.open("c")
    box.close()  # idempotent


def _reader_factory(mailbox: Mailbox, built: list[int]):  # type: ignore[no-untyped-def]
    """An agent named "reader" whose ``inbox`` tool takes one message from its mailbox.

    Asked ``"fail"`` it fails (retryably, so the default supervisor restarts it); asked
    ``"read"`` it calls ``inbox`` and answers with what it got.
    """

    @tool
    async def inbox() -> str:
        """Take the next message from this agent's mailbox."""
        return str(await mailbox.receive("reader"))

    def build() -> Agent:
        built.append(len(built))

        def respond(request):  # type: ignore[no-untyped-def]
            last = request.messages[-1]
            if isinstance(last, ToolResultMessage):
                return f"got {last.results[0].content}"
            assert isinstance(last, UserMessage)
            block = last.content[0]
            assert isinstance(block, TextBlock)
            if block.text == "fail":
                raise ModelOverloaded("reader overloaded")
            return tool_call("inbox")

        return Agent(
            FunctionModel(respond), name="reader", tools=[inbox], retry=RetryPolicy(max_attempts=1)
        )

    return build


async def test_mailbox_survives_its_owners_restart(autojump_clock: trio.testing.MockClock) -> None:
    infra = SharedInfra(mailbox=Mailbox(capacity=4))
    built: list[int] = []
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(max_restarts=3),
        backoff=Backoff.none(),
        mailbox=infra.mailbox,
    )
    orch.add_agent("reader", _reader_factory(infra.mailbox, built))
    orch.add_agent("writer", _reader_factory(infra.mailbox, []))
    assert infra.mailbox.names() == ["reader", "writer"]
    async with orch.open() as system:
        reader = await system.spawn("reader")
        await infra.mailbox.send("reader", "first")
        await infra.mailbox.send("reader", "second")
        assert (await reader.send_message("read")).final_text == "got first"
        with pytest.raises(ModelOverloaded):
            await reader.send_message("fail")
        # served by the new incarnation: a new instance, the same mailbox with its message
        assert (await reader.send_message("read")).final_text == "got second"
        assert reader.statistics().restarts == 1
        assert built == [0, 1]
        infra.mailbox.send_nowait("reader", "third")
        assert (await reader.send_message("read")).final_text == "got third"
    # leaving the tree closes its mailboxes
    assert infra.mailbox.closed
    with pytest.raises(trio.ClosedResourceError):
        infra.mailbox.send_nowait("writer", "late")


async def test_registration_in_a_closed_mailbox_changes_nothing() -> None:
    box = Mailbox()
    box.close()
    orch = AgentOrchestrator(mailbox=box)
    with pytest.raises(UsageError, match="closed"):
        orch.add_agent("a", lambda: Agent(FunctionModel(lambda r: "x")))
    assert orch.names() == []
