"""6. Latency-bound concurrency: N agents, each making 3 model calls of 100 ms.

Every agent gets one request; its scripted model asks for a tool twice and then answers, each
response after 100 ms of (real) latency, so one run is 3 model calls and 2 tool calls. The
measured wall time runs from the moment the N clients start until every reply has arrived;
spawning is not measured. The ideal is 3 x 100 ms: the framework should not be the bottleneck
of an I/O-bound workload.

raw: N server tasks on their own channels; a request makes the server sleep 100 ms three
times and reply.
"""

from __future__ import annotations

import trio
import trio.testing

from trio_agents import Agent, AgentHandle, AgentOrchestrator, tool
from trio_agents.testing import ScriptedModel, text, tool_call

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import CHANNEL_BUFFER, USAGE, RawRequest, raw_call

CALLS = 3
LATENCY: dict[Profile, float] = {"default": 0.1, "quick": 0.1, "smoke": 0.01}


@tool
async def lookup() -> str:
    """Look something up (answers at once)."""
    return "found"


async def framework(meter: Meter, case: Case) -> None:
    n = case.size
    latency = case.params["latency"]

    def factory() -> Agent:
        script = [tool_call("lookup", delay=latency) for _ in range(CALLS - 1)]
        script.append(text("done", delay=latency, usage=USAGE))
        return Agent(ScriptedModel(script), name="worker", tools=[lookup])

    orchestrator = AgentOrchestrator(rng=meter.rng)
    names = [f"agent{i}" for i in range(n)]
    for name in names:
        orchestrator.add_agent(name, factory)
    async with orchestrator.open() as system:
        handles: list[AgentHandle] = [await system.spawn(name) for name in names]
        meter.begin()
        async with trio.open_nursery() as nursery:
            for handle in handles:
                nursery.start_soon(handle.send_message, "go")
        meter.end(1)


async def _slow_server(recv: trio.MemoryReceiveChannel[RawRequest], latency: float) -> None:
    async for request in recv:
        for _ in range(CALLS):
            await trio.sleep(latency)
        request.reply("done")


async def raw(meter: Meter, case: Case) -> None:
    n = case.size
    latency = case.params["latency"]
    async with trio.open_nursery() as servers:
        sends = []
        for _ in range(n):
            send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)
            sends.append(send)
            servers.start_soon(_slow_server, recv, latency)
        await trio.testing.wait_all_tasks_blocked()  # all serving (not measured)
        meter.begin()
        async with trio.open_nursery() as nursery:
            for send in sends:
                nursery.start_soon(raw_call, send, "go")
        meter.end(1)
        servers.cancel_scope.cancel()


def build(size: int, profile: Profile) -> list[Case]:
    latency = LATENCY[profile]
    ideal = CALLS * latency
    return [
        Case(
            scenario="latency",
            number="6",
            name=f"{size} agents x {CALLS} calls of {latency * 1000:.0f} ms",
            size=size,
            per="workload",
            time_unit="ms",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio", raw),
            ),
            targets=(
                Target(
                    metric="time",
                    limit=1.2,
                    against="ideal",
                    ideal=ideal,
                    text=f"<= 1.2x ideal ({ideal * 1000:.0f} ms)",
                ),
                Target(
                    metric="time",
                    limit=1.2,
                    against="ideal",
                    ideal=ideal,
                    subject=BASELINE,
                    text=f"<= 1.2x ideal ({ideal * 1000:.0f} ms)",
                ),
            ),
            max_repeats=3 if size >= 5_000 else None,
            max_warmup=0 if size >= 5_000 else None,
            params={"latency": latency},
            note="latency: wall time of the whole workload (all agents), against the ideal of "
            f"{CALLS} sequential latencies; real sleeps, not a virtual clock",
        )
    ]


SCENARIO = Scenario(
    key="latency",
    number="6",
    title="latency-bound concurrency: N agents x 3 model calls of 100 ms, wall vs ideal",
    sizes={"default": (100, 1_000, 10_000), "quick": (100, 1_000), "smoke": (4,)},
    size_meaning="agents",
    build=build,
)
