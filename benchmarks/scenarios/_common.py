"""Pieces shared by the scenarios: the raw-trio request/reply idiom and client drivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from trio_agents import Usage
from trio_agents.testing import ScriptStep, text

USAGE = Usage(requests=1, input_tokens=1, output_tokens=1)
"""Given to every scripted answer, so the scripted model does not count the words of the
whole history at every request (that is the test double's cost, not the framework's)."""

ANSWER: ScriptStep = text("pong", usage=USAGE)
"""The scripted model's instant answer."""

CHANNEL_BUFFER = 32
"""The raw variants' channel bound: the orchestrator's default ``channel_buffer``."""


class RawRequest:
    """A request with a one-shot reply slot: an Event plus the value (the expert's idiom,
    cheaper than a reply channel per request)."""

    __slots__ = ("error", "event", "message", "result")

    def __init__(self, message: Any) -> None:
        self.message = message
        self.event = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def reply(self, result: Any) -> None:
        self.result = result
        self.event.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.event.set()


async def raw_call(send: trio.MemorySendChannel[RawRequest], message: Any) -> Any:
    """Client side of the raw idiom: send the request, wait for its reply."""
    request = RawRequest(message)
    await send.send(request)
    await request.event.wait()
    if request.error is not None:
        raise request.error
    return request.result


async def serve_echo(recv: trio.MemoryReceiveChannel[RawRequest]) -> None:
    """Server side: after each blocking ``receive``, drain what is already queued with
    ``receive_nowait``, replying at once (one scheduler step per batch, not per request)."""
    while True:
        request = await recv.receive()
        while True:
            request.reply(request.message)
            try:
                request = recv.receive_nowait()
            except trio.WouldBlock:
                break


async def serve_echo_awaiting(recv: trio.MemoryReceiveChannel[RawRequest]) -> None:
    """Like :func:`serve_echo`, with one checkpoint per request: the shape of a server whose
    answer is awaited (an agent's model call), for context."""
    while True:
        request = await recv.receive()
        while True:
            await trio.lowlevel.checkpoint()
            request.reply(request.message)
            try:
                request = recv.receive_nowait()
            except trio.WouldBlock:
                break


async def raw_round_trips(meter: Any, count: int) -> None:
    """``count`` sequential raw round trips to a :func:`serve_echo` server, measured."""
    send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_echo, recv)
        meter.begin()
        for _ in range(count):
            await raw_call(send, "ping")
        meter.end(count)
        nursery.cancel_scope.cancel()


async def drive(clients: int, requests: int, call: Callable[[str], Awaitable[Any]]) -> None:
    """``requests`` calls in all, from ``clients`` concurrent client tasks (in-line for 1)."""
    if clients == 1:
        for _ in range(requests):
            await call("ping")
        return
    per_client, rest = divmod(requests, clients)

    async def client(count: int) -> None:
        for _ in range(count):
            await call("ping")

    async with trio.open_nursery() as nursery:
        for index in range(clients):
            nursery.start_soon(client, per_client + (1 if index < rest else 0))
