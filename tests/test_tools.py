from __future__ import annotations

import enum
import functools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Optional

import attrs
import pytest
import trio
import trio.testing

from trio_agents import (
    InvalidArgumentError,
    Tool,
    ToolCallBlock,
    ToolContext,
    ToolDefinition,
    ToolDenied,
    ToolError,
    ToolExecutor,
    ToolFinished,
    ToolPolicy,
    ToolResultBlock,
    Toolset,
    ToolStarted,
    ToolTimeout,
    combine_executors,
    execute_tool_calls,
    tool,
)
from trio_agents._events import Event

# --------------------------------------------------------------------------- fixtures


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@attrs.define
class Point:
    """A point on the plane.

    Second paragraph, not in the schema.
    """

    x: int
    y: int = 0


@attrs.define
class Route:
    name: str
    points: list[Point] = attrs.field(factory=list, metadata={"description": "the stops"})


@attrs.define
class Node:
    children: list[Node]


def _call(name: str, id: str = "c1", **arguments: Any) -> ToolCallBlock:
    return ToolCallBlock(id=id, name=name, arguments=arguments)


def _ctx(call: ToolCallBlock | None = None) -> ToolContext:
    return ToolContext(agent="lead", call=call or _call("x"))


async def _execute(executor: ToolExecutor, call: ToolCallBlock) -> ToolResultBlock:
    return await executor.execute(call, _ctx(call))


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


# --------------------------------------------------------------------------- schemas


def test_schema_primitives() -> None:
    @tool
    async def f(s: str, i: int, x: float, b: bool, n: None, a: Any) -> str:
        return ""

    assert f.parameters == _obj(
        {
            "s": {"type": "string"},
            "i": {"type": "integer"},
            "x": {"type": "number"},
            "b": {"type": "boolean"},
            "n": {"type": "null"},
            "a": {},
        },
        ["s", "i", "x", "b", "n", "a"],
    )
    assert f.name == "f"
    assert f.takes_context is False
    assert f.timeout is None
    assert f.definition() == ToolDefinition(name="f", description="", parameters=f.parameters)


def test_schema_optional_and_defaults() -> None:
    @tool
    async def f(
        a: int | None,
        b: int | None = None,
        c: str = "x",
        d: Optional[str] = None,  # noqa: UP045 - the old spelling must work too
        e: tuple[int, ...] = (1, 2),
    ) -> str:
        return ""

    nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert f.parameters == _obj(
        {
            "a": nullable_int,
            "b": {**nullable_int, "default": None},
            "c": {"type": "string", "default": "x"},
            "d": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
            "e": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
        },
        ["a"],
    )


def test_schema_enums_and_literals() -> None:
    @tool
    async def f(
        color: Color,
        level: Level,
        mode: Literal["fast", "slow"],
        mixed: Literal["a", 1],
        flag: Literal[True] = True,
        default_color: Color = Color.GREEN,
    ) -> str:
        return ""

    assert f.parameters == _obj(
        {
            "color": {"type": "string", "enum": ["red", "green"]},
            "level": {"type": "integer", "enum": [1, 2]},
            "mode": {"type": "string", "enum": ["fast", "slow"]},
            "mixed": {"enum": ["a", 1]},
            "flag": {"type": "boolean", "enum": [True], "default": True},
            "default_color": {"type": "string", "enum": ["red", "green"], "default": "green"},
        },
        ["color", "level", "mode", "mixed"],
    )


def test_schema_containers() -> None:
    @tool
    async def f(
        a: list[int],
        b: tuple[str, ...],
        c: Sequence[float],
        d: dict[str, int],
        e: Mapping[str, list[str]],
        g: list[Any],
    ) -> str:
        return ""

    assert f.parameters == _obj(
        {
            "a": {"type": "array", "items": {"type": "integer"}},
            "b": {"type": "array", "items": {"type": "string"}},
            "c": {"type": "array", "items": {"type": "number"}},
            "d": {"type": "object", "additionalProperties": {"type": "integer"}},
            "e": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
            "g": {"type": "array", "items": {}},
        },
        ["a", "b", "c", "d", "e", "g"],
    )


