"""The demo (``python -m trio_agents demo``) runs offline, shows what it promises, and is
deterministic for a given seed."""

from __future__ import annotations

import io
import re

import pytest
import trio

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
    assert sorted(set(built)) == sorted(["assistant", *(p.split("/")[-1] for p in AGENTS)])


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
