"""4. Restart: an agent failing and being restarted in a loop, with no backoff.

N requests are queued before the clock starts; each makes the agent fail (the model raises a
retryable error), the request gets the error as its reply, and the supervisor restarts the
agent, which serves the next request. Measured: the time until the last reply, per restart.

trio_agents: the :class:`~trio_agents.DefaultSupervisor` (restarts retryable errors) with
``Backoff.none()`` and a restart limit above N; each restart rebuilds the agent from its
factory and keeps its queue.

raw: the same work, as a trio expert writes a restart loop: a worker task takes one request,
fails it and raises; a wrapper reports the failure over a channel to a parent loop that
starts a fresh worker in one long-lived nursery. For context, "raw, nursery per restart" is
the other common shape: a new nursery per restart, the failure caught with ``except*``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import trio

from trio_agents import (
    Agent,
    AgentOrchestrator,
    Backoff,
    DefaultSupervisor,
    ModelOverloaded,
    RetryPolicy,
)
from trio_agents.testing import FunctionModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import RawRequest


def _overloaded(request: Any) -> str:
    raise ModelOverloaded("overloaded")


async def framework(meter: Meter, case: Case) -> None:
    n = case.size
    model = FunctionModel(_overloaded)

    def factory() -> Agent:
        return Agent(model, name="flaky", retry=RetryPolicy(max_attempts=1))

    orchestrator = AgentOrchestrator(
        supervisor=DefaultSupervisor(),
        channel_buffer=n,
        max_restarts=n + 1,
        backoff=Backoff.none(),
        rng=meter.rng,
    )
    orchestrator.add_agent("flaky", factory)
    async with orchestrator.open() as system:
        handle = await system.spawn("flaky")
        for _ in range(n - 1):
            handle.send_message_nowait("fail")  # replies not kept: no client holds them
        last = handle.send_message_nowait("fail")
        meter.begin()
        with contextlib.suppress(ModelOverloaded):
            await last.wait()
        meter.end(n)
        meter.extra["restarts"] = handle.statistics().restarts


class _Overloaded(Exception):
    pass


async def _worker(recv: trio.MemoryReceiveChannel[RawRequest]) -> None:
    request = await recv.receive()
    error = _Overloaded("overloaded")
    request.fail(error)
    raise error


async def raw(meter: Meter, case: Case) -> None:
    n = case.size
    send, recv = trio.open_memory_channel[RawRequest](n)
    failures_send, failures_recv = trio.open_memory_channel[BaseException](1)
    for _ in range(n - 1):
        send.send_nowait(RawRequest("fail"))
    last = RawRequest("fail")
    send.send_nowait(last)

    async def supervised() -> None:
        try:
            await _worker(recv)
        except Exception as exc:
            await failures_send.send(exc)

    async with trio.open_nursery() as nursery:
        meter.begin()
        restarts = 0
        nursery.start_soon(supervised)
        async for _ in failures_recv:
            restarts += 1
            if restarts == n:
                break
            nursery.start_soon(supervised)
        await last.event.wait()
        meter.end(n)


async def raw_nursery_per_restart(meter: Meter, case: Case) -> None:
    n = case.size
    send, recv = trio.open_memory_channel[RawRequest](n)
    for _ in range(n - 1):
        send.send_nowait(RawRequest("fail"))
    last = RawRequest("fail")
    send.send_nowait(last)
    meter.begin()
    restarts = 0
    while restarts < n:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_worker, recv)
        except* _Overloaded:
            restarts += 1
    await last.event.wait()
    meter.end(n)


def build(size: int, profile: Profile) -> list[Case]:
    return [
        Case(
            scenario="restart",
            number="4",
            name=f"{size} restarts",
            size=size,
            per="restart",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio (long-lived nursery)", raw),
                Variant("raw-nursery", "raw, nursery per restart", raw_nursery_per_restart),
            ),
            targets=(Target(metric="time", limit=3.0, against=BASELINE, text="<= 3x raw"),),
            note="restart: restarts per second = 1e6 / (µs per restart); each restart also "
            "replies the failed request with the error",
        )
    ]


SCENARIO = Scenario(
    key="restart",
    number="4",
    title="an agent failing and restarted in a loop (no backoff): restarts per second",
    sizes={"default": (2_000,), "quick": (500,), "smoke": (5,)},
    size_meaning="restarts per sample",
    build=build,
)
