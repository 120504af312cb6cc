"""Approval inside a delegation tree: a specialist at any depth that stops for approval stops
the top run; Delegator.resume (and Agent.resume of a lead) routes the decisions down."""

from __future__ import annotations

import json

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentResult,
    AgentSpec,
    ApprovalDecision,
    Delegator,
    DelegatorResult,
    InvalidArgumentError,
    Model,
    ModelRequest,
    ModelRunner,
    PendingApproval,
    StopReason,
    SuspendedAgent,
    ToolCallBlock,
    ToolContext,
    ToolResultMessage,
    dump,
    dumps_json,
    load,
    loads_json,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptedModel, text, tool_call
from trio_agents.testing.strategies import agent_results, messages, usages

sent: list[str] = []


async def _send_email(to: str) -> str:
    """Send an email."""
    sent.append(to)
    return f"sent to {to}"


send_email = tool(_send_email, name="send_email", requires_approval=True)
send_email_inline = tool(_send_email, name="send_email")  # the same tool, no approval


@pytest.fixture(autouse=True)
def _clear_sent() -> None:
    sent.clear()


LEAD = AgentSpec(name="lead", model="lead")
RESEARCH = AgentSpec(name="research", model="research", tools=["delegate"])
DB = AgentSpec(name="db", model="db", tools=["send_email"])
NOTES = AgentSpec(name="notes", model="notes")
TEAM = Delegator(LEAD, [RESEARCH, DB, NOTES])


def _scripts() -> dict[str, list[object]]:
    """lead -> (research -> db, notes) in parallel; db's call needs approval."""
    return {
        "lead": [
            tool_call("delegate", {"specialist": "research", "subtask": "find"}, id="l1")
            + tool_call("delegate", {"specialist": "notes", "subtask": "jot"}, id="l2"),
            text("All done."),
        ],
        "research": [
            tool_call("delegate", {"specialist": "db", "subtask": "store"}, id="r1"),
            text("research ok"),
        ],
        "db": [tool_call("send_email", {"to": "bob"}, id="d1"), text("db ok")],
        "notes": [text("notes ok")],
    }


def _models(scripts: dict[str, list[object]]) -> dict[str, ScriptedModel]:
    return {key: ScriptedModel(script, model_id=key) for key, script in scripts.items()}  # type: ignore[arg-type]


def _runner(models: dict[str, ScriptedModel], *, inline: bool = False) -> ModelRunner:
    return ModelRunner(models, tools=[send_email_inline if inline else send_email])  # type: ignore[arg-type]


def _results(messages: tuple[object, ...]) -> list[tuple[str, bool, str]]:
    return [
        (r.tool_call_id, r.is_error, r.content)
        for m in messages
        if isinstance(m, ToolResultMessage)
        for r in m.results
    ]


APPROVE = ApprovalDecision(call_id="d1", approved=True)


async def test_approval_deep_in_the_tree_stops_the_top_run_with_the_path() -> None:
    models = _models(_scripts())
    result = await TEAM.run("go", runner=_runner(models))
    assert result.result.stop_reason is StopReason.APPROVAL_REQUIRED
    assert result.pending_approvals == (
        PendingApproval(
            call_id="d1",
            tool="send_email",
            arguments={"to": "bob"},
            agent="lead/research/db",
            via=("l1", "r1"),
        ),
    )
    assert sent == []
    # The sibling that ran in parallel finished, and its work is kept: its record, and its
    # answer held for the lead's turn.
    (notes,) = result.delegations
    assert (notes.path, notes.success, notes.result) == ("lead/notes", True, "notes ok")
    assert [(r.tool_call_id, r.content) for r in result.result.held_results] == [("l2", "notes ok")]
    # The waiting state of the whole tree.
    state = result.suspended
    assert state is not None
    assert (state.path, state.call_id, state.depth) == ("lead", "", 0)
    (research,) = state.nested
    assert (research.path, research.call_id, research.depth) == ("lead/research", "l1", 1)
    (db,) = research.nested
    assert (db.path, db.call_id, db.depth, db.nested) == ("lead/research/db", "r1", 2, ())
    assert db.waiting.pending_approvals[0].via == ()
    assert research.waiting.pending_approvals[0].via == ("r1",)