def test_schema_attrs_classes_and_unions() -> None:
    @tool
    async def f(route: Route, where: Point | str, start: Point | None = None) -> str:
        return ""

    point = {
        **_obj({"x": {"type": "integer"}, "y": {"type": "integer", "default": 0}}, ["x"]),
        "description": "A point on the plane.",
    }
    assert f.parameters == _obj(
        {
            "route": _obj(
                {
                    "name": {"type": "string"},
                    "points": {
                        "type": "array",
                        "items": point,
                        "description": "the stops",
                        "default": [],
                    },
                },
                ["name"],
            ),
            "where": {"anyOf": [point, {"type": "string"}]},
            "start": {"anyOf": [point, {"type": "null"}], "default": None},
        },
        ["route", "where"],
    )


def test_schema_annotated_description() -> None:
    @tool
    async def f(q: Annotated[str, "what to search for"], n: Annotated[int, "how many"] = 3) -> str:
        return ""

    assert f.parameters == _obj(
        {
            "q": {"type": "string", "description": "what to search for"},
            "n": {"type": "integer", "description": "how many", "default": 3},
        },
        ["q"],
    )


def test_schema_resolves_classes_local_to_a_function() -> None:
    @attrs.define
    class Local:
        v: int

    @tool
    async def f(item: Local) -> str:
        return str(item.v)

    assert f.parameters["properties"]["item"] == _obj({"v": {"type": "integer"}}, ["v"])


# --------------------------------------------------------------------------- docstrings


def test_description_from_google_docstring() -> None:
    @tool
    async def search(query: str, limit: int = 10) -> str:
        """Search the web
        for pages.

        Only the first paragraph is the description.

        Args:
            query: What to search for,
                in plain words.
            limit (int): How many results.

        Returns:
            The results.
        """
        return ""

    assert search.description == "Search the web for pages."
    assert search.parameters["properties"] == {
        "query": {"type": "string", "description": "What to search for, in plain words."},
        "limit": {"type": "integer", "description": "How many results.", "default": 10},
    }


def test_description_from_sphinx_docstring() -> None:
    @tool
    async def search(query: str, limit: int = 10) -> str:
        """Search the web.

        :param query: What to search for,
            in plain words.
        :param int limit: How many results.
        :returns: the results.
        """
        return ""

    assert search.description == "Search the web."
    assert search.parameters["properties"]["query"]["description"] == (
        "What to search for, in plain words."
    )
    assert search.parameters["properties"]["limit"]["description"] == "How many results."


def test_name_description_and_timeout_overrides() -> None:
    @tool(name="web_search", description="Look things up.", timeout=2.5)
    async def search(query: str) -> str:
        """Ignored."""
        return ""

    assert (search.name, search.description, search.timeout) == (
        "web_search",
        "Look things up.",
        2.5,
    )

    @tool()
    async def bare() -> str:
        return ""

    assert bare.parameters == _obj({}, [])


# --------------------------------------------------------------------------- misuse


def test_sync_function_is_rejected() -> None:
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidArgumentError, match=r"'.*add'.*async def"):
        tool(add)  # type: ignore[arg-type]


