"""10. Parallel pipeline: ``run_parallel`` over N branches, merged by ``concat``.

trio_agents: :func:`trio_agents.patterns.run_parallel` with N :class:`~trio_agents.patterns.Step`
branches; each builds a fresh agent whose :class:`~trio_agents.testing.FunctionModel` answers at
once. Measured: the whole call (agents built, run in the pipeline's nursery, results merged in
declaration order), divided by N.

raw: a nursery running N coroutines that each await once (the model's answer) and store a
result, then the results joined in order. The ratio is the per-branch overhead of the pattern
(an agent run plus the merge) over the bare work. "raw channel round trip" puts it in round
trips of the raw request/reply idiom, like the delegation scenario.
"""

from __future__ import annotations

from typing import Any

import trio

from trio_agents import Agent
from trio_agents.testing import FunctionModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Variant
from ._common import ANSWER, raw_round_trips


def _unavailable() -> str | None:
    try:
        from trio_agents.patterns import run_parallel  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only before the patterns landed
        return f"trio_agents has no patterns.run_parallel yet ({exc})"
    return None


async def framework(meter: Meter, case: Case) -> None:
    from trio_agents.patterns import Step, run_parallel

    model = FunctionModel(lambda request: ANSWER)
    branches = [Step(f"branch{i}", lambda: Agent(model)) for i in range(case.size)]
    meter.begin()
    result = await run_parallel(branches, "go")
    meter.end(case.size)
    if len(result.outputs) != case.size:
        raise RuntimeError(f"pipeline benchmark broken: {len(result.outputs)} outputs")


async def raw(meter: Meter, case: Case) -> None:
    n = case.size
    results: list[Any] = [None] * n

    async def branch(index: int) -> None:
        await trio.lowlevel.checkpoint()
        results[index] = "pong"

    meter.begin()
    async with trio.open_nursery() as nursery:
        for index in range(n):
            nursery.start_soon(branch, index)
    "\n\n".join(results)
    meter.end(n)


async def raw_round_trip(meter: Meter, case: Case) -> None:
    await raw_round_trips(meter, case.size)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="pipeline",
            number="10",
            name=f"{size} parallel branches (concat)",
            size=size,
            per="branch",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio (nursery of coroutines)", raw),
                Variant("raw-round-trip", "raw channel round trip", raw_round_trip),
            ),
            max_repeats=5,
        )
    ]


SCENARIO = Scenario(
    key="pipeline",
    number="10",
    title="parallel pipeline: N branches run and merged by run_parallel",
    sizes={"default": (1_000,), "quick": (1_000,), "smoke": (4,)},
    size_meaning="branches",
    build=build,
    unavailable=_unavailable,
)
