"""Tree-wide rate limits: :class:`RateLimiter` and :class:`RateLimitedModel`.

Rules:

* ``async with limiter.acquire():`` waits for a concurrency slot (when ``max_concurrent`` is
  set), then for a request token (when ``requests_per_minute`` is set), and holds the slot
  until the block ends. The token is spent when the block is entered, however long it lasts.
* Waiters are served strictly in arrival order (the order they called ``acquire``), for both
  limits: a task never overtakes one that started waiting before it, even if a slot or token
  would be enough for it. Arrival order is kept by a :class:`trio.StrictFIFOLock` that only
  the task at the head of the queue holds while it waits.
* The request rate is a token bucket on trio's clock: it holds at most ``burst`` tokens
  (default 1), starts full, and refills continuously at ``requests_per_minute / 60`` tokens
  a second. With the default burst of 1, requests start at least ``60 / requests_per_minute``
  seconds apart; a larger burst lets that many start at once after a quiet period.
* Cancelling a waiting task takes nothing: it gives up its place, spends no token and holds
  no slot.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import attrs
import trio

from ._errors import InvalidArgumentError
from ._messages import AssistantMessage
from ._models import Model, ModelRequest, StreamEvent, check_model


@attrs.frozen(kw_only=True)
class RateLimiterStatistics:
    """A snapshot of a :class:`RateLimiter`."""

    in_flight: int
    """Tasks inside ``acquire()`` blocks now."""
    waiting: int
    """Tasks waiting to enter."""
    tokens: float | None
    """Request tokens in the bucket now (``None`` without a request rate)."""
    max_concurrent: int | None
    """The concurrency cap (``None``: no cap)."""
    requests_per_minute: float | None
    """The request rate (``None``: no rate limit)."""
    burst: int | None
    """The bucket's capacity (``None`` without a request rate)."""


