"""The demo's pattern scenario: a handoff and a race, offline and deterministic."""

from __future__ import annotations

import io

import trio
import trio.testing

from trio_agents._demo import SCENARIOS, run_demo


async def test_patterns_scenario_shows_handoff_and_race(
    autojump_clock: trio.testing.MockClock,
) -> None:
    [patterns] = [entry for entry in SCENARIOS if entry[0] == "patterns"]
    outputs = set()
    for _ in range(5):  # the race's losers are cancelled whatever the scheduling order
        out = io.StringIO()
        await run_demo(None, out, seed=1, scenarios=[patterns])
        outputs.add(out.getvalue())
    [text] = outputs
    assert text.splitlines() == [
        "== 4. Coordination patterns: a handoff and a race ==",
        "user: I was charged twice for order 7.",
        "  triage -> billing (a payment question: charged twice for order 7)",
        "handoff: triage -> billing; answer: The duplicate charge for order 7 is refunded.",
        "race: quick answered first at t=0.05 s: Refunds arrive within a week.",
        "cancelled: careful",
    ]