def test_async_generator_is_rejected() -> None:
    async def gen() -> Any:
        yield 1

    with pytest.raises(InvalidArgumentError, match=r"async generator.*async def"):
        tool(gen)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("set", r"parameter 'x' has an unsupported annotation set\[int\]; supported: "),
        ("bare_list", r"parameter 'x' has an unsupported annotation list: give the item type"),
        ("int_keys", r"parameter 'x' .*dict\[int, str\]: JSON object keys are strings"),
        ("fixed_tuple", r"parameter 'x' .*tuple\[int, str\].*tuple\[X, \.\.\.\]"),
        ("nested", r"parameter 'x' .*list\[set\[int\]\] \(because of set\[int\]\)"),
        ("recursive", r"parameter 'x' .*recursive attrs classes"),
        ("unannotated", r"parameter 'x' has no type annotation"),
        ("varargs", r"parameter 'rest': \*args and \*\*kwargs are not supported"),
        ("kwargs", r"parameter 'rest': \*args and \*\*kwargs are not supported"),
        ("late_context", r"parameter 'ctx': a ToolContext must be the first parameter"),
    ],
)
def test_unsupported_signatures_name_the_parameter(kind: str, match: str) -> None:
    async def set_(x: set[int]) -> str:
        return ""

    async def bare_list(x: list) -> str:  # type: ignore[type-arg]
        return ""

    async def int_keys(x: dict[int, str]) -> str:
        return ""

    async def fixed_tuple(x: tuple[int, str]) -> str:
        return ""

    async def nested(x: list[set[int]]) -> str:
        return ""

    async def recursive(x: Node) -> str:
        return ""

    async def unannotated(x) -> str:  # type: ignore[no-untyped-def]
        return ""

    async def varargs(*rest: int) -> str:
        return ""

    async def kwargs(**rest: int) -> str:
        return ""

    async def late_context(x: int, ctx: ToolContext) -> str:
        return ""

    functions: dict[str, Any] = {
        "set": set_,
        "bare_list": bare_list,
        "int_keys": int_keys,
        "fixed_tuple": fixed_tuple,
        "nested": nested,
        "recursive": recursive,
        "unannotated": unannotated,
        "varargs": varargs,
        "kwargs": kwargs,
        "late_context": late_context,
    }
    with pytest.raises(InvalidArgumentError, match=match):
        tool(functions[kind])


async def test_methods() -> None:
    class Counter:
        def __init__(self) -> None:
            self.total = 0

        async def add(self, n: int) -> str:
            """Add n."""
            self.total += n
            return str(self.total)

    counter = Counter()
    add = tool(counter.add)
    assert (add.name, add.description) == ("add", "Add n.")
    assert add.parameters == _obj({"n": {"type": "integer"}}, ["n"])
    assert await add.call({"n": 2}, _ctx()) == "2"
    with pytest.raises(InvalidArgumentError, match=r"parameter 'self'.*tool\(instance.method\)"):
        tool(Counter.add)


def test_invalid_tool_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="positive number of seconds"):
        tool(timeout=0)
    with pytest.raises(InvalidArgumentError, match="only positional argument"):
        tool("name")  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="name must be a non-empty str"):

        @tool(name="")
        async def f() -> str:
            return ""


def test_toolset_misuse() -> None:
    @tool
    async def a() -> str:
        return ""

    @tool(name="a")
    async def other() -> str:
        return ""

    async def plain() -> str:
        return ""

    with pytest.raises(InvalidArgumentError, match="duplicate tool name 'a'"):
        Toolset([a, other])
    with pytest.raises(InvalidArgumentError, match=r"tools\[1\] must be a Tool.*@trio_agents.tool"):
        Toolset([a, plain])  # type: ignore[list-item]
    with pytest.raises(InvalidArgumentError, match=r"wrap one tool: \[tool\]"):
        Toolset(a)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="timeout must be a positive number"):
        Toolset([a], timeout=-1)


def test_toolset_container_protocol() -> None:
    @tool
    async def a() -> str:
        return ""

    @tool
    async def b() -> str:
        return ""

    toolset = Toolset([a, b])
    assert len(toolset) == 2
    assert list(toolset) == [a, b]
    assert "a" in toolset
    assert b in toolset
    assert "c" not in toolset
    assert 3 not in toolset
    assert toolset.get("a") is a
    assert toolset.get("c") is None
    assert [d.name for d in toolset.definitions()] == ["a", "b"]
    assert isinstance(toolset, ToolExecutor)


# --------------------------------------------------------------------------- calling


