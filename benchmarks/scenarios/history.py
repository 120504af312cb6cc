"""11. Per-request cost against history length: one ``agent.run`` on a long conversation.

The agent's history is filled with ``size`` messages before the clock starts; each measured
run then adds its message and the model's answer and makes one request. A request shares
the history instead of copying it, so the cost per run should be flat in ``size`` (it was
linear: the request copied the whole conversation).

raw: one raw-trio memory-channel round trip, as in scenario 8.
"""

from __future__ import annotations

from trio_agents import Agent, UserMessage
from trio_agents.testing import ScriptedModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Variant
from ._common import ANSWER, raw_round_trips

RUNS = 200
"""Measured runs per sample (each adds 2 messages to the history)."""


async def framework(meter: Meter, case: Case) -> None:
    agent = Agent(ScriptedModel([ANSWER] * (RUNS + 1)), name="agent")
    await agent.run([UserMessage.text(f"m{i}") for i in range(case.size)] or "start")
    meter.begin()
    for _ in range(RUNS):
        await agent.run("ping")
    meter.end(RUNS)


async def raw_round_trip(meter: Meter, case: Case) -> None:
    await raw_round_trips(meter, RUNS)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="history",
            number="11",
            name=f"history of {size} messages",
            size=size,
            per="run",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw channel round trip", raw_round_trip),
            ),
            note="history: the x raw column should not grow with the history length",
        )
    ]


SCENARIO = Scenario(
    key="history",
    number="11",
    title="one agent.run on a conversation of n messages (flat in n) vs a channel round trip",
    sizes={"default": (10, 1_000, 10_000), "quick": (10, 10_000), "smoke": (10,)},
    size_meaning="messages already in the history",
    build=build,
)
