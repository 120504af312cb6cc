"""The live view: the fold of events into rows, following a log, and the terminal program."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing
from rich.console import Console

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AgentStatus,
    Backoff,
    DefaultSupervisor,
    Event,
    EventLog,
    InvalidArgumentError,
    ModelOverloaded,
    ModelRequest,
    RetryPolicy,
    TextBlock,
    UserMessage,
)
from trio_agents.live import AgentRow, TreeView, follow, replay
from trio_agents.testing import FunctionModel, hang
from trio_agents.testing._models import FunctionResult

ROOT = Path(__file__).resolve().parent.parent
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def _echo(name: str) -> Callable[[], Agent]:
    def respond(request: ModelRequest) -> FunctionResult:
        last = request.messages[-1]
        assert isinstance(last, UserMessage) and isinstance(last.content[0], TextBlock)
        word = last.content[0].text
        if word == "fail":
            raise ModelOverloaded(f"{name} overloaded")
        if word == "hang":
            return hang()
        return f"{name}:{word}"

    return lambda: Agent(FunctionModel(respond), name=name, retry=RetryPolicy(max_attempts=1))


async def _scenario(log: EventLog) -> None:
    """lead > worker: two answers, a failure and restart, then the lead is cancelled."""
    orch = AgentOrchestrator(supervisor=DefaultSupervisor(), backoff=Backoff.none(), event_sink=log)
    orch.add_agent("lead", _echo("lead"))
    orch.add_child("worker", "lead", _echo("worker"))
    async with orch.open() as system:
        lead = await system.spawn("lead")
        worker = await system.spawn("worker")
        await lead.send_message("hi")
        await worker.send_message("one")
        with pytest.raises(ModelOverloaded):
            await worker.send_message("fail")
        await worker.send_message("two")
        worker.send_message_nowait("hang")
        await trio.testing.wait_all_tasks_blocked()
        lead.cancel("user abort")
        assert await lead.wait_done() is AgentStatus.CANCELLED


async def test_rows_fold_status_requests_restarts_and_tokens() -> None:
    log = EventLog()
    await _scenario(log)
    view = TreeView(log)
    lead, worker = view.rows
    assert (lead.path, lead.status, lead.requests, lead.errors, lead.restarts) == (
        "lead",
        "cancelled",
        1,
        0,
        0,
    )
    assert (worker.path, worker.status, worker.requests, worker.errors, worker.restarts) == (
        "lead/worker",
        "cancelled",
        4,
        2,  # the failure and the request cut off by the cancellation
        1,
    )
    assert worker.tokens > 0 and lead.tokens > 0
    text = view.text()
    assert text.index("lead [cancelled]") < text.index("worker [cancelled]")
    assert f"({len(log)} events)" in text


def test_rows_of_a_partial_log_and_bad_input() -> None:
    view = TreeView([Event(time=0.0, agent="a/b/c")])
    assert [row.path for row in view.rows] == ["a/b", "a/b/c"]
    assert view.rows[1] == AgentRow(path="a/b/c")
    with pytest.raises(InvalidArgumentError, match=r"event must be a trio_agents\.Event"):
        view("not an event")  # type: ignore[arg-type]
    assert view.events == 1  # nothing folded from the bad input


async def test_follow_shows_the_same_final_tree_as_a_replay_and_cancels_bare(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = EventLog()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    followed = TreeView()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: follow(log, console=console, view=followed))
            await _scenario(log)
            await trio.sleep(1)  # a redraw after the last event
            scope.cancel()
    assert scope.cancelled_caught  # a bare trio.Cancelled
    assert followed.text() == replay(log).text()
    screen = _ANSI.sub("", out.getvalue())
    assert "lead [serving] requests=0" in screen  # an intermediate state was drawn
    assert "worker [cancelled]" in screen  # and the final one


async def test_follow_rejects_a_bad_refresh_rate() -> None:
    with pytest.raises(InvalidArgumentError, match="refresh_per_second must be a number > 0"):
        await follow(EventLog(), refresh_per_second=0)


def _run_in_pty(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin/stdout/stderr; its screen output."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=ROOT
    )
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the program exited and closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    code = process.wait(timeout=60)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_view_command_in_a_terminal_renders_the_replayed_tree(tmp_path: Path) -> None:
    log = EventLog()
    trio.run(_scenario, log)
    path = tmp_path / "run.jsonl"
    log.export_jsonl(path)
    code, screen = _run_in_pty([sys.executable, "-m", "trio_agents", "view", str(path)])
    assert code == 0, screen
    assert "\x1b[" in screen  # it drew in colour: rich saw a terminal
    lines = [line.rstrip() for line in _ANSI.sub("", screen).splitlines() if line.strip()]
    expected = [line.rstrip() for line in replay(log).text().splitlines() if line.strip()]
    expected[0] = expected[0].replace("agents", str(path))
    assert lines == expected


def test_view_command_names_a_bad_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "nope"}\n', encoding="utf-8")
    for target in (bad, tmp_path / "missing.jsonl"):
        out = subprocess.run(
            [sys.executable, "-m", "trio_agents", "view", str(target)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert out.returncode == 2
        assert f"view: error: cannot read {target}" in out.stderr


def test_the_core_never_imports_rich_and_a_missing_extra_is_named(tmp_path: Path) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_text("", encoding="utf-8")
    code = (
        "import sys, trio_agents, trio_agents.testing, trio_agents.__main__ as cli\n"
        "assert not [m for m in sys.modules if m.startswith('rich')], 'imported'\n"
        "sys.modules['rich'] = None\n"
        f"cli.main(['view', {str(log)!r}])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 2, out.stderr
    assert "pip install 'trio-agents[live]'" in out.stderr


def test_demo_live_in_a_terminal_ends_on_the_tree_of_its_events() -> None:
    from trio_agents._demo import run_demo

    log = EventLog()

    async def record() -> None:
        await run_demo(None, io.StringIO(), verbose=False, events=log)

    trio.run(record, clock=trio.testing.MockClock(autojump_threshold=0))
    expected = [line.rstrip() for line in replay(log).text().splitlines() if line.strip()]
    code, screen = _run_in_pty([sys.executable, "-m", "trio_agents", "demo", "--live"])
    assert code == 0, screen
    assert "\x1b[" in screen
    plain = _ANSI.sub("", screen)
    frames = plain.split("agents (")
    assert len(frames) > 3  # it redrew as the demo went
    last = [line.rstrip() for line in ("agents (" + frames[-1]).splitlines() if line.strip()]
    assert last == expected
    assert any("worker-b1 [completed]" in line and "restarts=1" in line for line in last)
