"""An orchestrated agent's conversation kept in a run journal across restarts and processes
(``conversation=`` of ``AgentOrchestrator.add_agent``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_orchestrator import NO_BACKOFF, Tree

from trio_agents import (
    Agent,
    AgentOrchestrator,
    ApprovalDecision,
    DefaultSupervisor,
    InvalidArgumentError,
    MemoryJournal,
    ModelOverloaded,
    RunJournal,
    SQLiteJournal,
    StopReason,
    SupervisorAction,
    SupervisorPolicy,
    UsageError,
    UserMessage,
)
from trio_agents.testing import FunctionModel


class RestartAll:
    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        return SupervisorAction.RESTART


def system(
    journal: RunJournal | None, tree: Tree, supervisor: SupervisorPolicy | None = None
) -> AgentOrchestrator:
    orch = AgentOrchestrator(supervisor=supervisor or DefaultSupervisor(), backoff=NO_BACKOFF)
    orch.add_agent("lead", tree.factory("lead"), conversation=journal)
    orch.add_child("helper", "lead", tree.factory("helper"), conversation=journal)
    return orch


def user_texts(journal: RunJournal, run_id: str) -> list[str]:
    return [m.content[0].text for m in journal.conversation(run_id) if isinstance(m, UserMessage)]  # type: ignore[union-attr]


async def test_a_restarted_agent_keeps_its_answered_conversation() -> None:
    # "#N" in a reply is the number of user messages the agent's model saw.
    journal = RunJournal(MemoryJournal())
    tree = Tree()
    async with system(journal, tree).open() as agents:
        lead = await agents.spawn("lead")
        assert (await lead.send_message("x")).final_text == "lead:x#1"
        assert (await lead.send_message("y")).final_text == "lead:y#2"
        with pytest.raises(ModelOverloaded):
            await lead.send_message("fail")
        # The new incarnation starts from the journal: x and y, not the failed turn.
        assert (await lead.send_message("z")).final_text == "lead:z#3"
        assert lead.statistics().restarts == 1
        assert tree.built == ["lead", "lead"]
        assert user_texts(journal, "conversation:lead") == ["x", "y", "z"]
        # A child's conversation is journaled under its path.
        helper = await agents.spawn("helper")
        assert (await helper.send_message("h")).final_text == "helper:h#1"
        assert journal.runs() == ["conversation:lead", "conversation:lead/helper"]
        # Each answered request is one record: its user message and the answer.
        records = journal.records("conversation:lead")
        assert [r.kind for r in records] == ["conversation"] * 3
        assert [len(r.data) for r in records] == [2, 2, 2]  # type: ignore[arg-type]


async def test_without_a_journal_a_restart_starts_a_new_conversation() -> None:
    async with system(None, Tree()).open() as agents:
        lead = await agents.spawn("lead")
        assert (await lead.send_message("x")).final_text == "lead:x#1"
        with pytest.raises(ModelOverloaded):
            await lead.send_message("fail")
        assert (await lead.send_message("z")).final_text == "lead:z#1"


async def test_the_conversation_survives_the_process(tmp_path: Path) -> None:
    path = tmp_path / "conversations.sqlite"
    with SQLiteJournal(path) as backend:
        async with system(RunJournal(backend), Tree()).open() as agents:
            lead = await agents.spawn("lead")
            assert (await lead.send_message("x")).final_text == "lead:x#1"
    # A new process: a new orchestrator on the same file.
    with SQLiteJournal(path) as backend:
        journal = RunJournal(backend)
        async with system(journal, Tree()).open() as agents:
            lead = await agents.spawn("lead")
            assert (await lead.send_message("y")).final_text == "lead:y#2"
        assert user_texts(journal, "conversation:lead") == ["x", "y"]


async def test_a_torn_last_record_is_dropped_and_replaced() -> None:
    backend = MemoryJournal()
    journal = RunJournal(backend)
    async with system(journal, Tree()).open() as agents:
        lead = await agents.spawn("lead")
        await lead.send_message("x")
        await lead.send_message("y")
    # The process died while appending "y": its record is torn.
    backend._runs["conversation:lead"][-1] = backend._runs["conversation:lead"][-1][:-7]
    async with system(journal, Tree()).open() as agents:
        lead = await agents.spawn("lead")
        assert (await lead.send_message("w")).final_text == "lead:w#2"
    assert user_texts(journal, "conversation:lead") == ["x", "w"]


class FailingBackend(MemoryJournal):
    """Refuses the appends numbered in ``refuse`` (0 = the first)."""

    def __init__(self, refuse: set[int]) -> None:
        super().__init__()
        self.refuse = refuse
        self.appends = 0

    def append(self, run_id: str, index: int, line: str) -> None:
        number, self.appends = self.appends, self.appends + 1
        if number in self.refuse:
            raise OSError("disk full")
        super().append(run_id, index, line)


async def test_a_failed_journal_write_fails_the_request_and_keeps_what_was_journaled() -> None:
    journal = RunJournal(FailingBackend(refuse={1}))
    # (An OSError is not retryable: DefaultSupervisor would stop the agent.)
    async with system(journal, Tree(), RestartAll()).open() as agents:
        lead = await agents.spawn("lead")
        assert (await lead.send_message("x")).final_text == "lead:x#1"
        # The answer could not be kept, so the caller is told, and the agent restarts.
        with pytest.raises(OSError, match="disk full"):
            await lead.send_message("y")
        assert (await lead.send_message("z")).final_text == "lead:z#2"
        assert lead.statistics().restarts == 1
    assert user_texts(journal, "conversation:lead") == ["x", "z"]


async def test_a_factory_agent_with_its_own_history_is_refused_at_spawn() -> None:
    journal = RunJournal(MemoryJournal())
    tree = Tree()
    async with system(journal, tree).open() as agents:
        lead = await agents.spawn("lead")
        await lead.send_message("x")
    orch = AgentOrchestrator(backoff=NO_BACKOFF)

    def remembering() -> Agent:
        agent = tree.factory("lead")()
        agent.load_history([UserMessage.text("from the factory")])
        return agent

    orch.add_agent("lead", remembering, conversation=journal)
    async with orch.open() as agents:
        with pytest.raises(UsageError, match="already has a conversation of 1 messages"):
            await agents.spawn("lead")
        assert agents.status("lead") is None  # never served, as with any broken factory
    assert user_texts(journal, "conversation:lead") == ["x"]


def test_bad_conversation_arguments_are_refused_and_change_nothing() -> None:
    orch = AgentOrchestrator()
    with pytest.raises(InvalidArgumentError, match="conversation for 'a' must be a RunJournal"):
        orch.add_agent("a", Tree().factory("a"), conversation=MemoryJournal())  # type: ignore[arg-type]
    assert orch.names() == []


async def test_conversations_and_runs_are_not_mixed_up() -> None:
    journal = RunJournal(MemoryJournal())
    async with system(journal, Tree()).open() as agents:
        await (await agents.spawn("lead")).send_message("x")
    with pytest.raises(InvalidArgumentError, match="holds an orchestrated agent's conversation"):
        await journal.resume(Tree().factory("lead")(), "conversation:lead")
    await journal.run(Agent(FunctionModel(lambda request: "done")), "go", run_id="r1")
    with pytest.raises(InvalidArgumentError, match="'r1' is a journaled run, not"):
        journal.conversation("r1")
    assert journal.conversation("nothing yet") == []


def test_load_history_checks_its_input() -> None:
    agent = Tree().factory("a")()
    with pytest.raises(InvalidArgumentError, match="takes a sequence of messages, got str"):
        agent.load_history("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"messages\[1\] must be a message, got int"):
        agent.load_history([UserMessage.text("a"), 3])  # type: ignore[list-item]
    assert agent.messages == ()
    agent.load_history([UserMessage.text("a")])
    assert agent.messages == (UserMessage.text("a"),)


async def test_cancelled_system_with_a_conversation_journal_is_bare_cancelled() -> None:
    journal = RunJournal(MemoryJournal())
    with trio.CancelScope() as scope:
        async with system(journal, Tree()).open() as agents:
            lead = await agents.spawn("lead")
            await lead.send_message("x")
            scope.cancel()
            await lead.send_message("hang")
    assert scope.cancelled_caught
    assert user_texts(journal, "conversation:lead") == ["x"]


async def test_a_run_waiting_for_approval_is_journaled_once_answered() -> None:
    from test_approval_handles import _mailer, sent

    sent.clear()
    journal = RunJournal(MemoryJournal())
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=NO_BACKOFF)
    orch.add_agent("mailer", _mailer, conversation=journal)
    async with orch.open() as agents:
        mailer = await agents.spawn("mailer")
        waiting = await mailer.send_message("mail bob")
        assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
        assert journal.conversation("conversation:mailer") == []  # nothing answered yet
        (pending,) = waiting.pending_approvals
        done = await mailer.resume([ApprovalDecision(call_id=pending.call_id, approved=True)])
        assert done.final_text == "done: sent to bob"
        # The whole turn, from the request to the answer after the tool, in one record.
        kept = journal.conversation("conversation:mailer")
        assert len(kept) == 4 and kept[-len(done.messages) :] == list(done.messages)
        assert len(journal.records("conversation:mailer")) == 1
        with pytest.raises(ModelOverloaded):
            await mailer.send_message("fail")
        assert (await mailer.send_message("hi")).final_text == "echo hi"
        assert journal.conversation("conversation:mailer")[: len(kept)] == kept
    assert sent == ["bob"]
