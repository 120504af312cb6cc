"""RateLimiter and RateLimitedModel: concurrency cap, token bucket, FIFO, on trio's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import trio
import trio.testing

from trio_agents import (
    Agent,
    AssistantMessage,
    InvalidArgumentError,
    Model,
    ModelRequest,
    RateLimitedModel,
    RateLimiter,
    RateLimiterStatistics,
    SharedInfra,
    StreamEvent,
)
from trio_agents.testing import ScriptedModel, text


class Counting:
    """Wraps a model and records how many of its calls are in flight, and when each starts."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.in_flight = 0
        self.peak = 0
        self.starts: list[float] = []

    @property
    def model_id(self) -> str:
        return self.model.model_id

    async def request(self, request: ModelRequest) -> AssistantMessage:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        self.starts.append(trio.current_time())
        try:
            return await self.model.request(request)
        finally:
            self.in_flight -= 1

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            async with self.model.stream(request) as events:
                yield events
        finally:
            self.in_flight -= 1


async def test_fan_out_of_50_agents_behind_max_concurrent_5(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(max_concurrent=5)
    infra = SharedInfra(rate_limits={"scripted": limiter})
    inner = Counting(ScriptedModel([text("x", delay=1.0)] * 50))
    model = infra.model_for(inner)
    assert isinstance(model, RateLimitedModel)
    agents = [Agent(model, name=f"a{i}", path=f"lead/a{i}") for i in range(50)]
    answers: list[str] = []

    async def run(agent: Agent) -> None:
        answers.append((await agent.run("go")).final_text)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(run, agent)
        await trio.testing.wait_all_tasks_blocked()
        stats = limiter.statistics()
        assert (stats.in_flight, stats.waiting) == (5, 45)
    assert trio.current_time() - start == 10.0  # 50 calls of 1 s, 5 at a time
    assert inner.peak == 5
    assert answers == ["x"] * 50
    assert limiter.statistics().in_flight == 0


async def test_requests_per_minute_spaces_the_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=60, burst=1)
    inner = Counting(ScriptedModel(["x"] * 10))
    model = RateLimitedModel(inner, limiter)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(model.request, ModelRequest())
    assert trio.current_time() - start == pytest.approx(9.0)
    assert [t - start for t in inner.starts] == pytest.approx([float(n) for n in range(10)])


async def test_burst_lets_that_many_start_at_once(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(requests_per_minute=120, burst=3)  # one token per 0.5 s
    assert limiter.statistics().tokens == 3.0  # starts full
    entered: list[float] = []

    async def one() -> None:
        async with limiter.acquire():
            entered.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert [t - start for t in entered] == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0])
    assert limiter.statistics().tokens == pytest.approx(0.0)
    await trio.sleep(0.25)
    assert limiter.statistics().tokens == pytest.approx(0.5)  # refills continuously
    await trio.sleep(10)
    assert limiter.statistics().tokens == 3.0  # never above the burst


async def test_waiters_get_in_in_arrival_order(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(max_concurrent=1)
    release = trio.Event()
    order: list[int] = []

    async def holder(task_status: trio.TaskStatus[None]) -> None:
        async with limiter.acquire():
            task_status.started()
            await release.wait()

    async def waiter(index: int) -> None:
        async with limiter.acquire():
            order.append(index)
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        await nursery.start(holder)
        for index in range(20):
            nursery.start_soon(waiter, index)
            await trio.testing.wait_all_tasks_blocked()  # index is waiting before index + 1
        assert limiter.statistics().waiting == 20
        release.set()
    assert order == list(range(20))


async def test_rate_waiters_get_in_in_arrival_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=600)  # one every 0.1 s
    order: list[int] = []

    async def waiter(index: int) -> None:
        async with limiter.acquire():
            order.append(index)

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(waiter, index)
            await trio.testing.wait_all_tasks_blocked()
    assert order == list(range(20))