async def test_context_injection() -> None:
    seen: list[ToolContext] = []

    @tool
    async def whoami(ctx: ToolContext, greeting: str) -> str:
        seen.append(ctx)
        return f"{greeting} {ctx.agent} {ctx.deps} {ctx.infra}"

    assert whoami.takes_context is True
    assert whoami.parameters == _obj({"greeting": {"type": "string"}}, ["greeting"])
    call = _call("whoami", greeting="hi")
    [result] = await execute_tool_calls(
        Toolset([whoami]), [call], agent="lead/researcher", deps="DEPS", infra="INFRA"
    )
    assert result == ToolResultBlock(
        tool_call_id="c1", content="hi lead/researcher DEPS INFRA", tool_name="whoami"
    )
    assert seen[0].call is call


async def test_call_converts_arguments() -> None:
    received: dict[str, Any] = {}

    @tool
    async def f(
        color: Color,
        ratio: float,
        count: int,
        tags: tuple[str, ...],
        route: Route,
        where: int | str,
        maybe: Point | None = None,
    ) -> str:
        received.update(
            color=color, ratio=ratio, count=count, tags=tags, route=route, where=where, maybe=maybe
        )
        return "ok"

    result = await f.call(
        {
            "color": "green",
            "ratio": 1,
            "count": 3.0,
            "tags": ["a", "b"],
            "route": {"name": "r", "points": [{"x": 1}]},
            "where": "here",
        },
        _ctx(),
    )
    assert result == "ok"
    assert received == {
        "color": Color.GREEN,
        "ratio": 1.0,
        "count": 3,
        "tags": ("a", "b"),
        "route": Route(name="r", points=[Point(1, 0)]),
        "where": "here",
        "maybe": None,
    }
    assert type(received["ratio"]) is float
    assert type(received["count"]) is int


async def test_return_values_are_encoded() -> None:
    @tool
    async def give(kind: str) -> Any:
        return {
            "str": "plain text",
            "dict": {"a": [1, 2], "é": None},
            "attrs": Route(name="r", points=[Point(1, 2)]),
            "none": None,
            "enum": Color.RED,
            "bad": object(),
        }[kind]

    toolset = Toolset([give])
    contents = [
        (await _execute(toolset, _call("give", kind=kind))).content
        for kind in ("str", "dict", "attrs", "none", "enum")
    ]
    assert contents == [
        "plain text",
        '{"a": [1, 2], "é": null}',
        '{"name": "r", "points": [{"x": 1, "y": 2}]}',
        "null",
        '"red"',
    ]
    bad = await _execute(toolset, _call("give", kind="bad"))
    assert bad.is_error
    assert bad.content.startswith("tool 'give' returned a object that cannot be encoded as JSON")


async def test_hand_built_tool() -> None:
    async def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    async def typed(ctx: ToolContext, n: int, anything) -> str:  # type: ignore[no-untyped-def]
        return f"{ctx.agent} {n * 2} {anything!r}"

    loose = Tool(name="echo", description="", parameters={"type": "object"}, function=echo)
    strict = Tool(name="typed", description="", parameters={}, function=typed, takes_context=True)
    toolset = Toolset([loose, strict])
    assert (await _execute(toolset, _call("echo", a=1, b="x"))).content == '{"a": 1, "b": "x"}'
    assert (await _execute(toolset, _call("typed", n=2, anything=[1]))).content == "lead 4 [1]"
    wrong = await _execute(toolset, _call("typed", n="2", anything=None, extra=1))
    assert wrong.content == (
        "invalid arguments for tool 'typed': argument 'n': expected int, got '2'; "
        "unexpected argument 'extra' (accepted arguments: 'n', 'anything')"
    )
    with pytest.raises(InvalidArgumentError, match="parameters must be a dict"):
        Tool(name="x", description="", parameters=[], function=echo)  # type: ignore[arg-type]


async def test_partial_and_positional_only() -> None:
    async def scale(factor: int, /, value: float, offset: float = 0.0) -> str:
        return str(factor * value + offset)

    doubled = tool(functools.partial(scale, 2), name="double")
    assert doubled.parameters == _obj(
        {"value": {"type": "number"}, "offset": {"type": "number", "default": 0.0}}, ["value"]
    )
    assert await doubled.call({"value": 1.5}, _ctx()) == "3.0"

    positional = tool(scale)
    assert await positional.call({"factor": 3, "value": 1}, _ctx()) == "3.0"


