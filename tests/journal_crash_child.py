"""A process that runs a three-level delegation on an SQLite journal and can die by SIGKILL.

    python journal_crash_child.py DIR run KILL_AT    # SIGKILL itself at its KILL_AT-th append
    python journal_crash_child.py DIR resume

Everything that must survive the process lives in DIR: ``journal.db``; ``effects``, one line
per execution of the side-effecting tool; ``model``, one line per model call. The final
answer is printed as the last line; a resume that finds calls in doubt prints them as JSON
and exits with status 3.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import trio

from trio_agents import (
    AgentSpec,
    AssistantMessage,
    Delegator,
    ModelRequest,
    ModelRunner,
    RetryPolicy,
    RunJournal,
    SQLiteJournal,
    ToolCallInDoubt,
    ToolResultMessage,
    tool,
)
from trio_agents.testing import FunctionModel, ScriptStep, text, tool_call


def _log(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _turn(request: ModelRequest) -> int:
    return sum(isinstance(m, AssistantMessage) for m in request.messages)


def _results(request: ModelRequest) -> str:
    last = request.messages[-1]
    assert isinstance(last, ToolResultMessage)
    return " | ".join(r.content for r in last.results)


def runner(where: Path) -> ModelRunner:
    def respond(request: ModelRequest) -> ScriptStep | str:
        who, turn = request.system or "", _turn(request)
        _log(where / "model", f"{who} {turn}")
        if who == "lead":
            if turn == 0:
                return tool_call(
                    "delegate", {"specialist": "researcher", "subtask": "dig"}, id="lead-1"
                )
            return f"lead: {_results(request)}"
        if turn == 0:
            return tool_call("record", {"note": who}, id=f"{who}-1")
        if who == "researcher" and turn == 1:
            return tool_call(
                "delegate", {"specialist": "analyst", "subtask": "measure"}, id="researcher-2"
            )
        return text(f"{who}: {_results(request)}")

    async def record(note: str) -> str:
        """Record ``note`` outside the process."""
        _log(where / "effects", note)
        return f"recorded {note}"

    return ModelRunner(
        FunctionModel(respond), tools=[tool(record)], retry=RetryPolicy(max_attempts=1)
    )


def delegator() -> Delegator:
    return Delegator(
        AgentSpec(name="lead", instructions="lead", tools=("delegate",)),
        [
            AgentSpec(name="researcher", instructions="researcher", tools=("record", "delegate")),
            AgentSpec(name="analyst", instructions="analyst", tools=("record",)),
        ],
    )


class KillingJournal(SQLiteJournal):
    """Dies by SIGKILL at its ``kill_at``-th append, before storing it."""

    def __init__(self, path: Path, kill_at: int) -> None:
        super().__init__(path, synchronous=SYNCHRONOUS)
        self.kill_at = kill_at
        self.appends = 0

    def append(self, run_id: str, index: int, line: str) -> None:
        self.appends += 1
        if self.appends == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        super().append(run_id, index, line)


# The SQLite setting under test: both must survive the process being killed.
SYNCHRONOUS = os.environ.get("JOURNAL_SYNCHRONOUS", "FULL")


async def main(where: Path, mode: str, kill_at: int) -> int:
    if mode == "run":
        journal = RunJournal(KillingJournal(where / "journal.db", kill_at))
        result = await journal.run_delegator(delegator(), "go", runner=runner(where), run_id="t")
    else:
        journal = RunJournal(SQLiteJournal(where / "journal.db", synchronous=SYNCHRONOUS))
        try:
            result = await journal.resume_delegator(delegator(), "t", runner=runner(where))
        except ToolCallInDoubt as exc:
            doubts = [
                {"run": c.run_id, "call": c.call.id, "arguments": dict(c.call.arguments)}
                for c in exc.calls
            ]
            print(json.dumps(doubts))
            return 3
    print(result.final_answer)
    return 0


if __name__ == "__main__":
    kill = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    sys.exit(trio.run(main, Path(sys.argv[1]), sys.argv[2], kill))
