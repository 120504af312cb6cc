"""12. Durable runs: the cost of journaling every step of an agent run.

One ``agent.run`` with one tool call (two model calls, one tool call: five journal records)
on a scripted model answering at once, four ways: without a journal, journaled in memory
(:class:`~trio_agents.MemoryJournal`), journaled in SQLite (:class:`~trio_agents.SQLiteJournal`:
WAL, ``synchronous=FULL``, one transaction per record, no batching: each append waits for
``fsync``; and with ``synchronous=NORMAL``, which survives a killed process but not power
loss), and the raw baseline, one memory-channel round trip.

The targets compare the journaled runs with the unjournaled one (the overhead per run; divide
by five for the overhead per step).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from trio_agents import Agent, MemoryJournal, RunJournal, SQLiteJournal, tool
from trio_agents.testing import ScriptedModel, tool_call

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import ANSWER, raw_round_trips

RUNS: dict[Profile, int] = {"default": 500, "quick": 100, "smoke": 3}


@tool
async def lookup() -> str:
    """Look something up (answers at once)."""
    return "found"


def _agent(n: int) -> Agent[str]:
    return Agent(ScriptedModel([tool_call("lookup", id="c1"), ANSWER] * n), tools=[lookup])


async def unjournaled(meter: Meter, case: Case) -> None:
    n = case.size
    agent = _agent(n)
    meter.begin()
    for _ in range(n):
        await agent.run("ping")
        agent.clear_history()
    meter.end(n)


async def _journaled(meter: Meter, case: Case, journal: RunJournal) -> None:
    n = case.size
    agent = _agent(n)
    meter.begin()
    for i in range(n):
        await journal.run(agent, "ping", run_id=f"r{i}")
        agent.clear_history()
    meter.end(n)


async def in_memory(meter: Meter, case: Case) -> None:
    await _journaled(meter, case, RunJournal(MemoryJournal()))


async def in_sqlite(meter: Meter, case: Case) -> None:
    with (
        tempfile.TemporaryDirectory() as where,
        SQLiteJournal(Path(where) / "journal.db") as backend,
    ):
        await _journaled(meter, case, RunJournal(backend))


async def in_sqlite_normal(meter: Meter, case: Case) -> None:
    with (
        tempfile.TemporaryDirectory() as where,
        SQLiteJournal(Path(where) / "journal.db", synchronous="NORMAL") as backend,
    ):
        await _journaled(meter, case, RunJournal(backend))


async def raw_round_trip(meter: Meter, case: Case) -> None:
    await raw_round_trips(meter, case.size)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="journal",
            number="12",
            name=f"one tool call, 5 records per run ({size} runs)",
            size=size,
            per="run",
            variants=(
                Variant(FRAMEWORK, "trio_agents, journaled in memory", in_memory),
                Variant(BASELINE, "raw channel round trip", raw_round_trip),
                Variant("unjournaled", "trio_agents, no journal", unjournaled),
                Variant("sqlite", "trio_agents, journaled in SQLite (fsync per record)", in_sqlite),
                Variant(
                    "sqlite-normal",
                    "trio_agents, journaled in SQLite (synchronous=NORMAL)",
                    in_sqlite_normal,
                ),
            ),
            targets=(
                Target(metric="time", limit=2.0, against="unjournaled", text="<= 2x unjournaled"),
                Target(
                    metric="time",
                    limit=20.0,
                    against="unjournaled",
                    text="<= 20x unjournaled (fsync per record)",
                    subject="sqlite",
                ),
            ),
            note="journal: x unjournaled is the overhead of journaling a whole run",
        )
    ]


SCENARIO = Scenario(
    key="journal",
    number="12",
    title="one journaled agent.run (memory / SQLite) vs the same run unjournaled",
    sizes={"default": (RUNS["default"],), "quick": (RUNS["quick"],), "smoke": (RUNS["smoke"],)},
    size_meaning="runs per sample",
    build=build,
)
