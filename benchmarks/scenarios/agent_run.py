"""8. The agent loop itself: one ``agent.run`` on a scripted model answering at once.

Two cases: no tools (one model call), and one tool call (two model calls and one tool call).
The history is cleared after each run, so every run is the first of a conversation.

raw: one raw-trio memory-channel round trip (the request/reply idiom of scenario 1 with one
client). The ratio reads as "an agent run costs this many channel round trips".
"""

from __future__ import annotations

from trio_agents import Agent, tool
from trio_agents.testing import ScriptedModel, ScriptStep, tool_call

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import ANSWER, raw_round_trips

RUNS: dict[Profile, int] = {"default": 2000, "quick": 500, "smoke": 5}


@tool
async def lookup() -> str:
    """Look something up (answers at once)."""
    return "found"


async def _runs(meter: Meter, case: Case, script: list[ScriptStep], with_tool: bool) -> None:
    n = case.size
    agent = Agent(ScriptedModel(script * n), name="agent", tools=[lookup] if with_tool else ())
    meter.begin()
    for _ in range(n):
        await agent.run("ping")
        agent.clear_history()
    meter.end(n)


async def framework_plain(meter: Meter, case: Case) -> None:
    await _runs(meter, case, [ANSWER], with_tool=False)


async def framework_tool(meter: Meter, case: Case) -> None:
    await _runs(meter, case, [tool_call("lookup"), ANSWER], with_tool=True)


async def raw_round_trip(meter: Meter, case: Case) -> None:
    await raw_round_trips(meter, case.size)


def build(size: int, profile: Profile) -> list[Case]:
    cases = []
    for name, fn, limit in (
        ("no tools", framework_plain, 3.0),
        ("one tool call", framework_tool, 5.0),
    ):
        cases.append(
            Case(
                scenario="agent-run",
                number="8",
                name=f"{name} ({size} runs)",
                size=size,
                per="run",
                variants=(
                    Variant(FRAMEWORK, "trio_agents", fn),
                    Variant(BASELINE, "raw channel round trip", raw_round_trip),
                ),
                targets=(
                    Target(
                        metric="time",
                        limit=limit,
                        against=BASELINE,
                        text=f"<= {limit:.0f} round trips",
                    ),
                ),
                note="agent-run: the x raw column counts raw channel round trips per run",
            )
        )
    return cases


SCENARIO = Scenario(
    key="agent-run",
    number="8",
    title="one agent.run (scripted, instant; no tools / one tool call) vs a channel round trip",
    sizes={"default": (RUNS["default"],), "quick": (RUNS["quick"],), "smoke": (RUNS["smoke"],)},
    size_meaning="runs per sample",
    build=build,
)
