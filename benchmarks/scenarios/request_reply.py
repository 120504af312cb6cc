"""1. Request/reply through a handle to an agent that answers at once.

trio_agents: one orchestrated agent on a :class:`~trio_agents.testing.ScriptedModel` that
answers at once (no tools); clients call ``await handle.send_message("ping")``.

raw: one server task on a bounded memory channel; a request carries an Event-plus-slot reply;
the server drains what is queued with ``receive_nowait`` after each ``receive``.
"""

from __future__ import annotations

import trio

from trio_agents import Agent, AgentOrchestrator
from trio_agents.testing import ScriptedModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import ANSWER, CHANNEL_BUFFER, RawRequest, drive, raw_call, serve_echo
from ._common import serve_echo_awaiting as _serve_awaiting

REQUESTS: dict[Profile, int] = {"default": 1000, "quick": 300, "smoke": 8}
"""Requests per sample. The agent keeps its conversation, so every request makes the model
request (a tuple of the history) a little longer: keep samples short."""


async def framework(meter: Meter, case: Case) -> None:
    requests = case.params["requests"]
    model = ScriptedModel([ANSWER] * requests)
    orchestrator = AgentOrchestrator(rng=meter.rng)
    orchestrator.add_agent("server", lambda: Agent(model, name="server"))
    async with orchestrator.open() as system:
        handle = await system.spawn("server")
        meter.begin()
        await drive(case.size, requests, handle.send_message)
        meter.end(requests)


async def _raw(meter: Meter, case: Case, *, awaiting: bool) -> None:
    requests = case.params["requests"]
    send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)

    async def call(message: str) -> object:
        return await raw_call(send, message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_awaiting if awaiting else serve_echo, recv)
        meter.begin()
        await drive(case.size, requests, call)
        meter.end(requests)
        nursery.cancel_scope.cancel()


async def raw(meter: Meter, case: Case) -> None:
    await _raw(meter, case, awaiting=False)


async def raw_awaiting(meter: Meter, case: Case) -> None:
    await _raw(meter, case, awaiting=True)


def build(size: int, profile: Profile) -> list[Case]:
    requests = REQUESTS[profile]
    return [
        Case(
            scenario="request-reply",
            number="1",
            name=f"{size} client{'s' if size != 1 else ''}",
            size=size,
            per="request",
            variants=(
                Variant(FRAMEWORK, "trio_agents", framework),
                Variant(BASELINE, "raw trio", raw),
                Variant("raw-await", "raw, server awaits once", raw_awaiting),
            ),
            targets=(Target(metric="time", limit=1.5, against=BASELINE, text="<= 1.5x raw"),),
            params={"requests": max(requests, size)},
            note="request-reply: 'raw, server awaits once' adds the one checkpoint an agent's "
            "model call costs even when the model answers at once (context, not the baseline)",
        )
    ]


SCENARIO = Scenario(
    key="request-reply",
    number="1",
    title="request/reply through a handle (scripted model, no tools)",
    sizes={"default": (1, 100), "quick": (1, 100), "smoke": (1, 4)},
    size_meaning="concurrent clients",
    build=build,
)
