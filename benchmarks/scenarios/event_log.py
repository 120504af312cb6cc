"""7. Event-log cost: request/reply (scenario 1) with an event log and a subscriber attached.

trio_agents: scenario 1's agent, with an :class:`~trio_agents.EventLog` as the orchestrator's
event sink (the agent's run events go there too) and one subscriber task draining
``log.subscribe()``. The target compares it with the same run without a log
("trio_agents, no event log"), measured interleaved in the same rounds.
"""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from trio_agents import Agent, AgentOrchestrator
from trio_agents.testing import ScriptedModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from . import request_reply
from ._common import ANSWER, drive

SUBSCRIBER_BUFFER = 100_000


def _unavailable() -> str | None:
    try:
        from trio_agents import EventLog  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only before the event log landed
        return f"trio_agents has no EventLog yet ({exc})"
    return None


async def framework(meter: Meter, case: Case) -> None:
    await _with_log(meter, case, subscribe=True)


async def framework_log_only(meter: Meter, case: Case) -> None:
    await _with_log(meter, case, subscribe=False)


async def _with_log(meter: Meter, case: Case, *, subscribe: bool) -> None:
    from trio_agents import EventLog

    requests = case.params["requests"]
    log = EventLog()
    if not subscribe:
        model = ScriptedModel([ANSWER] * requests)
        orchestrator = AgentOrchestrator(rng=meter.rng, event_sink=log)
        orchestrator.add_agent("server", lambda: Agent(model, name="server"))
        async with orchestrator.open() as system:
            handle = await system.spawn("server")
            meter.begin()
            await drive(case.size, requests, handle.send_message)
            meter.end(requests)
        meter.extra["events_per_request"] = len(log) / requests
        return
    subscription = log.subscribe(max_buffer=SUBSCRIBER_BUFFER)
    received = [0]

    async def subscriber() -> None:
        # Drain what is buffered after each wake-up (one scheduler step per batch, not per
        # event), as scenario 1's raw server does.
        while True:
            try:
                await subscription.receive()
                received[0] += 1
                while True:
                    subscription.receive_nowait()
                    received[0] += 1
            except trio.WouldBlock:
                continue
            except trio.EndOfChannel:
                return

    model = ScriptedModel([ANSWER] * requests)
    orchestrator = AgentOrchestrator(rng=meter.rng, event_sink=log)
    orchestrator.add_agent("server", lambda: Agent(model, name="server"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscriber)
        async with orchestrator.open() as system:
            handle = await system.spawn("server")
            meter.begin()
            await drive(case.size, requests, handle.send_message)
            meter.end(requests)
            await trio.testing.wait_all_tasks_blocked()
            if subscription.overflowed:
                raise RuntimeError("the event-log subscriber was cut off: raise its buffer")
            meter.extra["events_per_request"] = received[0] / requests
        nursery.cancel_scope.cancel()


async def framework_without_log(meter: Meter, case: Case) -> None:
    await request_reply.framework(meter, case)


async def raw(meter: Meter, case: Case) -> None:
    await request_reply.raw(meter, case)


def build(size: int, profile: Profile) -> list[Case]:
    requests = request_reply.REQUESTS[profile]
    params: dict[str, Any] = {"requests": max(requests, size)}
    return [
        Case(
            scenario="event-log",
            number="7",
            name=f"{size} client{'s' if size != 1 else ''}",
            size=size,
            per="request",
            variants=(
                Variant(FRAMEWORK, "trio_agents + event log", framework),
                Variant(BASELINE, "raw trio", raw),
                Variant("no-log", "trio_agents, no event log", framework_without_log),
                Variant("log-only", "trio_agents + event log, no subscriber", framework_log_only),
            ),
            targets=(
                Target(
                    metric="time",
                    limit=1.3,
                    against="no-log",
                    text="<= 1.3x without the log",
                ),
            ),
            params=params,
        )
    ]


SCENARIO = Scenario(
    key="event-log",
    number="7",
    title="request/reply with an event log and a subscriber attached",
    sizes={"default": (1, 100), "quick": (1, 100), "smoke": (1, 4)},
    size_meaning="concurrent clients",
    build=build,
    unavailable=_unavailable,
)
