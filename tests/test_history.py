"""A request shares the agent's history instead of copying it (linear, not quadratic).

Counted, not timed: the references a request holds for its messages are measured with
``sys.getsizeof`` (a tuple of n messages holds n references, a shared view a constant few).
"""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import Agent, AssistantMessage, ModelRequest, UserMessage
from trio_agents._history import HistoryView
from trio_agents.testing import FunctionModel


def _messages(count: int) -> list[UserMessage]:
    return [UserMessage.text(f"m{i}") for i in range(count)]


async def test_a_2000_turn_conversation_copies_its_history_linearly() -> None:
    turns = 2_000
    model = FunctionModel(lambda request: "ok")
    agent = Agent(model, name="talker")
    for turn in range(turns):
        await agent.run(f"turn {turn}")
    assert len(model.requests) == turns
    # Each request sees the whole conversation so far: 2 messages per earlier turn, plus its own.
    assert [len(r.messages) for r in model.requests] == [2 * i + 1 for i in range(turns)]
    assert model.requests[-1].messages == agent.messages[:-1]
    held = sum(sys.getsizeof(r.messages) for r in model.requests)
    # Copying would hold sum(2i + 1) = turns**2 references (4,000,000 here): ~32 MB.
    # Sharing holds a constant per request.
    assert held <= 100 * turns, held


async def test_requests_keep_their_history_after_more_turns_and_clear_history() -> None:
    model = FunctionModel(lambda request: "ok")
    agent = Agent(model, name="talker")
    await agent.run("one")
    first = model.requests[0].messages
    assert first == (UserMessage.text("one"),)
    await agent.run("two")
    agent.clear_history()
    await agent.run("three")
    assert first == (UserMessage.text("one"),)
    assert len(model.requests[1].messages) == 3
    assert model.requests[2].messages == (UserMessage.text("three"),)
    assert isinstance(model.requests[1].messages[1], AssistantMessage)


def test_a_request_given_a_list_copies_it() -> None:
    given_messages = _messages(2)
    request = ModelRequest(messages=given_messages)
    given_messages.append(UserMessage.text("later"))
    assert request.messages == tuple(_messages(2))
    assert type(request.messages) is tuple


@given(st.integers(0, 12), st.data())
def test_a_view_reads_as_the_tuple_of_its_messages(total: int, data: st.DataObject) -> None:
    items = _messages(total)
    length = data.draw(st.integers(0, total))
    view = HistoryView(items, length)
    expected = tuple(items[:length])
    items.extend(_messages(3))  # appended later: not part of the view
    assert len(view) == length
    assert list(view) == list(expected)
    assert view == expected and expected == view
    assert hash(view) == hash(expected)
    assert ModelRequest(messages=view) == ModelRequest(messages=expected)
    assert repr(view) == repr(expected)
    index = data.draw(st.integers(-length - 2, length + 1))
    if -length <= index < length:
        assert view[index] == expected[index]
    else:
        with pytest.raises(IndexError, match=f"index {index} out of range for {length}"):
            view[index]
    start = data.draw(st.none() | st.integers(-total - 1, total + 1))
    stop = data.draw(st.none() | st.integers(-total - 1, total + 1))
    step = data.draw(st.none() | st.sampled_from([-2, -1, 1, 3]))
    assert view[start:stop:step] == expected[start:stop:step]
    assert view != (*expected, UserMessage.text("other"))


def test_a_view_longer_than_its_list_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 2, got 3"):
        HistoryView(_messages(2), 3)