async def test_cancelled_waiter_takes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(max_concurrent=1, requests_per_minute=60)
    entered: list[tuple[str, float]] = []
    start = trio.current_time()

    async def enter(name: str, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            async with limiter.acquire():
                entered.append((name, trio.current_time() - start))
                await trio.sleep(5)

    doomed = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        for name, scope in (("first", None), ("doomed", doomed), ("second", None)):
            nursery.start_soon(enter, name, scope)
            await trio.testing.wait_all_tasks_blocked()
        assert limiter.statistics().waiting == 2
        doomed.cancel()  # the head of the queue gives up its place
        await trio.testing.wait_all_tasks_blocked()
        assert limiter.statistics().waiting == 1
        nursery.start_soon(enter, "third")
    assert entered == [("first", 0.0), ("second", 5.0), ("third", 10.0)]
    assert limiter.statistics() == RateLimiterStatistics(
        in_flight=0,
        waiting=0,
        tokens=1.0,
        max_concurrent=1,
        requests_per_minute=60.0,
        burst=1,
    )


async def test_waiter_cancelled_while_waiting_for_a_token_spends_none(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limiter = RateLimiter(requests_per_minute=60)  # one token a second
    entered: list[float] = []
    start = trio.current_time()

    async def enter() -> None:
        async with limiter.acquire():
            entered.append(trio.current_time() - start)

    await enter()  # spends the only token at 0 s
    with trio.move_on_after(0.5):
        await enter()  # waits for the token due at 1 s; gives up at 0.5 s
    await enter()
    assert entered == [0.0, 1.0]  # the token due at 1 s was still there


async def test_stream_holds_the_slot_until_closed(autojump_clock: trio.testing.MockClock) -> None:
    limiter = RateLimiter(max_concurrent=1)
    model = RateLimitedModel(ScriptedModel(["one two", "three"]), limiter)
    async with model.stream(ModelRequest()) as events:
        assert limiter.statistics().in_flight == 1
        with trio.move_on_after(1) as scope:
            await model.request(ModelRequest())  # waits for the stream's slot
        assert scope.cancelled_caught
        chunks = [event async for event in events]
    assert len(chunks) == 3  # two words and StreamDone
    assert limiter.statistics().in_flight == 0
    assert (await model.request(ModelRequest())).text == "three"


async def test_nested_acquires_in_one_task_take_two_slots() -> None:
    limiter = RateLimiter(max_concurrent=2)
    async with limiter.acquire(), limiter.acquire():
        assert limiter.statistics().in_flight == 2
    assert limiter.statistics().in_flight == 0


async def test_no_limits_is_just_a_checkpoint() -> None:
    limiter = RateLimiter()
    async with limiter.acquire():
        assert limiter.statistics() == RateLimiterStatistics(
            in_flight=1,
            waiting=0,
            tokens=None,
            max_concurrent=None,
            requests_per_minute=None,
            burst=None,
        )


def test_limiter_checks_its_arguments() -> None:
    for kwargs, message in [
        ({"max_concurrent": 0}, "max_concurrent must be None or an int >= 1"),
        ({"max_concurrent": 2.5}, "max_concurrent must be None or an int >= 1"),
        ({"requests_per_minute": 0}, "requests_per_minute must be None or a finite number > 0"),
        ({"requests_per_minute": float("inf")}, "requests_per_minute must be None or a finite"),
        ({"requests_per_minute": True}, "requests_per_minute must be None or a finite"),
        ({"requests_per_minute": 60, "burst": 0}, "burst must be None or an int >= 1"),
        ({"burst": 2}, "burst only applies to a request rate"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            RateLimiter(**kwargs)  # type: ignore[arg-type]
    limiter = RateLimiter(3, 30, 2)
    assert (limiter.max_concurrent, limiter.requests_per_minute, limiter.burst) == (3, 30.0, 2)
    assert repr(limiter) == "RateLimiter(max_concurrent=3, requests_per_minute=30.0, burst=2)"
    assert RateLimiter(requests_per_minute=60).burst == 1  # the default burst


def test_statistics_outside_trio() -> None:
    stats = RateLimiter(max_concurrent=2, requests_per_minute=60, burst=4).statistics()
    assert (stats.in_flight, stats.waiting, stats.tokens) == (0, 0, 4.0)


def test_rate_limited_model_wraps_a_model() -> None:
    inner = ScriptedModel(model_id="openai:gpt")
    limiter = RateLimiter(max_concurrent=1)
    model = RateLimitedModel(inner, limiter)
    assert isinstance(model, Model)
    assert model.model_id == "openai:gpt"
    assert model.model is inner and model.limiter is limiter
    assert repr(model).startswith("RateLimitedModel(<ScriptedModel")
    with pytest.raises(InvalidArgumentError, match="model must implement"):
        RateLimitedModel("gpt", limiter)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="limiter must be a RateLimiter"):
        RateLimitedModel(inner, trio.CapacityLimiter(1))  # type: ignore[arg-type]