async def test_resume_gives_what_an_inline_approval_gives() -> None:
    inline = await TEAM.run("go", runner=_runner(_models(_scripts()), inline=True))
    assert sent == ["bob"]
    sent.clear()

    models = _models(_scripts())
    runner = _runner(models)
    waiting = await TEAM.run("go", runner=runner)
    done = await TEAM.resume(waiting, [APPROVE], runner=runner)
    assert sent == ["bob"]
    assert done.result.stop_reason is StopReason.STOP
    assert done.suspended is None
    assert done.final_answer == inline.final_answer == "All done."
    # The lead's whole conversation is the inline one.
    assert waiting.suspended is not None
    assert (*waiting.suspended.history, *done.result.messages) == inline.result.messages
    assert _results(done.result.messages) == [
        ("l1", False, "research ok"),
        ("l2", False, "notes ok"),
    ]
    # The finished sibling was not run again; every delegation has one record.
    assert len(models["notes"].requests) == 1
    # ... and each record counts its specialist's usage before and after the stop.
    assert sorted((r.path, r.success, r.result, r.usage) for r in done.delegations) == sorted(
        (r.path, r.success, r.result, r.usage) for r in inline.delegations
    )
    # db's model read the tool's result, as inline.
    assert _results(models["db"].requests[-1].messages) == [("d1", False, "sent to bob")]


async def test_resume_in_a_fresh_process_from_stored_json() -> None:
    scripts = _scripts()
    waiting = await TEAM.run("go", runner=_runner(_models(scripts)))
    stored = dumps_json(waiting)
    stored_decisions = json.dumps([dump(APPROVE)])

    # Later, elsewhere: new models that only know what is left of each script.
    restored = loads_json(stored, DelegatorResult)
    assert restored == waiting
    later = _models(
        {"lead": [text("All done.")], "research": [text("research ok")], "db": [text("db ok")]}
        | {"notes": []}
    )
    decisions = [load(d, ApprovalDecision) for d in json.loads(stored_decisions)]
    done = await TEAM.resume(restored, decisions, runner=_runner(later))
    assert sent == ["bob"]
    assert done.final_answer == "All done."
    # Each rebuilt agent's model saw its whole conversation.
    assert len(later["db"].requests[0].messages) == 3
    assert len(later["lead"].requests[0].messages) == 3


async def test_a_denied_call_deep_in_the_tree_is_an_error_result_there() -> None:
    models = _models(_scripts())
    runner = _runner(models)
    waiting = await TEAM.run("go", runner=runner)
    done = await TEAM.resume(
        waiting, [ApprovalDecision(call_id="d1", approved=False, reason="no")], runner=runner
    )
    assert sent == []
    assert done.final_answer == "All done."
    assert _results(models["db"].requests[-1].messages) == [
        ("d1", True, "not run: a person denied this call: no")
    ]


async def test_bad_decisions_are_rejected_and_change_nothing() -> None:
    models = _models(_scripts())
    runner = _runner(models)
    waiting = await TEAM.run("go", runner=runner)
    counts = {key: len(model.requests) for key, model in models.items()}
    bad = [
        ([APPROVE, ApprovalDecision(call_id="zz", approved=True)], r"unknown call id 'zz'"),
        ([], r"no decision for pending call ids \['d1'\]"),
        (
            [ApprovalDecision(call_id="d1", approved=True, agent="lead/research")],
            r"names agent 'lead/research', but that call waits in \['lead/research/db'\]",
        ),
        ([APPROVE, APPROVE], "two decisions for call id 'd1'"),
    ]
    for decisions, message in bad:
        with pytest.raises(InvalidArgumentError, match=message):
            await TEAM.resume(waiting, decisions, runner=runner)
    assert sent == []
    assert {key: len(model.requests) for key, model in models.items()} == counts
    finished = await TEAM.run("again", runner=_runner(_models({"lead": ["hi"]})))
    with pytest.raises(InvalidArgumentError, match="did not stop for approval"):
        await TEAM.resume(finished, [APPROVE], runner=runner)
    # Still resumable with the right decisions (naming the path works too).
    decided = ApprovalDecision(call_id="d1", approved=True, agent="lead/research/db")
    done = await TEAM.resume(waiting, [decided], runner=runner)
    assert done.final_answer == "All done."


