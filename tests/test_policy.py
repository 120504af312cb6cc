"""PolicyEngine: named checks in order, fail closed, built-ins, denial events."""

from __future__ import annotations

import re
from typing import Any

import pytest
import trio

from trio_agents import (
    Agent,
    Event,
    EventLog,
    InvalidArgumentError,
    PolicyDenied,
    PolicyEngine,
    SharedInfra,
    StateStore,
    ToolCallBlock,
    ToolContext,
    ToolDenied,
    ToolPolicy,
    ToolResultMessage,
    tool,
)
from trio_agents.testing import ScriptedModel, tool_call


def call(name: str, **arguments: Any) -> ToolCallBlock:
    return ToolCallBlock(id=f"id-{name}", name=name, arguments=arguments)


def ctx(c: ToolCallBlock, infra: Any = None, agent: str = "lead/worker") -> ToolContext:
    return ToolContext(agent=agent, call=c, infra=infra)


def allowed(engine: PolicyEngine, c: ToolCallBlock, infra: Any = None) -> bool:
    try:
        engine.check(c, ctx(c, infra))
    except ToolDenied:
        return False
    return True


def denial(engine: PolicyEngine, c: ToolCallBlock, infra: Any = None) -> str:
    with pytest.raises(ToolDenied) as info:
        engine.check(c, ctx(c, infra))
    return str(info.value)


def test_engine_is_a_tool_policy() -> None:
    engine = PolicyEngine()
    assert isinstance(engine, ToolPolicy)
    engine.check(call("anything"), ctx(call("anything")))  # no checks: allowed


def test_deny_tool_emits_a_policy_denied_event() -> None:
    log = EventLog()
    engine = PolicyEngine(event_sink=log)
    engine.deny_tool("no-shell", "shell", "exec")
    assert denial(engine, call("shell", cmd="ls")) == (
        "policy check 'no-shell': tool 'shell' is not allowed"
    )
    assert not allowed(engine, call("exec"))
    assert allowed(engine, call("search"))
    assert log.events() == [
        PolicyDenied(
            time=0.0,
            agent="lead/worker",
            tool="shell",
            call_id="id-shell",
            check="no-shell",
            reason="tool 'shell' is not allowed",
        ),
        PolicyDenied(
            time=0.0,
            agent="lead/worker",
            tool="exec",
            call_id="id-exec",
            check="no-shell",
            reason="tool 'exec' is not allowed",
        ),
    ]
    assert PolicyDenied.kind == "policy_denied"


async def test_denial_time_is_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    log = EventLog()
    engine = PolicyEngine(event_sink=log)
    engine.deny_tool("no", "x")
    await trio.sleep(7)
    denial(engine, call("x"))
    assert log.events()[0].time == trio.current_time()


def test_checks_run_in_order_and_the_first_denial_wins() -> None:
    ran: list[str] = []
    log = EventLog()
    engine = PolicyEngine(event_sink=log)

    def record(name: str, verdict: Any) -> Any:
        def check(c: ToolCallBlock, context: ToolContext) -> Any:
            ran.append(name)
            return verdict

        return check

    engine.add_check("first", record("first", None))
    engine.add_check("second", record("second", True))
    engine.add_check("third", record("third", "third says no"))
    engine.add_check("fourth", record("fourth", False))
    assert engine.checks == ["first", "second", "third", "fourth"]
    assert denial(engine, call("t")) == "policy check 'third': third says no"
    assert ran == ["first", "second", "third"]  # fourth never ran
    assert [e.check for e in log.events(PolicyDenied)] == ["third"]  # type: ignore[attr-defined]

    engine.remove_check("third")
    assert denial(engine, call("t")) == "policy check 'fourth': denied"
    with pytest.raises(InvalidArgumentError, match="no check named 'third'"):
        engine.remove_check("third")


