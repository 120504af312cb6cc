"""The demo on a real model: answers capped, calls and the whole run bounded, and a slow call
reported on stderr every few seconds."""

from __future__ import annotations

import argparse
import io
import math

import pytest
import trio
import trio.testing

from trio_agents import ModelRequest, ModelSettings, ModelTimeout, TextBlock, UserMessage
from trio_agents.__main__ import main
from trio_agents._demo_limits import CallLimits, CallProgress, LimitedModel
from trio_agents.testing import FunctionModel

REQUEST = ModelRequest(messages=[UserMessage((TextBlock("hi"),))])


def slow_model(seconds: float, seen: list[ModelRequest]) -> FunctionModel:
    async def answer(request: ModelRequest) -> str:
        seen.append(request)
        await trio.sleep(seconds)
        return "done"

    return FunctionModel(answer, model_id="slow")


async def test_slow_calls_are_reported_every_few_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    err = io.StringIO()
    progress = CallProgress(err, every=5)
    seen: list[ModelRequest] = []
    lead = LimitedModel(slow_model(12, seen), "lead", CallLimits(max_tokens=64), progress)
    quick = LimitedModel(slow_model(3, seen), "worker", CallLimits(max_tokens=64), progress)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress.serve)
        async with trio.open_nursery() as calls:
            calls.start_soon(lead.request, REQUEST)
            calls.start_soon(quick.request, REQUEST)
        nursery.cancel_scope.cancel()
    # The 3 s call never shows; the 12 s one shows at 5 s and 10 s, then nothing more.
    assert err.getvalue().splitlines() == [
        "... waiting for the model: agent lead, 5 s so far",
        "... waiting for the model: agent lead, 10 s so far",
    ]
    assert [r.settings.max_tokens for r in seen] == [64, 64]


async def test_a_request_keeps_its_own_token_cap_and_none_means_no_cap() -> None:
    seen: list[ModelRequest] = []
    model = LimitedModel(slow_model(0, seen), "a", CallLimits(max_tokens=64), None)
    own = ModelRequest(messages=REQUEST.messages, settings=ModelSettings(max_tokens=9))
    await model.request(own)
    await LimitedModel(slow_model(0, seen), "a", CallLimits(max_tokens=None), None).request(REQUEST)
    assert [r.settings.max_tokens for r in seen] == [9, None]


async def test_a_call_past_its_timeout_fails_as_a_model_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    progress = CallProgress(io.StringIO())
    model = LimitedModel(slow_model(math.inf, []), "lead", CallLimits(call_timeout=30), progress)
    with pytest.raises(ModelTimeout, match=r"agent lead no answer within 30 s \(--call-timeout\)"):
        await model.request(REQUEST)
    assert trio.current_time() == 30
    assert progress.lines(1000.0) == []  # the failed call is no longer in flight


def test_real_model_limits_need_model(capsys: pytest.CaptureFixture[str]) -> None:
    for flag, value in [("--max-tokens", "10"), ("--timeout", "5"), ("--call-timeout", "5")]:
        with pytest.raises(SystemExit) as info:
            main(["demo", flag, value])
        assert info.value.code == 2
        assert f"{flag} needs --model" in capsys.readouterr().err
    for flag, value in [("--max-tokens", "0"), ("--timeout", "-1"), ("--progress-every", "x")]:
        with pytest.raises(SystemExit) as info:
            main(["demo", "--model", "openai:m", flag, value])
        assert info.value.code == 2
        assert f"argument {flag}: expected" in capsys.readouterr().err


async def test_the_whole_demo_stops_at_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from trio_agents.__main__ import _run

    progress = CallProgress(io.StringIO(), every=5)
    args = argparse.Namespace(seed=0, quiet=True, progress=progress, live=False)
    limits = CallLimits(call_timeout=math.inf)
    slow = slow_model(math.inf, [])
    finished = await _run(args, lambda name: LimitedModel(slow, name, limits, progress), 60)
    assert finished is False
    assert trio.current_time() == 60
    assert progress.lines(trio.current_time()) == []  # the cancelled call is not in flight


def test_timeout_message_and_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import trio_agents.__main__ as cli

    async def never_done(*args: object) -> bool:
        await trio.lowlevel.checkpoint()
        return False

    monkeypatch.setattr(cli, "_run", never_done)
    with pytest.raises(SystemExit) as info:
        main(["demo", "--model", "openai:m", "--base-url", "http://127.0.0.1:1/v1", "--timeout=7"])
    assert info.value.code == 1
    assert capsys.readouterr().err.endswith("demo: stopped: not done within --timeout 7 s\n")