async def test_the_same_call_id_in_two_specialists_needs_the_path() -> None:
    mailer = AgentSpec(name="mailer", model="mailer", tools=["send_email"])
    other = AgentSpec(name="other", model="other", tools=["send_email"])
    team = Delegator(LEAD, [mailer, other])
    models = _models(
        {
            "lead": [
                tool_call("delegate", {"specialist": "mailer", "subtask": "a"}, id="l1")
                + tool_call("delegate", {"specialist": "other", "subtask": "b"}, id="l2"),
                text("Both."),
            ],
            "mailer": [tool_call("send_email", {"to": "ann"}, id="c1"), text("m")],
            "other": [tool_call("send_email", {"to": "cy"}, id="c1"), text("o")],
        }
    )
    runner = _runner(models)
    waiting = await team.run("go", runner=runner)
    assert [(p.agent, p.call_id, p.via) for p in waiting.pending_approvals] == [
        ("lead/mailer", "c1", ("l1",)),
        ("lead/other", "c1", ("l2",)),
    ]
    with pytest.raises(InvalidArgumentError, match="waits in several agents"):
        await team.resume(
            waiting, [ApprovalDecision(call_id="c1", approved=True)] * 2, runner=runner
        )
    done = await team.resume(
        waiting,
        [
            ApprovalDecision(call_id="c1", approved=True, agent="lead/mailer"),
            ApprovalDecision(call_id="c1", approved=False, agent="lead/other"),
        ],
        runner=runner,
    )
    assert sent == ["ann"]
    assert done.final_answer == "Both."


async def test_a_resumed_tree_may_stop_for_approval_again() -> None:
    scripts = _scripts()
    scripts["db"] = [
        tool_call("send_email", {"to": "bob"}, id="d1"),
        tool_call("send_email", {"to": "eve"}, id="d2"),
        text("db ok"),
    ]
    models = _models(scripts)
    runner = _runner(models)
    first = await TEAM.run("go", runner=runner)
    second = await TEAM.resume(first, [APPROVE], runner=runner)
    assert sent == ["bob"]
    assert [(p.call_id, p.via) for p in second.pending_approvals] == [("d2", ("l1", "r1"))]
    # The stored state holds each agent's whole conversation so far.
    restored = loads_json(dumps_json(second), DelegatorResult)
    done = await TEAM.resume(
        restored, [ApprovalDecision(call_id="d2", approved=True)], runner=runner
    )
    assert sent == ["bob", "eve"]
    assert done.final_answer == "All done."
    assert len(models["notes"].requests) == 1


async def test_agent_resume_of_a_lead_whose_delegation_waits() -> None:
    models = _models(_scripts())
    runner = _runner(models)
    executor = TEAM.executor(runner=runner)
    lead = Agent(models["lead"], name="lead", tools=executor)
    waiting = await lead.run("go")
    assert waiting.stop_reason is StopReason.APPROVAL_REQUIRED
    assert [p.agent for p in waiting.pending_approvals] == ["lead/research/db"]
    done = await lead.resume([APPROVE])
    assert sent == ["bob"]
    assert done.final_text == "All done."
    assert [r.path for r in executor.records()] == [
        "lead/notes",
        "lead/research",
        "lead/research/db",
    ] or sorted(r.path for r in executor.records()) == [
        "lead/notes",
        "lead/research",
        "lead/research/db",
    ]