# --------------------------------------------------------------------------- error results


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "missing required argument 'n'"),
        ({"n": 1, "y": 2}, "unexpected argument 'y' (accepted arguments: 'n', 'color', 'mode')"),
        ({"n": "abc"}, "argument 'n': expected int, got 'abc'"),
        ({"n": True}, "argument 'n': expected int, got True"),
        ({"n": 1.5}, "argument 'n': expected int, got 1.5"),
        ({"n": 1, "color": "blue"}, "argument 'color': expected one of 'red', 'green', got 'blue'"),
        (
            {"n": 1, "mode": "medium"},
            "argument 'mode': expected one of 'fast', 'slow', got 'medium'",
        ),
        ({"n": 1, "mode": None}, "argument 'mode': expected one of 'fast', 'slow', got None"),
        (
            {"y": 1, "n": "x"},
            "argument 'n': expected int, got 'x'; unexpected argument 'y' "
            "(accepted arguments: 'n', 'color', 'mode')",
        ),
    ],
)
async def test_validation_errors_are_readable(arguments: dict[str, Any], message: str) -> None:
    ran = False

    @tool
    async def f(n: int, color: Color = Color.RED, mode: Literal["fast", "slow"] = "fast") -> str:
        nonlocal ran
        ran = True
        return ""

    result = await _execute(Toolset([f]), _call("f", **arguments))
    assert result == ToolResultBlock(
        tool_call_id="c1",
        content=f"invalid arguments for tool 'f': {message}",
        is_error=True,
        tool_name="f",
    )
    assert not ran


async def test_nested_validation_errors_give_the_path() -> None:
    @tool
    async def f(
        route: Route,
        counts: dict[str, list[int]],
        maybe: int | None = None,
        items: Sequence[str] = (),
    ) -> str:
        return ""

    result = await _execute(
        Toolset([f]),
        _call(
            "f",
            route={"points": [{"x": 1, "z": 0}, {"y": "a"}, 5]},
            counts={"k": [1, "x"]},
            maybe="no",
            items="abc",
        ),
    )
    assert result.is_error
    assert result.content.split(": ", 1)[1].split("; ") == [
        "argument 'route': missing required field 'name'",
        "argument 'route.points[0]': unexpected field 'z'",
        "argument 'route.points[1]': missing required field 'x'",
        "argument 'route.points[1].y': expected int, got 'a'",
        "argument 'route.points[2]': expected object (Point), got 5",
        "argument 'counts['k'][1]': expected int, got 'x'",
        "argument 'maybe': expected int or None, got 'no'",
        "argument 'items': expected list, got 'abc'",
    ]


async def test_invalid_json_arguments() -> None:
    @tool
    async def f(n: int) -> str:
        return ""

    toolset = Toolset([f])
    bad = await _execute(toolset, ToolCallBlock(id="c1", name="f", raw_arguments='{"n": 1'))
    assert bad.is_error
    assert bad.content == (
        "invalid JSON arguments for tool 'f': Expecting ',' delimiter: line 1 column 8 (char 7); "
        "send the arguments as one JSON object"
    )
    not_object = await _execute(toolset, ToolCallBlock(id="c1", name="f", raw_arguments="[1]"))
    assert not_object.content == (
        "invalid JSON arguments for tool 'f': expected a JSON object, got list; "
        "send the arguments as one JSON object"
    )


async def test_unknown_tool_lists_available_tools() -> None:
    @tool
    async def search() -> str:
        return ""

    @tool
    async def fetch() -> str:
        return ""

    result = await _execute(Toolset([search, fetch]), _call("browse"))
    assert result == ToolResultBlock(
        tool_call_id="c1",
        content="unknown tool 'browse'; available tools: search, fetch",
        is_error=True,
        tool_name="browse",
    )
    empty = await _execute(Toolset(), _call("browse"))
    assert empty.content == "unknown tool 'browse'; no tools are available"


