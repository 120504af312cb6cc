"""The demo (``python -m trio_agents demo``) runs offline, shows what it promises, and is
deterministic for a given seed."""

from __future__ import annotations

import io
import re

import pytest
import trio
import trio.testing

from trio_agents import InvalidArgumentError, Model, ModelRequest
from trio_agents.__main__ import main
from trio_agents._demo import SCENARIOS, DemoContext, run_demo, scripted_models
from trio_agents.testing import FunctionModel

AGENTS = [
    "lead",
    "lead/research-a",
    "lead/research-a/worker-a1",
    "lead/research-a/worker-a2",
    "lead/research-b",
    "lead/research-b/worker-b1",
    "lead/research-b/worker-b2",
]
FLAKY = "lead/research-b/worker-b1"


TEAM = ["editor", "researcher", "analyst", "writer"]
# Scenario 4's agents but billing, which only a triage that transfers reaches.
PATTERN_AGENTS = ["triage", "careful", "quick"]


def section(out: str, number: int) -> str:
    """The output of scenario ``number``."""
    parts = re.split(r"^(?=== \d+\. )", out, flags=re.MULTILINE)
    [found] = [part for part in parts if part.startswith(f"== {number}. ")]
    return found


def record_rows(out: str) -> list[list[str]]:
    """The rows of the delegation records table: depth, specialist, ok, duration, requests,
    tokens (the subtask is left out)."""
    lines = out.splitlines()
    start = lines.index("delegations (depth-first, in call order):") + 2
    rows = []
    for line in lines[start:]:
        match = re.match(r"^  (\d+)\s+(\S+)\s+(yes|no)\s+(\d\.\d{3}) s\s+(\d+)\s+(\d+)  ", line)
        if match is None:
            break
        rows.append(list(match.groups()))
    return rows