async def test_outside_cancellation_of_resume_is_a_bare_cancelled() -> None:
    models = _models(_scripts())
    waiting = await TEAM.run("go", runner=_runner(models))

    async def hangs(to: str) -> str:
        """Never returns."""
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    hanging = ModelRunner(models, tools=[tool(hangs, name="send_email")])  # type: ignore[arg-type]
    left: list[BaseException] = []

    async def resume() -> None:
        try:
            await TEAM.resume(waiting, [APPROVE], runner=hanging)
        except BaseException as exc:
            left.append(exc)
            raise

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(resume)
            await trio.testing.wait_all_tasks_blocked()  # three levels down, in the tool
            scope.cancel(reason="owner")
    assert scope.cancelled_caught
    (exc,) = left
    assert type(exc) is trio.Cancelled
    assert exc.reason == "owner"


leaf_states = st.builds(
    SuspendedAgent,
    path=st.text(max_size=6),
    name=st.text(max_size=6),
    subtask=st.text(max_size=6),
    call_id=st.text(max_size=4),
    depth=st.integers(0, 5),
    history=st.lists(messages(), max_size=2).map(tuple),
    waiting=agent_results(),
    usage=usages(),
)
states = st.recursive(
    leaf_states,
    lambda inner: st.builds(
        SuspendedAgent,
        path=st.text(max_size=6),
        name=st.text(max_size=6),
        subtask=st.text(max_size=6),
        waiting=agent_results(),
        nested=st.lists(inner, max_size=2).map(tuple),
    ),
    max_leaves=3,
)
decisions = st.builds(
    ApprovalDecision,
    call_id=st.text(max_size=6),
    approved=st.booleans(),
    reason=st.text(max_size=6),
    agent=st.text(max_size=6),
)


@given(states, decisions, st.lists(st.text(max_size=4), max_size=3))
def test_suspended_state_round_trips_through_the_converter(
    state: SuspendedAgent, decision: ApprovalDecision, via: list[str]
) -> None:
    result = DelegatorResult(
        task="t",
        final_answer="",
        result=AgentResult(stop_reason=StopReason.APPROVAL_REQUIRED),
        suspended=state,
    )
    assert load(json.loads(dumps_json(result)), DelegatorResult) == result
    assert load(json.loads(json.dumps(dump(decision))), ApprovalDecision) == decision
    pending = PendingApproval(call_id="c", tool="t", via=via)
    assert load(json.loads(json.dumps(dump(pending))), PendingApproval) == pending


async def test_a_live_agent_that_stops_for_approval_is_resumed_through_its_handle() -> None:
    mailer_model = ScriptedModel(
        [tool_call("send_email", {"to": "bob"}, id="m1"), text("mailed")], model_id="mailer"
    )
    orchestrator = AgentOrchestrator()
    orchestrator.add_agent("mailer", lambda: Agent(mailer_model, name="mailer", tools=[send_email]))
    async with orchestrator.open() as system:
        handle = await system.spawn("mailer")
        team = Delegator(LEAD, [NOTES], handles={"mailer": handle})
        lead = ScriptedModel(
            [
                tool_call("delegate", {"specialist": "mailer", "subtask": "mail bob"}, id="l1"),
                text("Bob is mailed."),
            ],
            model_id="lead",
        )
        runner = _runner({"lead": lead})
        waiting = await team.run("go", runner=runner)
        assert [(p.agent, p.call_id, p.via) for p in waiting.pending_approvals] == [
            ("mailer", "m1", ("l1",))
        ]
        done = await team.resume(
            waiting, [ApprovalDecision(call_id="m1", approved=True)], runner=runner
        )
        assert sent == ["bob"]
        assert done.final_answer == "Bob is mailed."
        assert [(r.specialist, r.result) for r in done.delegations] == [("mailer", "mailed")]


async def test_a_caller_that_is_not_an_agent_cannot_wait_and_gets_a_failure() -> None:
    models = _models({"db": [tool_call("send_email", {"to": "bob"}, id="d1")]})
    executor = TEAM.executor(runner=_runner(models))
    call = ToolCallBlock(
        id="x1", name="delegate", arguments={"specialist": "db", "subtask": "store"}
    )
    result = await executor.execute(call, ToolContext(agent="lead", call=call))
    assert result.is_error
    assert "caller is not an Agent that can wait for approval" in result.content
    (record,) = executor.records()
    assert not record.success
    assert sent == []


