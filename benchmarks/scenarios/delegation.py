"""5. Delegation fan-out: a main agent delegating to N specialists in parallel.

trio_agents: a :class:`~trio_agents.Delegator` with N specialist specs run by a
:class:`~trio_agents.ModelRunner` (``max_tool_concurrency=N``, so every delegation runs at
once). One :class:`~trio_agents.testing.FunctionModel` plays every agent: the main agent's
first response calls ``delegate`` once per specialist, its second answers; each specialist
answers at once. Measured: the whole ``delegator.run``, divided by N.

raw: a nursery running N coroutines that each await once (the specialist's answer) and store
a result. For the target, "raw channel round trip" measures N sequential round trips of the
raw request/reply idiom: the target is stated in those.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_agents import AgentSpec, ModelRequest, ToolCallBlock, ToolResultMessage
from trio_agents.testing import FunctionModel, ScriptStep

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import ANSWER, raw_round_trips


def _unavailable() -> str | None:
    try:
        from trio_agents import Delegator, ModelRunner  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only before delegation landed
        return f"trio_agents has no Delegator yet ({exc})"
    return None


async def framework(meter: Meter, case: Case) -> None:
    from trio_agents import Delegator, ModelRunner

    n = case.size
    names = [f"specialist{i}" for i in range(n)]
    fan_out = ScriptStep(
        content=tuple(
            ToolCallBlock(
                id=f"call_{i}",
                name="delegate",
                arguments={"specialist": name, "subtask": "work"},
            )
            for i, name in enumerate(names)
        )
    )

    def play(request: ModelRequest) -> ScriptStep:
        if request.system == "main" and not isinstance(request.messages[-1], ToolResultMessage):
            return fan_out
        return ANSWER

    delegator = Delegator(
        AgentSpec(name="main", instructions="main"),
        [AgentSpec(name=name, instructions="specialist") for name in names],
        rng=meter.rng,
    )
    runner = ModelRunner(FunctionModel(play), max_tool_concurrency=n)
    meter.begin()
    result = await delegator.run("fan out", runner=runner)
    meter.end(n)
    failed = [record for record in result.delegations if not record.success]
    if len(result.delegations) != n or failed:
        raise RuntimeError(
            f"delegation benchmark broken: {len(result.delegations)} delegations, "
            f"{len(failed)} failed (first: {failed[0] if failed else None})"
        )


async def raw(meter: Meter, case: Case) -> None:
    n = case.size
    results: list[Any] = [None] * n

    async def specialist(index: int) -> None:
        await trio.lowlevel.checkpoint()
        results[index] = "pong"

    meter.begin()
    async with trio.open_nursery() as nursery:
        for index in range(n):
            nursery.start_soon(specialist, index)
    meter.end(n)


async def raw_round_trip(meter: Meter, case: Case) -> None:
    await raw_round_trips(meter, case.size)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="delegation",
            number="5",
            name=f"{size} specialists in parallel",
            size=size,
            per="delegation",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio (nursery of coroutines)", raw),
                Variant("raw-round-trip", "raw channel round trip", raw_round_trip),
            ),
            targets=(
                Target(
                    metric="time",
                    limit=6.0,
                    against="raw-round-trip",
                    text="<= 6 round trips",
                ),
            ),
            max_repeats=5,
        )
    ]


SCENARIO = Scenario(
    key="delegation",
    number="5",
    title="delegation fan-out: a main agent delegating to N specialists in parallel",
    sizes={"default": (1_000,), "quick": (1_000,), "smoke": (4,)},
    size_meaning="specialists",
    build=build,
    unavailable=_unavailable,
)