def tree_rows(out: str) -> list[tuple[str, int, str, int, str]]:
    """The event tree: (name, depth, time window, number of events, kinds and counts)."""
    lines = out.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("event tree ")) + 1
    rows: list[tuple[str, int, str, int, str]] = []
    for line in lines[start:]:
        node = re.match(r"^  ( *)(\S+)\s+(t=\S+)?\s+(\d+) events$", line)
        if node is not None:
            indent, name, window, count = node.groups()
            rows.append((name, len(indent) // 2, window or "", int(count), ""))
        elif line.startswith("    ") and rows:
            name, depth, window, count, kinds = rows[-1]
            rows[-1] = (name, depth, window, count, f"{kinds} {line.strip()}".strip())
        else:
            break
    return rows


def kind_counts(kinds: str) -> dict[str, int]:
    return {kind: int(n) for kind, n in re.findall(r"(\w+) (\d+)", kinds)}


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def status_rows(out: str) -> dict[str, list[str]]:
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in AGENTS:
            rows[fields[0]] = fields[1:]
    return rows


def test_demo_shows_the_tool_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_main(capsys, "demo", "--seed", "1")
    lines = out.splitlines()
    assert "user: How many wheels do 12 bicycles and 3 tricycles have together?" in lines
    # the throttled first call is retried after a jittered delay
    assert re.search(r"model call failed \(ModelThrottled: .*\); retry 1 in 0\.0\d\d s", out)
    # tool calls with their arguments, and their results (an error result included)
    assert 'assistant -> lookup(key="tricycles")  [call_1]' in lines
    assert (
        "tool lookup [call_1] -> error: no entry 'tricycles'; known keys: bicycle, car, tricycle"
        in lines
    )
    assert 'assistant -> calculate(operation="add", a=24, b=9)  [call_6]' in lines
    assert "tool calculate [call_6] -> 33" in lines
    assert any(line.startswith("answer: ") and "33 wheels" in line for line in lines)
    assert re.search(
        r"^usage: 5 model requests, \d+ input \+ \d+ output = \d+ tokens "
        r"\(5 turns, 6 tool calls\)$",
        out,
        re.MULTILINE,
    )


def test_demo_shows_the_restart_and_every_final_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_main(capsys, "demo", "--seed", "1")
    for path in AGENTS:
        assert f"event: spawned    {path} (incarnation 1)" in out
    order = [
        f"event: replied    {FLAKY} request #1 with ModelOverloaded",
        f"event: failed     {FLAKY}: ModelOverloaded",
        f"event: decided    {FLAKY}: restart; restart 1 of 3 (consecutive failures); backoff ",
        f"event: restarted  {FLAKY} (incarnation 2, restarts so far: 1)",
        f"event: spawned    {FLAKY} (incarnation 2)",
        f"{FLAKY} answered after a restart",
        f"{FLAKY} -> ",
    ]
    positions = [out.index(piece) for piece in order]
    assert positions == sorted(positions)
    delay = re.search(rf"decided    {FLAKY}: .* backoff (\d\.\d+) s", out)
    assert delay is not None and 0 <= float(delay[1]) <= 0.05
    # closed gracefully: children end before their parents, youngest first
    ended = re.findall(r"event: ended      (\S+): completed", out)
    assert ended == [
        "lead/research-b/worker-b2",
        "lead/research-b/worker-b1",
        "lead/research-b",
        "lead/research-a/worker-a2",
        "lead/research-a/worker-a1",
        "lead/research-a",
        "lead",
    ]
    rows = status_rows(out)
    assert set(rows) == set(AGENTS)
    for path, (status, received, served, restarts, incarnation, tokens) in rows.items():
        assert status == "completed"
        assert int(tokens) > 0
        if path == FLAKY:
            assert (received, served, restarts, incarnation) == ("2", "1", "1", "2")
        else:
            assert (received, served, restarts, incarnation) == ("1", "1", "0", "1")
    assert re.search(r"^usage of the tree: 7 model requests, .* tokens$", out, re.MULTILINE)
    # The columns say what they count.
    assert (
        "(requests: the requests the agent took from its queue, over all its incarnations; "
        "served: those it answered with a result, not with its error)" in out
    )


def test_same_seed_same_output_and_the_seed_matters(capsys: pytest.CaptureFixture[str]) -> None:
    first = run_main(capsys, "demo", "--seed", "1")
    second = run_main(capsys, "demo", "--seed", "1")
    assert first == second
    other = run_main(capsys, "demo", "--seed", "2")
    assert other != first  # the jittered retry and backoff delays differ
    assert status_rows(other) == status_rows(first)


def test_quiet_prints_only_the_results(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_main(capsys, "demo", "--quiet")
    assert "event:" not in out
    assert "assistant ->" not in out
    assert any(line.startswith("answer: ") for line in out.splitlines())
    assert f"{FLAKY} answered after a restart" in out
    assert set(status_rows(out)) == set(AGENTS)
    delegation = section(out, 3)
    assert "editor ->" not in delegation  # the lead's transcript
    assert "delegation timeline" not in delegation
    for start in ("answer: ", "parallel: ", "denied: ", "recovered: ", "total usage: "):
        assert any(line.startswith(start) for line in delegation.splitlines()), start
    assert record_rows(delegation)
    assert tree_rows(delegation)


def test_help_and_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err


async def test_models_are_injectable() -> None:
    # Any model factory can replace the scripted models; the faults the scenarios inject
    # wrap whatever model it returns, so the restart still happens.
    built: list[str] = []

    def factory(name: str) -> Model:
        built.append(name)

        def answer(request: ModelRequest) -> str:
            return f"{name} says hi"

        return FunctionModel(answer, model_id=f"custom:{name}")

    out = io.StringIO()
    await run_demo(factory, out, seed=7)
    text = out.getvalue()
    assert "answer: assistant says hi" in text
    assert "lead -> lead says hi" in text
    assert f"{FLAKY} answered after a restart" in text
    # one model per incarnation: the flaky worker's model was built twice
    assert built.count("worker-b1") == 2
    assert sorted(set(built)) == sorted(
        ["assistant", *(p.split("/")[-1] for p in AGENTS), *TEAM, *PATTERN_AGENTS]
    )
    # Scenario 3 runs on any models: this lead answers at once, so nothing is delegated,
    # and the scenario says so instead of failing.
    delegation = section(text, 3)
    assert "answer: editor says hi" in delegation
    assert "parallel: no two delegations of one caller overlapped" in delegation
    assert record_rows(delegation) == []
    assert [row[0] for row in tree_rows(delegation)] == ["editor"]
    assert built.count("editor") == 1  # one model per team member, shared by its runs


async def test_scenarios_can_be_chosen_and_appended() -> None:
    seen: list[float] = []

    async def extra(ctx: DemoContext) -> None:
        seen.append(ctx.rng.random())
        ctx.say("extra scenario ran")
        await trio.lowlevel.checkpoint()

    out = io.StringIO()
    await run_demo(None, out, seed=3, scenarios=[("extra", extra)])
    await run_demo(None, out, seed=3, scenarios=[*SCENARIOS, ("extra", extra)])
    assert out.getvalue().count("extra scenario ran") == 2
    assert seen[0] == seen[1]  # a scenario's randomness does not depend on the others


def test_scripted_models_name_the_missing_script() -> None:
    with pytest.raises(InvalidArgumentError, match="no script for agent name='nobody'"):
        scripted_models()("nobody")


def test_demo_shows_parallel_delegation(capsys: pytest.CaptureFixture[str]) -> None:
    out = section(run_main(capsys, "demo", "--seed", "1"), 3)
    lines = out.splitlines()
    assert lines[0] == "== 3. A lead delegating to specialists in parallel =="
    # The lead's first turn asks for two specialists at once ...
    assert any(
        line.startswith('editor -> delegate(specialist="researcher"') and line.endswith("[call_1]")
        for line in lines
    )
    assert any(
        line.startswith('editor -> delegate(specialist="analyst"') and line.endswith("[call_2]")
        for line in lines
    )
    # ... and the event log shows them running at the same time. On the demo's virtual clock
    # the times are exact: the scripted researcher takes 3 x 0.02 s, the analyst 2 x 0.02 s,
    # after the lead's first call of 0.01 s; one after the other they would end at 0.110.
    assert (
        "parallel: editor/researcher and editor/analyst both started (t=0.010, t=0.010) before "
        "either finished (editor/analyst at t=0.050, editor/researcher at t=0.070)" in lines
    )
    assert (
        "          from the first start to the last end: 0.060 s; one after the other they "
        "would take 0.100 s (the sum of their durations)" in lines
    )
    timeline = lines[
        lines.index("delegation timeline (events from the log; seconds on trio's clock):") + 1 :
    ]
    assert timeline[:4] == [
        "  t=0.010  started   editor/researcher",
        "  t=0.010  started   editor/analyst",
        "  t=0.050  finished  editor/analyst",
        "  t=0.070  finished  editor/researcher",
    ]


def test_demo_shows_the_denial_and_the_recovery(capsys: pytest.CaptureFixture[str]) -> None:
    out = section(run_main(capsys, "demo", "--seed", "1"), 3)
    lines = out.splitlines()
    assert (
        'denied: editor/researcher search(query="internal fleet dashboard bicycles") by '
        "policy check 'no-internal-data'" in lines
    )
    # The writer fails once; the lead reads the error result and asks again.
    assert (
        "tool delegate [call_3] -> error: specialist 'writer' failed: ModelOverloaded: "
        "the provider is overloaded (injected fault)" in lines
    )
    assert "editor: The writer could not answer; asking again." in lines
    assert (
        "recovered: editor/writer failed (ModelOverloaded: the provider is overloaded "
        "(injected fault)); its caller read the error result and delegated again, which "
        "succeeded" in lines
    )
    assert any(line.startswith("answer: Brief for the council: ") for line in lines)


def test_demo_prints_the_records_the_tree_and_the_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = section(run_main(capsys, "demo", "--seed", "1"), 3)
    rows = record_rows(out)
    # depth, specialist, ok, duration, requests, tokens: depth-first, in call order
    assert [row[:5] for row in rows] == [
        ["1", "researcher", "yes", "0.060", "3"],
        ["1", "analyst", "yes", "0.040", "2"],
        ["1", "writer", "no", "0.000", "0"],
        ["1", "writer", "yes", "0.080", "4"],  # its own 2 calls and the nested researcher's 2
        ["2", "researcher", "yes", "0.040", "2"],
    ]
    tree = tree_rows(out)
    assert [(name, depth, window) for name, depth, window, _, _ in tree] == [
        ("editor", 0, "t=0.000-0.180"),
        ("researcher", 1, "t=0.010-0.070"),
        ("analyst", 1, "t=0.010-0.050"),
        ("writer", 1, "t=0.080-0.170"),
        ("researcher", 2, "t=0.110-0.150"),
    ]
    for _, _, _, count, kinds in tree:
        assert sum(kind_counts(kinds).values()) == count
    editor, researcher, _, writer, nested = (kind_counts(row[4]) for row in tree)
    assert editor["model_requested"] == 4 and editor["tool_started"] == 4
    assert researcher["policy_denied"] == 1
    assert writer["delegation_started"] == writer["delegation_finished"] == 2
    assert writer["run_started"] == 2 and writer["model_requested"] == 3  # one failed
    assert nested["delegation_started"] == 1
    # The total is the lead's requests plus the depth-1 records' (which include depth 2).
    requests = 4 + sum(int(row[4]) for row in rows if row[0] == "1")
    total = re.search(r"^total usage: (\d+) model requests, .* = (\d+) tokens$", out, re.M)
    assert total is not None and int(total[1]) == requests == 13
    budget = re.search(
        r"^budget: (\d+) of 40 requests, (\d+) of 20000 tokens, 5 of 8 agents", out, re.M
    )
    assert budget is not None and (budget[1], budget[2]) == (total[1], total[2])
    assert (
        "rate limit: 14 model calls (1 failed) went through RateLimiter(max_concurrent=2), "
        "at most 2 at once" in out.splitlines()
    )
    # The call count and the usage's request count differ by the failed call, and it says so.
    assert (
        "  (a failed call reports no usage: the usage below counts the 13 that answered)"
        in out.splitlines()
    )


async def test_delegation_scenario_is_deterministic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Trio shuffles the order of runnable tasks, so the two parallel specialists log their
    # events in either order; what the scenario prints must not depend on it.
    [delegation] = [entry for entry in SCENARIOS if entry[0] == "delegation"]
    outputs = set()
    for _ in range(10):
        out = io.StringIO()
        await run_demo(None, out, seed=4, scenarios=[delegation])
        outputs.add(out.getvalue())
    assert len(outputs) == 1
    assert "parallel: editor/researcher and editor/analyst" in outputs.pop()


def test_model_options_are_checked_before_anything_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--base-url", "http://127.0.0.1:1/v1"])
    assert info.value.code == 2
    assert "--base-url needs --model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["demo", "--model", "openia:gpt-4o-mini"])
    assert info.value.code == 2
    assert "unknown provider 'openia'" in capsys.readouterr().err


def test_a_real_model_that_cannot_be_reached_fails_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quiet", "--model", "openai:any", "--base-url", "http://127.0.0.1:1/v1"])
    assert info.value.code == 1
    assert "the model failed: NetworkError" in capsys.readouterr().err
