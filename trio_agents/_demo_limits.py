"""Limits and progress for the demo on a real model (``python -m trio_agents demo --model``).

A real model can be slow (a small server on a laptop) or stuck. The demo therefore:

* caps each answer at ``max_tokens`` output tokens (unless the request already sets a cap),
* gives each model call ``call_timeout`` seconds (then :class:`~trio_agents.ModelTimeout`,
  which the agents' retry policy treats like any network error),
* and, while calls are in flight, prints one line every ``every`` seconds on standard error
  naming each agent still waiting and for how long, so a slow server is never silent.

The whole-demo deadline lives in the command line (``--timeout``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

import attrs
import trio

from ._errors import ModelTimeout
from ._messages import AssistantMessage
from ._models import Model, ModelRequest, StreamEvent


@attrs.frozen(kw_only=True)
class CallLimits:
    """Limits put on every call of a real model in the demo."""

    max_tokens: int | None = 256
    """Output-token cap sent with each request that does not set its own (``None``: none)."""
    call_timeout: float = math.inf
    """Seconds one model call may take before it fails with ModelTimeout."""


@attrs.define(eq=False)
class CallProgress:
    """The model calls in flight, and a reporter that prints the slow ones every few seconds."""

    err: TextIO
    """Where progress lines go (standard error in the command line)."""
    every: float = 5.0
    """Seconds between two progress lines (and before the first one)."""
    _in_flight: dict[int, tuple[str, float]] = attrs.field(factory=dict, init=False)
    _ids: itertools.count[int] = attrs.field(factory=itertools.count, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    def begin(self, agent: str) -> int:
        """Record a call of ``agent``'s model starting now; returns its token for :meth:`end`."""
        token = next(self._ids)
        self._in_flight[token] = (agent, trio.current_time())
        self._changed.set()
        return token

    def end(self, token: int) -> None:
        """Record the call ``token`` as finished (answered, failed or cancelled)."""
        self._in_flight.pop(token, None)

    def lines(self, now: float) -> list[str]:
        """The progress lines at ``now``: one per call in flight for :attr:`every` seconds or
        more, oldest first."""
        return [
            f"... waiting for the model: agent {agent}, {now - start:.0f} s so far"
            for agent, start in sorted(self._in_flight.values(), key=lambda item: item[1])
            if now - start >= self.every
        ]

    async def serve(self) -> None:
        """Print the in-flight calls every :attr:`every` seconds while there are any; runs until
        cancelled."""
        while True:
            if not self._in_flight:
                self._changed = trio.Event()
                await self._changed.wait()
            await trio.sleep(self.every)
            for line in self.lines(trio.current_time()):
                print(line, file=self.err, flush=True)


class LimitedModel:
    """``inner`` under :class:`CallLimits`, reporting its calls to a :class:`CallProgress`."""

    def __init__(
        self, inner: Model, agent: str, limits: CallLimits, progress: CallProgress | None
    ) -> None:
        self._inner = inner
        self._agent = agent
        self._limits = limits
        self._progress = progress

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def _limited(self, request: ModelRequest) -> ModelRequest:
        if self._limits.max_tokens is None or request.settings.max_tokens is not None:
            return request
        settings = attrs.evolve(request.settings, max_tokens=self._limits.max_tokens)
        return attrs.evolve(request, settings=settings)

    def _timed_out(self) -> ModelTimeout:
        return ModelTimeout(
            f"{self.model_id} gave agent {self._agent} no answer within "
            f"{self._limits.call_timeout:g} s (--call-timeout)"
        )

    def _begin(self) -> int | None:
        return None if self._progress is None else self._progress.begin(self._agent)

    def _end(self, token: int | None) -> None:
        if token is not None and self._progress is not None:
            self._progress.end(token)

    async def request(self, request: ModelRequest) -> AssistantMessage:
        token = self._begin()
        try:
            with trio.move_on_after(self._limits.call_timeout):
                return await self._inner.request(self._limited(request))
            raise self._timed_out()
        finally:
            self._end(token)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        # The output cap and the progress lines apply; the timeout applies to request() only
        # (the demo's agents do not stream).
        token = self._begin()
        try:
            async with self._inner.stream(self._limited(request)) as events:
                yield events
        finally:
            self._end(token)