async def test_tool_exceptions_become_error_results() -> None:
    @tool
    async def clean() -> str:
        raise ToolError("no such page; try another URL")

    @tool
    async def crash() -> str:
        raise ValueError("bad value")

    @tool
    async def silent() -> str:
        raise RuntimeError

    @tool
    async def grouped() -> str:
        async def fail() -> None:
            raise ToolError("inner failure")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(fail)
        return ""

    toolset = Toolset([clean, crash, silent, grouped])
    contents = {
        name: (await _execute(toolset, _call(name))).content
        for name in ("clean", "crash", "silent", "grouped")
    }
    assert contents == {
        "clean": "no such page; try another URL",
        "crash": "tool 'crash' raised ValueError: bad value",
        "silent": "tool 'silent' raised RuntimeError",
        "grouped": "inner failure",
    }


async def test_base_exceptions_propagate() -> None:
    @tool
    async def interrupt() -> str:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await _execute(Toolset([interrupt]), _call("interrupt"))
    with pytest.raises(KeyboardInterrupt):
        await execute_tool_calls(Toolset([interrupt]), [_call("interrupt")], agent="a")


# --------------------------------------------------------------------------- timeouts


async def _sleeper(seconds: float) -> str:
    await trio.sleep(seconds)
    return f"slept {seconds:g}"


async def test_per_tool_timeout(autojump_clock: trio.testing.MockClock) -> None:
    slow = tool(name="slow", timeout=5)(_sleeper)
    start = trio.current_time()
    result = await _execute(Toolset([slow]), _call("slow", seconds=10))
    assert trio.current_time() - start == pytest.approx(5)
    assert result == ToolResultBlock(
        tool_call_id="c1",
        content="tool 'slow' timed out after 5 s",
        is_error=True,
        tool_name="slow",
    )
    fast = await _execute(Toolset([slow]), _call("slow", seconds=1))
    assert fast.content == "slept 1"
    with pytest.raises(ToolTimeout, match="timed out after 5 s"):
        await slow.call({"seconds": 10}, _ctx())


async def test_toolset_default_timeout(autojump_clock: trio.testing.MockClock) -> None:
    plain = tool(name="plain")(_sleeper)
    own = tool(name="own", timeout=5)(_sleeper)
    toolset = Toolset([plain, own], timeout=3)
    start = trio.current_time()
    result = await _execute(toolset, _call("plain", seconds=10))
    assert trio.current_time() - start == pytest.approx(3)
    assert result.content == "tool 'plain' timed out after 3 s"
    start = trio.current_time()
    result = await _execute(toolset, _call("own", seconds=10))
    assert trio.current_time() - start == pytest.approx(5)
    assert result.content == "tool 'own' timed out after 5 s"
    assert toolset.timeout == 3


# --------------------------------------------------------------------------- one turn

sleeper = tool(name="sleep")(_sleeper)


async def test_calls_run_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    results = await execute_tool_calls(
        Toolset([sleeper]),
        [_call("sleep", "a", seconds=10), _call("sleep", "b", seconds=10)],
        agent="lead",
    )
    assert trio.current_time() - start == pytest.approx(10)
    assert [r.content for r in results] == ["slept 10", "slept 10"]


