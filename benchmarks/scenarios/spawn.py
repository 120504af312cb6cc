"""2. Spawn N agents, idle and serving: time per spawn and memory per agent.

trio_agents: register N top-level agents (one shared model; each factory call builds a fresh
:class:`~trio_agents.Agent`) and ``await system.spawn(name)`` each, keeping the handles. The
measured region covers registration and spawning: both are what an agent costs.

raw: N tasks, each blocked on its own bounded memory channel, started with ``nursery.start``,
which like ``spawn`` returns once the task serves; the send channels are kept. For context,
"raw, start_soon" starts them without waiting and ends when the last one serves.
"""

from __future__ import annotations

import trio

from trio_agents import Agent, AgentHandle, AgentOrchestrator
from trio_agents.testing import FunctionModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import CHANNEL_BUFFER, RawRequest, serve_echo


async def framework(meter: Meter, case: Case) -> None:
    n = case.size
    model = FunctionModel(lambda request: "unused")  # shared; never called here
    names = [f"agent{i}" for i in range(n)]

    def factory() -> Agent:
        return Agent(model, name="worker")

    meter.begin()
    orchestrator = AgentOrchestrator(rng=meter.rng)
    for name in names:
        orchestrator.add_agent(name, factory)
    async with orchestrator.open() as system:
        handles: list[AgentHandle] = []
        for name in names:
            handles.append(await system.spawn(name))
        meter.end(n)


async def _idle(task_status: trio.TaskStatus[trio.MemorySendChannel[RawRequest]]) -> None:
    send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)
    task_status.started(send)
    await serve_echo(recv)


async def raw(meter: Meter, case: Case) -> None:
    n = case.size
    async with trio.open_nursery() as nursery:
        meter.begin()
        sends: list[trio.MemorySendChannel[RawRequest]] = []
        for _ in range(n):
            sends.append(await nursery.start(_idle))
        meter.end(n)
        nursery.cancel_scope.cancel()


async def raw_start_soon(meter: Meter, case: Case) -> None:
    n = case.size
    serving = trio.Event()
    waiting = [n]

    async def idle(recv: trio.MemoryReceiveChannel[RawRequest]) -> None:
        waiting[0] -= 1
        if not waiting[0]:
            serving.set()
        await serve_echo(recv)

    async with trio.open_nursery() as nursery:
        meter.begin()
        sends: list[trio.MemorySendChannel[RawRequest]] = []
        for _ in range(n):
            send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)
            sends.append(send)
            nursery.start_soon(idle, recv)
        await serving.wait()
        meter.end(n)
        nursery.cancel_scope.cancel()


def build(size: int, profile: Profile) -> list[Case]:
    big = size >= 50_000
    return [
        Case(
            scenario="spawn",
            number="2",
            name=f"{size} agents",
            size=size,
            per="agent",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio (nursery.start)", raw),
                Variant("raw-start-soon", "raw, start_soon", raw_start_soon),
            ),
            targets=(
                Target(metric="time", limit=2.0, against=BASELINE, text="<= 2x raw"),
                Target(metric="tracemalloc", limit=2.0, against=BASELINE, text="<= 2x raw"),
                Target(metric="rss", limit=2.0, against=BASELINE, text="<= 2x raw"),
            ),
            memory=True,
            traced_memory=not big,
            max_repeats=1 if big else 3 if size >= 5_000 else None,
            max_warmup=0 if big else None,
            note="spawn: the trio_agents time includes registering each agent; memory is the "
            "growth per agent while all are serving (tracemalloc: Python objects, measured up "
            "to 10k; RSS: the process, each sample in a fresh process)",
        )
    ]


SCENARIO = Scenario(
    key="spawn",
    number="2",
    title="spawn N idle, serving agents: time per spawn, memory per agent",
    sizes={"default": (1_000, 10_000, 100_000), "quick": (1_000, 10_000), "smoke": (10,)},
    size_meaning="agents",
    build=build,
)
