"""Replies and reasons when the supervision tree tears agents down.

A request an agent is serving when its supervisor tree tears it down is answered at the
teardown, not when the agent's fate is known (after a backoff); the reasons name the agent
(path) whose failure caused them; requests still queued at an agent whose failure escalated
are answered :class:`AgentEscalated`; and :class:`ChildFailed` means the same at every level as
its documentation says.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_agents import (
    Agent,
    AgentCancelled,
    AgentEnded,
    AgentError,
    AgentEscalated,
    AgentOrchestrator,
    AgentStatus,
    AgentStopped,
    AgentSuspended,
    AuthenticationError,
    Backoff,
    ChildFailed,
    DefaultSupervisor,
    ErrorInfo,
    Event,
    ModelOverloaded,
    PendingReply,
    RequestReplied,
    RestartStrategy,
    RetryPolicy,
    SupervisorAction,
    TextBlock,
    UserMessage,
)
from trio_agents._serde import converter
from trio_agents.testing import FunctionModel, check_one_reply, hang

BACKOFF_30 = Backoff(initial=30.0, jitter=False)
DOCS = Path(__file__).parent.parent / "docs"


def worker(name: str) -> Callable[[], Agent]:
    """An agent driven by the request text: ``fail`` (retryable), ``fatal`` (not), ``hang``;
    anything else is echoed as ``name:text``."""

    def build() -> Agent:
        def respond(request: Any) -> Any:
            last = request.messages[-1]
            assert isinstance(last, UserMessage)
            block = last.content[0]
            assert isinstance(block, TextBlock)
            word = block.text
            if word == "fail":
                raise ModelOverloaded(f"{name} overloaded")
            if word == "fatal":
                raise AuthenticationError(f"{name} has a bad key")
            if word == "hang":
                return hang()
            return f"{name}:{word}"

        return Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1))

    return build


class Always:
    """A policy that answers the same for every agent, and records what it was shown."""

    def __init__(self, action: SupervisorAction, **per_agent: SupervisorAction) -> None:
        self.action = action
        self.per_agent = per_agent
        self.seen: list[tuple[str, BaseException]] = []

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        self.seen.append((name, error))
        return self.per_agent.get(name, self.action)


async def _cancelled_now(pending: PendingReply) -> AgentCancelled:
    """The reply of ``pending``, which must already be there: an ``AgentCancelled``."""
    assert pending.done, "the request was not answered at the teardown"
    with pytest.raises(AgentCancelled) as info:
        await pending.wait()
    return info.value


# --------------------------------------------------------------------------- at the teardown


async def test_a_childs_request_is_answered_at_the_teardown_not_after_the_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=BACKOFF_30)
    orch.add_agent("p", worker("p"))
    orch.add_child("c", "p", worker("c"))
    async with orch.open() as system:
        p = await system.spawn("p")
        c = await system.spawn("c")
        in_flight = c.send_message_nowait("hang")
        queued = c.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await p.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 0.0  # the 30 s backoff has not started to run out
        assert p.status is AgentStatus.RESTARTING
        error = await _cancelled_now(in_flight)
        assert error.reason == "parent 'p' failed"
        assert not queued.done  # queued requests wait for the new incarnation
        assert (await queued.wait()).final_text == "c:later"
        assert trio.current_time() == 30.0
        assert c.statistics().incarnation == 2


@pytest.mark.parametrize(
    "strategy", [RestartStrategy.ONE_FOR_ALL, RestartStrategy.REST_FOR_ONE], ids=str
)
async def test_a_siblings_request_is_answered_at_the_teardown_not_after_the_backoff(
    autojump_clock: trio.testing.MockClock, strategy: RestartStrategy
) -> None:
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=BACKOFF_30)
    orch.add_agent("p", worker("p"), strategy=strategy)
    for name in ("a", "b"):
        orch.add_child(name, "p", worker(name))
    async with orch.open() as system:
        await system.spawn("p")
        a = await system.spawn("a")
        b = await system.spawn("b")
        # ONE_FOR_ALL takes the older sibling down, REST_FOR_ONE the younger one.
        failing, sibling = (b, a) if strategy is RestartStrategy.ONE_FOR_ALL else (a, b)
        in_flight = sibling.send_message_nowait("hang")
        queued = sibling.send_message_nowait("later")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await failing.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 0.0
        assert sibling.status is AgentStatus.RESTARTING
        error = await _cancelled_now(in_flight)
        assert error.reason == f"sibling {failing.path!r} is restarting"
        assert not queued.done
        assert (await queued.wait()).final_text == f"{sibling.name}:later"
        assert trio.current_time() == 30.0


async def test_a_parents_own_request_is_answered_when_its_childs_escalation_tears_it_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # p's run is cut short because its child escalated into p's nursery: p fails, and its
    # supervisor restarts it after 30 s. The request p was serving is answered at once.
    policy = Always(SupervisorAction.RESTART, c=SupervisorAction.ESCALATE)
    orch = AgentOrchestrator(supervisor=policy, backoff=BACKOFF_30)
    orch.add_agent("p", worker("p"))
    orch.add_child("c", "p", worker("c"))
    async with orch.open() as system:
        p = await system.spawn("p")
        c = await system.spawn("c")
        serving = p.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await c.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == 0.0
        assert p.status is AgentStatus.RESTARTING
        error = await _cancelled_now(serving)
        assert error.reason == "agent 'p/c' failed and its failure escalated to 'p'"
        assert (await p.send_message("back")).final_text == "p:back"
        assert trio.current_time() == 30.0


async def test_a_failed_requests_reply_comes_before_the_decision() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(
        supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=events.append
    )
    orch.add_agent("a", worker("a"))
    async with orch.open() as system:
        a = await system.spawn("a")
        with pytest.raises(ModelOverloaded):
            await a.send_message("fail")
        await trio.testing.wait_all_tasks_blocked()
        assert a.status is AgentStatus.RUNNING  # restarted by now
    lifecycle = {
        "request_received",
        "request_replied",
        "agent_failed",
        "supervisor_decided",
        "agent_restarted",
    }
    kinds = [e.kind for e in events if e.kind in lifecycle]
    assert kinds == [
        "request_received",
        "request_replied",  # the caller has its error ...
        "agent_failed",  # ... before the supervisor is asked
        "supervisor_decided",
        "agent_restarted",
    ]


# --------------------------------------------------------------------------- escalated queues


async def test_queued_requests_of_an_agent_whose_failure_escalated_get_agent_escalated() -> None:
    # w escalates; its parent r is stopped by the policy: w ends, and its queue is answered.
    policy = Always(SupervisorAction.STOP, w=SupervisorAction.ESCALATE)
    orch = AgentOrchestrator(supervisor=policy, backoff=Backoff.none())
    orch.add_agent("lead", worker("lead"))
    orch.add_child("r", "lead", worker("r"))
    orch.add_child("w", "r", worker("w"))
    async with orch.open() as system:
        handles = {name: await system.spawn(name) for name in orch.names()}
        w = handles["w"]
        failing = w.send_message_nowait("fail")
        queued = [w.send_message_nowait(f"q{i}") for i in range(2)]
        with pytest.raises(ModelOverloaded) as failure:
            await failing.wait()
        for pending in queued:
            with pytest.raises(AgentEscalated) as info:
                await pending.wait()
            error = info.value
            assert error.__cause__ is failure.value
            assert error.failure is failure.value
            assert error.path == "lead/r/w"
            assert error.retryable is False
            assert "escalated to 'lead/r'" in str(error)
            assert "was stopped after it failed" not in str(error)
            assert isinstance(error, AgentStopped)  # still "takes no more requests"
        with pytest.raises(AgentEscalated):
            await w.send_message("late")
        assert w.status is AgentStatus.FAILED
        assert handles["r"].status is AgentStatus.FAILED
        assert handles["lead"].status is AgentStatus.RUNNING


async def test_queued_requests_of_a_top_level_agent_whose_failure_reached_the_root() -> None:
    orch = AgentOrchestrator(backoff=Backoff.none())  # no policy: every failure escalates
    orch.add_agent("a", worker("a"))
    with pytest.raises(ChildFailed) as root:
        async with orch.open() as system:
            a = await system.spawn("a")
            failing = a.send_message_nowait("fatal")
            queued = a.send_message_nowait("later")
            await trio.sleep_forever()
    with pytest.raises(AuthenticationError):
        await failing.wait()
    with pytest.raises(AgentEscalated, match="escalated to the root") as info:
        await queued.wait()
    assert info.value.failure is root.value.original


def test_agent_escalated_is_serialised_as_error_info() -> None:
    error = AgentEscalated("lead/w", ModelOverloaded("busy"), escalated_to="lead")
    info = error.info()
    assert info.type == "AgentEscalated"
    assert info.retryable is False
    assert info.message == (
        "agent 'lead/w' failed and its failure escalated to 'lead': ModelOverloaded: busy"
    )
    assert converter.structure(converter.unstructure(info), ErrorInfo) == info


# --------------------------------------------------------------------------- reasons


async def test_siblings_torn_down_by_an_escalation_to_the_root_name_the_sibling() -> None:
    events: list[Event] = []
    orch = AgentOrchestrator(backoff=Backoff.none(), event_sink=events.append)
    for name in ("a", "b"):
        orch.add_agent(name, worker(name))
    orch.add_child("kid", "a", worker("kid"))
    with pytest.raises(ChildFailed):
        async with orch.open() as system:
            a = await system.spawn("a")
            b = await system.spawn("b")
            kid = await system.spawn("kid")
            serving = a.send_message_nowait("hang")
            queued = a.send_message_nowait("later")
            kid_serving = kid.send_message_nowait("hang")
            await trio.testing.wait_all_tasks_blocked()
            b.send_message_nowait("fatal")
            await trio.sleep_forever()
    because = "agent 'b' failed and its failure escalated to the root"
    for pending in (serving, queued, kid_serving):
        with pytest.raises(AgentCancelled) as info:
            await pending.wait()
        assert because in info.value.reason
        assert "cancelled from outside" not in info.value.reason
    ended = {e.agent: e.error for e in events if isinstance(e, AgentEnded)}
    assert ended["a"] is not None and because in ended["a"].message
    assert a.status is AgentStatus.CANCELLED


async def test_siblings_torn_down_by_an_escalation_inside_the_tree_name_the_sibling() -> None:
    # w1 escalates into r's nursery; r is restarted. w2, torn down with it, names w1.
    events: list[Event] = []
    policy = Always(SupervisorAction.RESTART, w1=SupervisorAction.ESCALATE)
    orch = AgentOrchestrator(supervisor=policy, backoff=Backoff.none(), event_sink=events.append)
    orch.add_agent("r", worker("r"))
    for name in ("w1", "w2"):
        orch.add_child(name, "r", worker(name))
    async with orch.open() as system:
        for name in orch.names():
            await system.spawn(name)
        serving = system.handle("w2").send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ModelOverloaded):
            await system.handle("w1").send_message("fail")
        await trio.testing.wait_all_tasks_blocked()  # the reply comes before the decision
        error = await _cancelled_now(serving)
        because = "agent 'r/w1' failed and its failure escalated to 'r'"
        assert error.reason == because
    suspended = [e.reason for e in events if isinstance(e, AgentSuspended) and e.agent == "r/w2"]
    assert suspended[:1] == [because]


# --------------------------------------------------------------------------- ChildFailed


async def test_child_failed_attributes_at_each_level_of_a_three_deep_escalation() -> None:
    policy = Always(SupervisorAction.ESCALATE)
    orch = AgentOrchestrator(supervisor=policy)
    orch.add_agent("lead", worker("lead"))
    orch.add_child("researcher", "lead", worker("researcher"))
    orch.add_child("worker", "researcher", worker("worker"))
    with pytest.raises(ChildFailed) as root:
        async with orch.open() as system:
            for name in orch.names():
                await system.spawn(name)
            system.handle("worker").send_message_nowait("fatal")
            await trio.sleep_forever()
    origin = "lead/researcher/worker"
    # What the policy is shown about each agent, then what leaves the block.
    names = [name for name, _ in policy.seen]
    assert names == ["worker", "researcher", "lead"]
    original = policy.seen[0][1]
    assert isinstance(original, AuthenticationError)
    levels = [error for _, error in policy.seen[1:]] + [root.value]
    assert [(e.path, e.origin, e.original) for e in levels] == [  # type: ignore[attr-defined]
        ("lead/researcher/worker", origin, original),  # researcher fails with this
        ("lead/researcher", origin, original),  # lead fails with this
        ("lead", origin, original),  # the root gets this
    ]
    # Each level's __cause__ is the level below, ending at the original error.
    assert [e.__cause__ for e in levels] == [original, levels[0], levels[1]]
    # path is always a child of the agent that fails with it (its supervisor's agent).
    for (name, error), failing in zip(policy.seen[1:], ("researcher", "lead"), strict=True):
        assert name == failing
        assert orch.parent_of(error.path.rsplit("/", 1)[-1]) == failing  # type: ignore[attr-defined]


def _sentences(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_child_failed_is_described_alike_by_help_and_the_docs_page() -> None:
    help_text = _sentences(inspect.getdoc(ChildFailed) or "")
    page = _sentences((DOCS / "supervision.rst").read_text())
    page = re.sub(r":attr:`~ChildFailed\.(\w+)`", r":attr:`\1`", page)
    definitions = re.findall(
        r"\* (:attr:`(?:path|origin|original)` -- [^*]+?\.)(?= \*| Example)", help_text
    )
    assert len(definitions) == 3
    for definition in definitions:
        assert definition in page, definition


# --------------------------------------------------------------------------- the sweep


@st.composite
def teardowns(draw: st.DrawFn) -> dict[str, Any]:
    """A parent ``p`` with 1-4 children (some with a grandchild), requests in flight and
    queued here and there, and one failure: of a child (restarted, or escalated into ``p``,
    which restarts), or of ``p`` itself."""
    strategy = draw(st.sampled_from(list(RestartStrategy)))
    count = draw(st.integers(min_value=1, max_value=4))
    children = [f"c{i}" for i in range(count)]
    grandchild = {c: draw(st.booleans()) for c in children}
    failing = draw(st.sampled_from(["p", *children]))
    escalates = failing != "p" and draw(st.booleans())
    busy = {}
    for name in ["p", *children, *(f"{c}g" for c in children if grandchild[c])]:
        if name == failing:
            busy[name] = (False, draw(st.integers(min_value=0, max_value=2)))
        else:
            busy[name] = (draw(st.booleans()), draw(st.integers(min_value=0, max_value=2)))
    return {
        "strategy": strategy,
        "children": children,
        "grandchild": grandchild,
        "failing": failing,
        "escalates": escalates,
        "busy": busy,
    }


def _torn_down(case: dict[str, Any]) -> set[str]:
    """The agents the failure tears down (they restart), the failing one aside."""
    children: list[str] = case["children"]
    failing: str = case["failing"]
    if case["escalates"]:
        down = {"p", *children}  # p fails and restarts: everything under it comes back
    elif failing == "p":
        down = set(children)
    else:
        index = children.index(failing)
        strategy = case["strategy"]
        if strategy is RestartStrategy.ONE_FOR_ALL:
            down = set(children) - {failing}
        elif strategy is RestartStrategy.REST_FOR_ONE:
            down = set(children[index + 1 :])
        else:
            down = set()
        down.add(failing)  # its own children go down with it
    grandchildren = {f"{c}g" for c in down if c != "p" and case["grandchild"][c]}
    return (down | grandchildren) - {failing}


@settings(max_examples=60)
@given(teardowns())
def test_every_request_outstanding_at_a_teardown_gets_one_reply_at_the_teardown(
    case: dict[str, Any],
) -> None:
    async def main() -> None:
        events: list[Event] = []
        failing: str = case["failing"]
        if case["escalates"]:  # the failing child escalates, p (failed with it) restarts
            policy: Any = Always(SupervisorAction.RESTART, **{failing: SupervisorAction.ESCALATE})
        else:
            policy = DefaultSupervisor()
        orch = AgentOrchestrator(supervisor=policy, backoff=BACKOFF_30, event_sink=events.append)
        orch.add_agent("p", worker("p"), strategy=case["strategy"])
        for child in case["children"]:
            orch.add_child(child, "p", worker(child))
            if case["grandchild"][child]:
                orch.add_child(f"{child}g", child, worker(f"{child}g"))
        down = _torn_down(case)
        async with orch.open() as system:
            handles = {name: await system.spawn(name) for name in orch.names()}
            in_flight: dict[str, PendingReply] = {}
            queued: dict[str, list[PendingReply]] = {}
            for name, (serving, waiting) in case["busy"].items():
                if serving:
                    in_flight[name] = handles[name].send_message_nowait("hang")
                elif name != failing:
                    continue  # an idle agent would serve its queue now: nothing outstanding
                if name == failing:
                    failure = handles[name].send_message_nowait("fail")
                queued[name] = [handles[name].send_message_nowait(f"q{i}") for i in range(waiting)]
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(ModelOverloaded):
                await failure.wait()
            await trio.testing.wait_all_tasks_blocked()
            assert trio.current_time() == 0.0  # the 30 s backoff is still to run
            for name, pending in in_flight.items():
                if name in down:
                    error = await _cancelled_now(pending)
                    assert error.reason  # says why
                    assert [
                        (e.time, e.error.type if e.error else None)
                        for e in events
                        if isinstance(e, RequestReplied) and e.agent == handles[name].path
                    ] == [(0.0, "AgentCancelled")]
                else:
                    assert not pending.done, name  # untouched by the failure
            for name, pendings in queued.items():
                assert not any(p.done for p in pendings), name  # queues wait
            check_one_reply(events)
            await trio.sleep(30)  # the backoff: the torn-down agents come back
            await trio.testing.wait_all_tasks_blocked()
            for name, pendings in queued.items():
                if name in down or name == failing or case["escalates"]:
                    for pending in pendings:
                        assert (await pending.wait()).final_text.startswith(f"{name}:q")
                else:  # still behind a request that hangs
                    assert not any(p.done for p in pendings), name
        check_one_reply(events, complete=True)
        assert all(p.done for p in in_flight.values())
        assert all(p.done for pendings in queued.values() for p in pendings)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_teardown_reply_errors_are_agent_errors() -> None:
    assert issubclass(AgentEscalated, AgentStopped)
    assert issubclass(AgentEscalated, AgentError)