def _positive_int(value: object, argument: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{argument} must be None or an int >= 1, got {value!r}")
    return value


class RateLimiter:
    """A concurrency cap plus a request rate, shared by every agent that holds it.

    :param max_concurrent: requests allowed in flight at once; ``None`` for no cap.
    :param requests_per_minute: sustained request rate; ``None`` for no rate limit.
    :param burst: requests that may start at once after a quiet period (the token bucket's
        capacity); default 1. Only with ``requests_per_minute``.
    :raises InvalidArgumentError: a limit is not a positive number, or ``burst`` is given
        without ``requests_per_minute``.

    Give it to :class:`RateLimitedModel` (or register it in :attr:`SharedInfra.rate_limits`)
    so that a whole tree of agents calling one provider stays under the provider's limits.
    """

    __slots__ = (
        "_burst",
        "_gate",
        "_in_flight",
        "_interval",
        "_max_concurrent",
        "_rpm",
        "_slots",
        "_tat",
        "_waiting",
    )

    def __init__(
        self,
        max_concurrent: int | None = None,
        requests_per_minute: float | None = None,
        burst: int | None = None,
    ) -> None:
        self._max_concurrent = _positive_int(max_concurrent, "max_concurrent")
        if requests_per_minute is not None and (
            isinstance(requests_per_minute, bool)
            or not isinstance(requests_per_minute, int | float)
            or not math.isfinite(requests_per_minute)
            or requests_per_minute <= 0
        ):
            raise InvalidArgumentError(
                "requests_per_minute must be None or a finite number > 0, "
                f"got {requests_per_minute!r}"
            )
        checked_burst = _positive_int(burst, "burst")
        if checked_burst is not None and requests_per_minute is None:
            raise InvalidArgumentError(
                "burst only applies to a request rate: give requests_per_minute too, or drop burst"
            )
        self._rpm: float | None = (
            None if requests_per_minute is None else float(requests_per_minute)
        )
        self._burst: int | None = None
        self._interval = 0.0
        if self._rpm is not None:
            self._burst = checked_burst if checked_burst is not None else 1
            self._interval = 60.0 / self._rpm
        self._gate = trio.StrictFIFOLock()
        self._slots = (
            trio.CapacityLimiter(self._max_concurrent) if self._max_concurrent is not None else None
        )
        # The bucket as a "theoretical arrival time" (GCRA): the bucket holds
        # burst - max(0, tat - now) / interval tokens. -inf: full.
        self._tat = -math.inf
        self._in_flight = 0
        self._waiting = 0

    @property
    def max_concurrent(self) -> int | None:
        """The concurrency cap."""
        return self._max_concurrent

    @property
    def requests_per_minute(self) -> float | None:
        """The request rate."""
        return self._rpm

    @property
    def burst(self) -> int | None:
        """The token bucket's capacity (``None`` without a request rate)."""
        return self._burst

    def _tokens(self, now: float) -> float | None:
        if self._burst is None:
            return None
        owed = max(0.0, self._tat - now) / self._interval
        return min(float(self._burst), max(0.0, self._burst - owed))

    def statistics(self) -> RateLimiterStatistics:
        """A snapshot of the limiter now (tokens are counted on trio's clock)."""
        tokens: float | None
        try:
            tokens = self._tokens(trio.current_time())
        except RuntimeError:  # outside a trio run: nothing has spent tokens yet
            tokens = None if self._burst is None else float(self._burst)
        return RateLimiterStatistics(
            in_flight=self._in_flight,
            waiting=self._waiting,
            tokens=tokens,
            max_concurrent=self._max_concurrent,
            requests_per_minute=self._rpm,
            burst=self._burst,
        )

    def acquire(self) -> AbstractAsyncContextManager[None]:
        """Wait for a slot and a token (in arrival order); hold the slot for the block.

        Use as ``async with limiter.acquire(): ...``.
        """
        return self._acquire()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[None]:
        borrower = object()  # one slot per block, even for nested blocks in one task
        holds_slot = False
        self._waiting += 1
        try:
            async with self._gate:
                if self._slots is not None:
                    # Entering the gate was this call's checkpoint: a free slot is taken
                    # without another trip through the scheduler.
                    try:
                        self._slots.acquire_on_behalf_of_nowait(borrower)
                    except trio.WouldBlock:
                        await self._slots.acquire_on_behalf_of(borrower)
                    holds_slot = True
                if self._burst is not None:
                    tolerance = (self._burst - 1) * self._interval
                    allowed_at = self._tat - tolerance
                    if trio.current_time() < allowed_at:
                        # sleep_until, not sleep(): waking at exactly allowed_at leaves no
                        # float remainder to wait for again.
                        await trio.sleep_until(allowed_at)
                    self._tat = max(self._tat, trio.current_time()) + self._interval
        except BaseException:
            if holds_slot:
                assert self._slots is not None
                self._slots.release_on_behalf_of(borrower)
            raise
        finally:
            self._waiting -= 1
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1
            if holds_slot:
                assert self._slots is not None
                self._slots.release_on_behalf_of(borrower)

    def __repr__(self) -> str:
        return (
            f"RateLimiter(max_concurrent={self._max_concurrent!r}, "
            f"requests_per_minute={self._rpm!r}, burst={self._burst!r})"
        )


class RateLimitedModel:
    """A :class:`~trio_agents.Model` whose calls go through a :class:`RateLimiter`.

    :param model: the model to call.
    :param limiter: the limiter every call waits for (share it across the tree).

    :meth:`request` holds the limiter for the whole call; :meth:`stream` for as long as the
    stream is open. :attr:`model_id` is the wrapped model's.
    """

    __slots__ = ("_limiter", "_model")

    def __init__(self, model: Model, limiter: RateLimiter) -> None:
        self._model = check_model(model)
        if not isinstance(limiter, RateLimiter):
            raise InvalidArgumentError(
                f"limiter must be a RateLimiter, got {type(limiter).__name__} {limiter!r}"
            )
        self._limiter = limiter

    @property
    def model_id(self) -> str:
        """The wrapped model's id."""
        return self._model.model_id

    @property
    def model(self) -> Model:
        """The wrapped model."""
        return self._model

    @property
    def limiter(self) -> RateLimiter:
        """The limiter calls wait for."""
        return self._limiter

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Wait for the limiter, then send ``request`` to the wrapped model."""
        async with self._limiter.acquire():
            return await self._model.request(request)

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]:
        """Wait for the limiter, then stream from the wrapped model (holding the limiter)."""
        return self._stream(request)

    @asynccontextmanager
    async def _stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        async with self._limiter.acquire(), self._model.stream(request) as events:
            yield events

    def __repr__(self) -> str:
        return f"RateLimitedModel({self._model!r}, {self._limiter!r})"