@pytest.mark.parametrize(
    ("fn", "reason"),
    [
        (lambda c, x: 1 / 0, "the check raised ZeroDivisionError: division by zero"),
        (lambda c, x: x.infra.missing, "the check raised AttributeError"),
        (lambda c, x: [][1], "the check raised IndexError: list index out of range"),
        (lambda c, x: 0, "the check returned int"),
        (lambda c, x: {"ok": True}, "the check returned dict"),
        (lambda c, x: "", "denied"),
    ],
)
def test_a_check_that_raises_or_misbehaves_denies(fn: Any, reason: str) -> None:
    log = EventLog()
    engine = PolicyEngine(event_sink=log)
    engine.add_check("fragile", fn)
    message = denial(engine, call("t"))
    assert message.startswith(f"policy check 'fragile': {reason}")
    [event] = log.events()
    assert isinstance(event, PolicyDenied)
    assert event.check == "fragile"
    assert event.reason.startswith(reason)


def test_a_check_raising_tool_denied_gives_its_reason() -> None:
    def check(c: ToolCallBlock, x: ToolContext) -> None:
        raise ToolDenied("not on Sundays")

    engine = PolicyEngine()
    engine.add_check("calendar", check)
    assert denial(engine, call("t")) == "policy check 'calendar': not on Sundays"


def test_a_check_returning_a_coroutine_is_denied_and_closed() -> None:
    async def sneaky() -> None:
        pass

    made: list[Any] = []

    def check(c: ToolCallBlock, x: ToolContext) -> Any:
        coroutine = sneaky()
        made.append(coroutine)
        return coroutine

    engine = PolicyEngine()
    engine.add_check("sneaky", check)
    assert "the check returned coroutine" in denial(engine, call("t"))
    assert made[0].cr_frame is None  # closed: no "never awaited" warning


def test_cancellation_and_base_exceptions_propagate() -> None:
    def interrupt(c: ToolCallBlock, x: ToolContext) -> None:
        raise KeyboardInterrupt

    engine = PolicyEngine()
    engine.add_check("interrupt", interrupt)
    with pytest.raises(KeyboardInterrupt):
        engine.check(call("t"), ctx(call("t")))


def test_deny_parameter() -> None:
    engine = PolicyEngine()
    engine.deny_parameter("no-parent-dirs", "read_file", "path", r"\.\.")
    engine.deny_parameter("no-secrets", "*", "query", re.compile("password", re.IGNORECASE))
    assert allowed(engine, call("read_file", path="docs/a.md"))
    assert denial(engine, call("read_file", path="../etc/passwd")) == (
        "policy check 'no-parent-dirs': argument 'path' of tool 'read_file' matches the "
        "forbidden pattern '\\\\.\\\\.'"
    )
    assert allowed(engine, call("write_file", path="../x"))  # another tool
    assert allowed(engine, call("read_file"))  # no such argument
    assert not allowed(engine, call("search", query="my PASSWORD"))  # "*": any tool
    assert not allowed(engine, call("lookup", query=["a", "password"]))  # JSON text of a list
    assert allowed(engine, call("lookup", query=42))


def test_deny_parameter_checks_its_arguments() -> None:
    engine = PolicyEngine()
    with pytest.raises(InvalidArgumentError, match="not a valid regular expression"):
        engine.deny_parameter("bad", "t", "p", "(unclosed")
    with pytest.raises(InvalidArgumentError, match="parameter must be a non-empty str"):
        engine.deny_parameter("bad", "t", "", "x")
    with pytest.raises(InvalidArgumentError, match="tool must be a tool name or '\\*'"):
        engine.deny_parameter("bad", "", "p", "x")
    with pytest.raises(InvalidArgumentError, match="pattern must be a str"):
        engine.deny_parameter("bad", "t", "p", re.compile(b"x"))  # type: ignore[arg-type]
    assert engine.checks == []


def test_require_state() -> None:
    infra = SharedInfra()
    engine = PolicyEngine()
    engine.require_state("approved-first", "approved", tool="deploy")
    assert denial(engine, call("deploy"), infra) == (
        "policy check 'approved-first': tool 'deploy' needs state key 'approved', which is not set"
    )
    assert allowed(engine, call("status"), infra)  # another tool
    infra.state.set("approved", False)  # present (whatever its value) is enough
    assert allowed(engine, call("deploy"), infra)
    # No shared state at all: fail closed.
    assert "has no shared state" in denial(engine, call("deploy"), None)
    # Any object with a StateStore as .state works as infra.
    holder = type("Holder", (), {"state": StateStore()})()
    assert not allowed(engine, call("deploy"), holder)