async def test_limiter_caps_concurrency(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    results = await execute_tool_calls(
        Toolset([sleeper]),
        [_call("sleep", "a", seconds=10), _call("sleep", "b", seconds=10)],
        agent="lead",
        limiter=trio.CapacityLimiter(1),
    )
    assert trio.current_time() - start == pytest.approx(20)
    assert [r.tool_call_id for r in results] == ["a", "b"]


async def test_results_come_back_in_call_order(autojump_clock: trio.testing.MockClock) -> None:
    finished: list[str] = []

    @tool
    async def work(ctx: ToolContext, seconds: float) -> str:
        await trio.sleep(seconds)
        finished.append(ctx.call.id)
        return ctx.call.id

    calls = [_call("work", "slow", seconds=5), _call("work", "x", seconds=0), _call("nope", "u")]
    results = await execute_tool_calls(Toolset([work]), calls, agent="lead")
    assert finished == ["x", "slow"]
    assert [(r.tool_call_id, r.content, r.is_error) for r in results] == [
        ("slow", "slow", False),
        ("x", "x", False),
        ("u", "unknown tool 'nope'; available tools: work", True),
    ]


async def test_no_calls() -> None:
    assert await execute_tool_calls(Toolset(), [], agent="lead") == []


class _DenyDelete:
    def check(self, call: ToolCallBlock, ctx: ToolContext) -> None:
        if call.name == "delete":
            raise ToolDenied(f"{ctx.agent} may not delete")


class _Broken:
    def check(self, call: ToolCallBlock, ctx: ToolContext) -> None:
        raise KeyError("state")


class _Async:
    async def check(self, call: ToolCallBlock, ctx: ToolContext) -> None:
        return None


async def test_policy_denial() -> None:
    ran: list[str] = []

    @tool
    async def delete() -> str:
        ran.append("delete")
        return "deleted"

    @tool
    async def read() -> str:
        ran.append("read")
        return "read"

    assert isinstance(_DenyDelete(), ToolPolicy)
    results = await execute_tool_calls(
        Toolset([delete, read]),
        [_call("delete", "d"), _call("read", "r")],
        agent="lead",
        policy=_DenyDelete(),
    )
    assert results == [
        ToolResultBlock(
            tool_call_id="d",
            content="tool call denied: lead may not delete",
            is_error=True,
            tool_name="delete",
        ),
        ToolResultBlock(tool_call_id="r", content="read", tool_name="read"),
    ]
    assert ran == ["read"]


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (_Broken(), "policy check raised KeyError: 'state'"),
        (
            _Async(),
            "the policy's check() returned an awaitable; ToolPolicy.check must be synchronous",
        ),
    ],
)
async def test_broken_policy_fails_closed(policy: Any, reason: str) -> None:
    ran = False

    @tool
    async def read() -> str:
        nonlocal ran
        ran = True
        return "read"

    [result] = await execute_tool_calls(Toolset([read]), [_call("read")], agent="a", policy=policy)
    assert result.is_error
    assert result.content == f"tool call denied: {reason}"
    assert not ran


