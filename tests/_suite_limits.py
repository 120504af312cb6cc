"""Hard limits that turn a hanging test into a failure that names it.

* Wall time: a trio test still running after :data:`WALL_LIMIT` seconds is cancelled from a
  watchdog thread (through its trio token, so trio's state stays sound and the next test runs)
  and fails; pytest-timeout (``timeout`` in pyproject.toml, a minute) fails any other test,
  and is the backstop for a trio test that does not end when cancelled. (pytest-timeout alone
  would raise inside trio's run loop and leave trio unusable for the tests after.)
* Virtual time: the ``autojump_clock`` fixture comes from :func:`bounded_autojump_clock`. Under
  autojump, a hang usually takes no wall time at all (a loop of timers jumps the clock forward
  forever) or has no pending deadline (every task waits on something that never comes, so
  the clock cannot advance); the clock fails the test in both cases, long before the wall
  limit.

Imported by ``tests/conftest.py``; the suite's own test of these limits loads it into a
pytester run the same way.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import pytest
import trio
import trio.testing

WALL_LIMIT = 45.0
"""Wall seconds a trio test may run before it is cancelled and fails."""

VIRTUAL_LIMIT = 10 * 24 * 3600.0
"""Seconds of virtual time a test on the autojump clock may use (no test needs days)."""

STALL_LIMIT = 20.0
"""Wall seconds a test on the autojump clock may sit with every task blocked and no deadline
pending (the clock cannot move, so nothing can ever wake it except another thread)."""


class _Guard:
    """The running trio test's cancel scope, and why the suite cancelled it (if it did)."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.why: str | None = None

    def trip(self, why: str) -> None:
        """Cancel the test (from trio's thread) and remember why; the first reason wins."""
        if self.why is None:
            self.why = why
            self.scope.cancel(reason=why)


_running: _Guard | None = None
"""The guard of the trio test running now (one at a time: pytest runs tests one by one)."""


def _hung(why: str) -> None:
    if _running is not None:
        _running.trip(why)
    else:  # the clock used outside a guarded test: end the run with the reason
        pytest.fail(why, pytrace=False)


def bounded_autojump_clock() -> trio.testing.MockClock:
    """``MockClock(autojump_threshold=0)`` that fails the test when it hangs.

    The clock's autojump (which trio's run loop calls whenever every task is blocked) is
    wrapped with the two checks (MockClock cannot be subclassed); a hang cancels the test,
    which then fails with the reason.
    """
    clock = trio.testing.MockClock(autojump_threshold=0)
    autojump = clock._autojump
    stalled_since = math.inf

    def bounded_autojump() -> None:
        nonlocal stalled_since
        statistics = trio.lowlevel.current_statistics()
        if statistics.seconds_to_next_deadline == math.inf and not statistics.tasks_runnable:
            now = time.monotonic()
            stalled_since = min(stalled_since, now)
            if now - stalled_since > STALL_LIMIT:
                _hung(
                    f"hung: every task has been blocked for {STALL_LIMIT:g} s (wall) with no "
                    "deadline pending, so the autojump clock cannot advance: a wait that "
                    "nothing will ever end (a missing reply, a lost wake-up)"
                )
        else:
            stalled_since = math.inf
        autojump()
        if clock.current_time() > VIRTUAL_LIMIT:
            _hung(
                f"hung: ran past {VIRTUAL_LIMIT:g} s of virtual time on the autojump clock "
                "(a loop of timers that never ends: a retry or restart without a limit?)"
            )

    clock._autojump = bounded_autojump  # type: ignore[method-assign]
    return clock


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    """pytest-trio's ``autojump_clock``, bounded: see :func:`bounded_autojump_clock`."""
    return bounded_autojump_clock()


def _wall_limited(test: Callable[..., Any]) -> Callable[..., Any]:
    """The async ``test``, cancelled and failed after :data:`WALL_LIMIT` seconds of wall time."""

    @functools.wraps(test)
    async def limited(*args: Any, **kwargs: Any) -> Any:
        global _running
        token = trio.lowlevel.current_trio_token()
        guard = _Guard()
        limit = WALL_LIMIT
        why = (
            f"hung: still running after {limit:g} s (wall); cancelled by the suite's "
            "per-test limit (tests/_suite_limits.py)"
        )

        def fire() -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the test ended meanwhile
                token.run_sync_soon(guard.trip, why)

        timer = threading.Timer(limit, fire)
        timer.daemon = True
        _running = guard
        try:
            with guard.scope:
                timer.start()
                try:
                    return await test(*args, **kwargs)
                except BaseException as exc:
                    if guard.why is not None and not isinstance(exc, trio.Cancelled):
                        pytest.fail(f"{guard.why}; it then raised {exc!r}", pytrace=False)
                    raise
        finally:
            timer.cancel()
            _running = None
            if guard.why is not None:
                pytest.fail(guard.why, pytrace=False)
        return None  # pragma: no cover (the scope was cancelled: the fail above ran)

    return limited


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Put the wall-time limit around every trio test, before pytest-trio wraps it in
    ``trio.run`` (this hook wrapper runs first)."""
    if isinstance(item, pytest.Function) and item.get_closest_marker("trio") is not None:
        hypothesis = getattr(item.obj, "hypothesis", None)
        if hypothesis is not None:
            if inspect.iscoroutinefunction(hypothesis.inner_test):
                hypothesis.inner_test = _wall_limited(hypothesis.inner_test)
        elif inspect.iscoroutinefunction(item.obj):
            item.obj = _wall_limited(item.obj)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """With ``TRIO_AGENTS_E2E_REQUIRED=1`` (``nox -s e2e`` sets it), a skipped end-to-end test
    is a failure: a run without real-model coverage must not pass."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("TRIO_AGENTS_E2E_REQUIRED") == "1"
        and item.get_closest_marker("e2e") is not None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            "skipped, but TRIO_AGENTS_E2E_REQUIRED=1 requires the end-to-end tests to run: "
            f"{reason}"
        )