def test_limit_calls_counts_allowed_calls() -> None:
    engine = PolicyEngine()
    engine.limit_calls("two-searches", "search", 2)
    engine.deny_parameter("no-x", "*", "q", "x")  # runs after the limit
    assert allowed(engine, call("search", q="a"))
    assert not allowed(engine, call("search", q="x"))  # denied later: not counted
    assert engine.calls_allowed("two-searches") == 1
    assert allowed(engine, call("search", q="b"))
    assert allowed(engine, call("other"))  # another tool is not limited
    assert denial(engine, call("search", q="c")) == (
        "policy check 'two-searches': the limit of 2 calls of tool 'search' is reached"
    )
    assert engine.calls_allowed("two-searches") == 2


def test_limit_calls_on_every_tool_and_zero() -> None:
    engine = PolicyEngine()
    engine.limit_calls("three-calls", "*", 3)
    assert [allowed(engine, call(name)) for name in "abcd"] == [True, True, True, False]
    engine.limit_calls("none", "forbidden", 0)
    assert not allowed(engine, call("forbidden"))
    with pytest.raises(InvalidArgumentError, match="max_calls must be an int >= 0"):
        engine.limit_calls("bad", "t", -1)
    with pytest.raises(InvalidArgumentError, match="no limit_calls check named 'nope'"):
        engine.calls_allowed("nope")


def test_limit_calls_is_shared_by_every_agent_of_the_engine() -> None:
    engine = PolicyEngine()
    engine.limit_calls("one", "t", 1)
    engine.check(call("t"), ctx(call("t"), agent="a"))
    with pytest.raises(ToolDenied):
        engine.check(call("t"), ctx(call("t"), agent="b"))


def test_check_names_are_unique_and_checked() -> None:
    engine = PolicyEngine()
    engine.deny_tool("rule", "a")
    with pytest.raises(InvalidArgumentError, match="a check named 'rule' already exists"):
        engine.limit_calls("rule", "a", 1)
    with pytest.raises(InvalidArgumentError, match="a check named 'rule' already exists"):
        engine.add_check("rule", lambda c, x: None)
    with pytest.raises(InvalidArgumentError, match="name must be a non-empty str"):
        engine.add_check("", lambda c, x: None)
    with pytest.raises(InvalidArgumentError, match="fn must be a callable"):
        engine.add_check("x", "not callable")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="needs at least one tool name"):
        engine.deny_tool("x")

    async def async_check(c: ToolCallBlock, x: ToolContext) -> None:
        pass

    with pytest.raises(InvalidArgumentError, match="fn must be synchronous"):
        engine.add_check("x", async_check)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="event_sink must be a callable"):
        PolicyEngine(event_sink="log")  # type: ignore[arg-type]
    assert engine.checks == ["rule"]
    assert repr(engine) == "<PolicyEngine checks=['rule']>"


ran_tools: list[str] = []


@tool
async def shell(cmd: str) -> str:
    """Run a shell command."""
    ran_tools.append(cmd)
    return "ran"


async def test_agent_reads_the_denial_and_the_log_has_it() -> None:
    infra = SharedInfra()
    infra.policies.deny_parameter("no-rm", "shell", "cmd", r"\brm\b")
    model = ScriptedModel([tool_call("shell", {"cmd": "rm -rf /"}), "I will not do that."])
    agent = Agent(
        model,
        name="ops",
        tools=[shell],
        infra=infra,
        policy=infra.policies,
        event_sink=infra.log,
    )
    result = await agent.run("clean up")
    assert result.final_text == "I will not do that."
    assert ran_tools == []
    [results] = [m for m in result.messages if isinstance(m, ToolResultMessage)]
    assert results.results[0].is_error
    assert results.results[0].content == (
        "tool call denied: policy check 'no-rm': argument 'cmd' of tool 'shell' matches the "
        "forbidden pattern '\\\\brm\\\\b'"
    )
    kinds = [e.kind for e in infra.log.events(("tool_started", "policy_denied", "tool_finished"))]
    assert kinds == ["tool_started", "policy_denied", "tool_finished"]
    denied: Event = infra.log.events(PolicyDenied)[0]
    assert isinstance(denied, PolicyDenied)
    assert (denied.agent, denied.tool, denied.check) == ("ops", "shell", "no-rm")
