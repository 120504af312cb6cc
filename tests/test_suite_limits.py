"""A test that hangs fails, named, instead of hanging the suite (tests/_suite_limits.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent

HANGING = """
import threading

import trio
import trio.testing


async def test_waits_for_nothing_on_autojump(autojump_clock):
    await trio.Event().wait()  # no deadline anywhere: the clock cannot move


async def test_timer_loop_on_autojump(autojump_clock):
    while True:  # a retry without a limit: virtual time runs away
        await trio.sleep(3600)


async def test_waits_for_nothing_on_the_real_clock():
    await trio.Event().wait()


def test_sync_waits_for_nothing():
    threading.Event().wait()


async def test_passes_on_autojump(autojump_clock):
    await trio.sleep(86400)
    assert trio.current_time() == 86400
"""


@pytest.fixture
def limited(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pytester.makeconftest("from _suite_limits import autojump_clock, pytest_runtest_call\n")
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_hanging=HANGING)
    return pytester


def test_hanging_tests_fail_with_the_reason(
    limited: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import _suite_limits

    # The same limits with smaller numbers, so this test takes seconds, not a minute.
    limited.makeconftest(
        "import _suite_limits\n"
        "_suite_limits.STALL_LIMIT = 1.0\n"
        "_suite_limits.WALL_LIMIT = 2.0\n"
        "from _suite_limits import autojump_clock, pytest_runtest_call\n"
    )
    assert (_suite_limits.STALL_LIMIT, _suite_limits.WALL_LIMIT) == (20.0, 45.0)
    result = limited.runpytest_subprocess("-p", "no:cacheprovider", "-o", "timeout=4", timeout=120)
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "FAILED test_hanging.py::test_waits_for_nothing_on_autojump*",
            "FAILED test_hanging.py::test_timer_loop_on_autojump*",
            "FAILED test_hanging.py::test_waits_for_nothing_on_the_real_clock*",
            "FAILED test_hanging.py::test_sync_waits_for_nothing*",
        ]
    )
    assert "hung: every task has been blocked for 1 s (wall) with no deadline pending" in out
    assert "hung: ran past 864000 s of virtual time on the autojump clock" in out
    assert "hung: still running after 2 s (wall)" in out
    assert "Timeout (>4.0s) from pytest-timeout" in out


SKIPPING_E2E = """
import pytest


@pytest.mark.e2e
def test_real_model():
    pytest.skip("no llama-server on this machine")


def test_other():
    pytest.skip("not an e2e test")
"""


@pytest.mark.parametrize(("required", "outcomes"), [("1", (1, 1)), ("0", (0, 2))])
def test_a_skipped_e2e_test_fails_when_e2e_is_required(
    limited: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    required: str,
    outcomes: tuple[int, int],
) -> None:
    monkeypatch.setenv("TRIO_AGENTS_E2E_REQUIRED", required)
    limited.makeconftest(
        "from _suite_limits import autojump_clock, pytest_runtest_call, pytest_runtest_makereport\n"
    )
    limited.makeini("[pytest]\nmarkers =\n    e2e: end-to-end\n")
    limited.makepyfile(test_hanging="", test_e2e=SKIPPING_E2E)
    result = limited.runpytest_subprocess("-p", "no:cacheprovider", "-rs", timeout=120)
    failed, skipped = outcomes
    result.assert_outcomes(failed=failed, skipped=skipped)
    if failed:
        result.stdout.fnmatch_lines(
            [
                "*skipped, but TRIO_AGENTS_E2E_REQUIRED=1 requires the end-to-end tests to run:*"
                "no llama-server on this machine*"
            ]
        )