async def test_events(autojump_clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    calls = [
        _call("sleep", "a", seconds=3),
        _call("delete", "d"),
        _call("sleep", "b", seconds=1),
    ]

    @tool
    async def delete() -> str:
        return ""

    t0 = trio.current_time()
    results = await execute_tool_calls(
        Toolset([sleeper, delete]),
        calls,
        agent="lead",
        policy=_DenyDelete(),
        event_sink=events.append,
    )
    assert events == [
        ToolStarted(time=t0, agent="lead", call=calls[0]),
        ToolStarted(time=t0, agent="lead", call=calls[1]),
        ToolFinished(time=t0, agent="lead", result=results[1], duration=0.0),
        ToolStarted(time=t0, agent="lead", call=calls[2]),
        ToolFinished(time=t0 + 1, agent="lead", result=results[2], duration=1.0),
        ToolFinished(time=t0 + 3, agent="lead", result=results[0], duration=3.0),
    ]

    events.clear()
    t1 = trio.current_time()
    [single] = await execute_tool_calls(
        Toolset([sleeper]), [calls[0]], agent="solo", event_sink=events.append
    )
    assert events == [
        ToolStarted(time=t1, agent="solo", call=calls[0]),
        ToolFinished(time=t1 + 3, agent="solo", result=single, duration=3.0),
    ]


async def test_limiter_admits_calls_in_order(autojump_clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    calls = [_call("sleep", str(i), seconds=1) for i in range(4)]
    await execute_tool_calls(
        Toolset([sleeper]),
        calls,
        agent="lead",
        limiter=trio.CapacityLimiter(2),
        event_sink=events.append,
    )
    started = [(e.call.id, e.time) for e in events if isinstance(e, ToolStarted)]
    t0 = started[0][1]
    assert started == [("0", t0), ("1", t0), ("2", t0 + 1), ("3", t0 + 1)]


@pytest.mark.parametrize("n_calls", [1, 3])
async def test_cancelling_the_enclosing_scope_cancels_every_tool(n_calls: int) -> None:
    running: list[str] = []
    cancelled: list[str] = []
    outcome: list[BaseException] = []
    events: list[Event] = []

    @tool
    async def block(ctx: ToolContext) -> str:
        running.append(ctx.call.id)
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(ctx.call.id)
            raise

    calls = [_call("block", str(i)) for i in range(n_calls)]

    async def run_turn() -> None:
        try:
            await execute_tool_calls(Toolset([block]), calls, agent="a", event_sink=events.append)
        except BaseException as exc:
            outcome.append(exc)
            raise

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_turn)
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(running) == [c.id for c in calls]
            scope.cancel(reason="test")
    assert scope.cancelled_caught
    assert sorted(cancelled) == [c.id for c in calls]
    assert len(outcome) == 1
    assert isinstance(outcome[0], trio.Cancelled)
    finished = [e for e in events if isinstance(e, ToolFinished)]
    assert sorted(e.result.tool_call_id for e in finished) == [c.id for c in calls]
    assert all(e.result.content == "tool 'block' was cancelled" for e in finished)


async def test_executor_exception_fails_the_turn_fast() -> None:
    cancelled = False

    class FailFast:
        def definitions(self) -> Sequence[ToolDefinition]:
            return [ToolDefinition(name="boom"), ToolDefinition(name="wait")]

        async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
            nonlocal cancelled
            if call.name == "boom":
                await trio.testing.wait_all_tasks_blocked()
                raise RuntimeError("specialist failed")
            try:
                await trio.sleep_forever()
            finally:
                cancelled = True

    with pytest.raises(RuntimeError, match="specialist failed"):
        await execute_tool_calls(FailFast(), [_call("wait", "w"), _call("boom", "b")], agent="a")
    assert cancelled


# --------------------------------------------------------------------------- combining


async def test_combine_executors_routes_by_name() -> None:
    @tool
    async def search() -> str:
        return "searched"

    @tool
    async def fetch() -> str:
        return "fetched"

    class Custom:
        def definitions(self) -> Sequence[ToolDefinition]:
            return [ToolDefinition(name="custom")]

        async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
            return ToolResultBlock(tool_call_id=call.id, content="custom", tool_name=call.name)

    combined = combine_executors(Toolset([search]), Toolset([fetch]), Custom())
    assert isinstance(combined, ToolExecutor)
    assert [d.name for d in combined.definitions()] == ["search", "fetch", "custom"]
    results = await execute_tool_calls(
        combined, [_call("fetch", "1"), _call("custom", "2"), _call("search", "3")], agent="a"
    )
    assert [r.content for r in results] == ["fetched", "custom", "searched"]
    unknown = await _execute(combined, _call("browse"))
    assert unknown.is_error
    assert unknown.content == "unknown tool 'browse'; available tools: search, fetch, custom"


def test_combine_executors_rejects_duplicates_and_non_executors() -> None:
    @tool
    async def search() -> str:
        return ""

    with pytest.raises(InvalidArgumentError, match="tool 'search' is defined by more than one"):
        combine_executors(Toolset([search]), Toolset([search]))
    with pytest.raises(InvalidArgumentError, match=r"executors\[1\] must be a ToolExecutor"):
        combine_executors(Toolset([search]), object())  # type: ignore[arg-type]


async def test_an_annotated_typeddict_parameter_is_validated_and_structured() -> None:
    from typing import TypedDict

    class Place(TypedDict):
        name: str

    seen: list[object] = []

    async def visit(place: Annotated[Place, "Where to go."]) -> str:
        seen.append(place)
        return place["name"]

    visit_tool = tool(visit, name="visit", description="Visit.")
    assert visit_tool.parameters["properties"]["place"]["description"] == "Where to go."
    ctx = _ctx(_call("visit"))
    assert await visit_tool.call({"place": {"name": "Oslo"}}, ctx) == "Oslo"
    assert seen == [{"name": "Oslo"}]
    with pytest.raises(ToolError, match="argument 'place'"):
        await visit_tool.call({"place": {"nom": "Oslo"}}, ctx)