# --------------------------------------------------------------------------- whole trees

# A tree: (needs approval, children). Node names are given in depth-first order: n0 is the
# main agent, the rest the specialists.
Node = tuple[bool, list["Node"]]
nodes: st.SearchStrategy[Node] = st.recursive(
    st.tuples(st.booleans(), st.just([])),
    lambda inner: st.tuples(st.booleans(), st.lists(inner, min_size=1, max_size=3)),
    max_leaves=6,
)


def _named(tree: Node) -> dict[str, tuple[bool, list[str]]]:
    """name -> (needs approval, children's names), names in depth-first order."""
    out: dict[str, tuple[bool, list[str]]] = {}

    def walk(node: Node) -> str:
        name = f"n{len(out)}"
        out[name] = (node[0], [])
        out[name] = (node[0], [walk(child) for child in node[1]])
        return name

    walk(tree)
    return out


def _behaviour(name: str, asks: bool, children: list[str]) -> FunctionModel:
    """First turn: delegate to every child and (if it asks) send an email, all at once; then
    answer with what came back. A function of the conversation only, so it behaves the same
    inline, resumed, and rebuilt in a fresh process."""

    def respond(request: ModelRequest) -> object:
        last = request.messages[-1]
        if isinstance(last, ToolResultMessage):
            return text(f"{name}(" + ",".join(r.content for r in last.results) + ")")
        step = text(f"{name}()")
        calls = [
            tool_call("delegate", {"specialist": child, "subtask": "go"}, id=f"{name}>{child}")
            for child in children
        ]
        if asks:
            calls.append(tool_call("send_email", {"to": name}, id=f"{name}!mail"))
        if calls:
            step = calls[0]
            for more in calls[1:]:
                step = step + more
        return step

    return FunctionModel(respond, model_id=name)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(nodes)
def test_a_tree_resumed_from_stored_json_answers_as_an_inline_approval_would(tree: Node) -> None:
    named = _named(tree)
    specs = [
        AgentSpec(
            name=name,
            model=name,
            tools=(["delegate"] if kids else []) + (["send_email"] if asks else []),
        )
        for name, (asks, kids) in named.items()
    ]
    main, *pool = specs
    if not pool:  # a Delegator needs a specialist: give the main agent an idle one
        pool = [AgentSpec(name="idle", model="idle")]
    team = Delegator(main, pool, max_depth=10)

    def models() -> dict[str, Model]:
        found: dict[str, Model] = {
            name: _behaviour(name, asks, kids) for name, (asks, kids) in named.items()
        }
        found.setdefault("idle", _behaviour("idle", False, []))
        return found

    async def main_() -> None:
        sent.clear()
        inline = await team.run("go", runner=ModelRunner(models(), tools=[send_email_inline]))
        inline_sent = sorted(sent)
        sent.clear()
        result = await team.run("go", runner=ModelRunner(models(), tools=[send_email]))
        asking = sorted(name for name, (asks, _) in named.items() if asks)
        rounds = 0
        while result.suspended is not None:
            rounds += 1
            # Every call that asks, at every depth, surfaces at once, with its path.
            assert sorted(p.arguments["to"] for p in result.pending_approvals) == asking
            for p in result.pending_approvals:
                assert p.agent.rsplit("/", 1)[-1] == p.arguments["to"]
                assert len(p.via) == p.agent.count("/")
            stored = loads_json(dumps_json(result), DelegatorResult)
            decisions = [
                ApprovalDecision(call_id=p.call_id, approved=True, agent=p.agent)
                for p in stored.pending_approvals
            ]
            # A fresh runner and fresh models: only the stored values carry over.
            result = await team.resume(
                stored, decisions, runner=ModelRunner(models(), tools=[send_email])
            )
        assert rounds == (1 if asking else 0)
        assert sorted(sent) == inline_sent == asking
        assert result.final_answer == inline.final_answer
        assert sorted((r.path, r.result, r.usage) for r in result.delegations) == sorted(
            (r.path, r.result, r.usage) for r in inline.delegations
        )

    trio.run(main_)
