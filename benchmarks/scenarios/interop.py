"""13. A pydantic-ai agent run through :mod:`trio_agents.interop`.

trio_agents: ``await PydanticAIAgent(agent).run(task)`` inside one
:func:`~trio_agents.interop.open_asyncio_loop` (usage counted, budget charged, events, the
result built), and the same without a loop around it (each run opens and closes its own).

baseline: the bare trio-asyncio call, ``await trio_asyncio.aio_as_trio(agent.run)(task)``,
on the same loop: what the interop layer adds to running the peer at all.

The peer is a pydantic-ai agent on its own ``TestModel`` (one request, answered at once), so
the run is pydantic-ai's own work (about 3 ms) plus what each layer adds.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import drive

RUNS: dict[Profile, int] = {"default": 200, "quick": 60, "smoke": 3}
"""Runs per sample."""


def _peer() -> Any:
    from pydantic_ai import Agent
    from pydantic_ai.models.test import TestModel

    return Agent(TestModel(custom_output_text="pong"))


async def framework(meter: Meter, case: Case) -> None:
    from trio_agents.interop import PydanticAIAgent, open_asyncio_loop

    runs = case.params["runs"]
    peer = PydanticAIAgent(_peer(), name="peer")

    async def run(_: str) -> object:
        return await peer.run("ping")

    async with open_asyncio_loop():
        meter.begin()
        await drive(case.size, runs, run)
        meter.end(runs)


async def own_loop(meter: Meter, case: Case) -> None:
    from trio_agents.interop import PydanticAIAgent

    runs = case.params["runs"]
    peer = PydanticAIAgent(_peer(), name="peer")

    async def run(_: str) -> object:
        return await peer.run("ping")

    meter.begin()
    await drive(case.size, runs, run)
    meter.end(runs)


async def raw(meter: Meter, case: Case) -> None:
    import trio_asyncio

    import trio_agents.interop  # noqa: F401  (the same asyncio setup as the framework variant)

    runs = case.params["runs"]
    agent = _peer()

    async def run(_: str) -> object:
        return await trio_asyncio.aio_as_trio(agent.run)("ping")

    async with trio_asyncio.open_loop():
        meter.begin()
        await drive(case.size, runs, run)
        meter.end(runs)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="interop",
            number="13",
            name=f"pydantic-ai run, {size} caller{'s' if size != 1 else ''}",
            size=size,
            per="run",
            variants=(
                Variant(FRAMEWORK, "trio_agents PydanticAIAgent", framework),
                Variant(BASELINE, "bare trio-asyncio call", raw),
                Variant("own-loop", "PydanticAIAgent, a loop per run", own_loop),
            ),
            targets=(Target(metric="time", limit=1.1, against=BASELINE, text="<= 1.1x bare"),),
            params={"runs": max(RUNS[profile], size)},
        )
    ]


def _unavailable() -> str | None:
    for module, extra in (("trio_asyncio", "interop"), ("pydantic_ai", "pydantic-ai-slim")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'trio-agents[interop]' {extra})"
    return None


SCENARIO = Scenario(
    key="interop",
    number="13",
    title="a pydantic-ai agent run through trio_agents.interop, against the bare trio-asyncio call",
    sizes={"default": (1, 10), "quick": (1, 10), "smoke": (1, 2)},
    size_meaning="concurrent callers",
    build=build,
    unavailable=_unavailable,
)
