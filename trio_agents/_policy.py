"""Named checks run before every tool call: :class:`PolicyEngine` and :class:`PolicyDenied`.

Rules:

* Checks run in the order they were added; the first denial wins and the later checks do not
  run.
* A check is ``fn(call, ctx)``: it returns ``None`` or ``True`` to allow, ``False`` or a str
  (the reason) to deny. Anything else it returns, and any exception it raises, denies: the
  engine fails closed, with a reason naming the check and the exception. A check that raises
  :class:`~trio_agents.ToolDenied` denies with that exception's message as the reason.
  ``trio.Cancelled`` and other ``BaseException`` propagate untouched.
* A denial raises :class:`~trio_agents.ToolDenied` with the message
  ``"policy check '<name>': <reason>"`` (the agent shows the model
  ``"tool call denied: policy check '<name>': <reason>"``), after emitting a
  :class:`PolicyDenied` event to the engine's ``event_sink``.
* :meth:`PolicyEngine.limit_calls` counts the calls the whole engine allowed (every check
  passed), across every agent that shares the engine, whether or not the tool then succeeded.
  A call denied by any check is not counted.
* Checks are synchronous and must not block (the :class:`~trio_agents.ToolPolicy` protocol).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import trio

from ._errors import InvalidArgumentError, ToolDenied
from ._events import Event, EventSink
from ._messages import ToolCallBlock
from ._state import StateStore
from ._tools import ToolContext

PolicyCheck = Callable[[ToolCallBlock, ToolContext], "bool | str | None"]
"""A check function: ``None``/``True`` allows the call, ``False`` or a reason (str) denies it."""


@attrs.frozen(kw_only=True)
class PolicyDenied(Event):
    """A :class:`PolicyEngine` denied a tool call."""

    kind: ClassVar[str] = "policy_denied"
    tool: str
    """The tool that was called."""
    call_id: str = ""
    """The id of the denied call."""
    check: str
    """The name of the check that denied it."""
    reason: str
    """Why, as told to the model (without the check's name)."""


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"name must be a non-empty str (the check's name), got {name!r}")
    return name


def _check_tool(tool: object, argument: str = "tool") -> str:
    if not isinstance(tool, str) or not tool:
        raise InvalidArgumentError(
            f"{argument} must be a tool name or '*' for any tool, got {tool!r}"
        )
    return tool


def _applies(tool: str, call: ToolCallBlock) -> bool:
    return tool == "*" or call.name == tool


def _argument_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


@attrs.define(eq=False)
class _Check:
    name: str
    fn: Callable[[ToolCallBlock, ToolContext], object]
    on_allowed: Callable[[ToolCallBlock], None] | None = None


class PolicyEngine:
    """A :class:`~trio_agents.ToolPolicy` made of named checks.

    :param event_sink: receives a :class:`PolicyDenied` event for every denial (e.g. an
        :class:`EventLog`); ``None`` emits nothing.

    Add checks with :meth:`add_check` or the built-ins :meth:`deny_tool`,
    :meth:`deny_parameter`, :meth:`require_state` and :meth:`limit_calls`; each gets a name,
    unique in the engine, that denials report. Give the engine to agents as their ``policy``.
    """

    __slots__ = ("_approvals", "_checks", "_counts", "event_sink")

    def __init__(self, *, event_sink: EventSink | None = None) -> None:
        if event_sink is not None and not callable(event_sink):
            raise InvalidArgumentError(
                f"event_sink must be a callable taking an Event, or None; got {event_sink!r}"
            )
        self._checks: list[_Check] = []
        self._counts: dict[str, int] = {}
        self._approvals: frozenset[str] = frozenset()
        self.event_sink: EventSink | None = event_sink
        """Where :class:`PolicyDenied` events go."""

    # ------------------------------------------------------------------ building

    @property
    def checks(self) -> list[str]:
        """The names of the checks, in the order they run."""
        return [check.name for check in self._checks]

    def _require_free(self, name: str) -> None:
        if any(existing.name == name for existing in self._checks):
            raise InvalidArgumentError(
                f"a check named {name!r} already exists; check names must be unique "
                f"(existing: {', '.join(self.checks)})"
            )

    def _add(self, check: _Check) -> None:
        self._require_free(check.name)
        self._checks.append(check)

    def add_check(self, name: str, fn: PolicyCheck) -> None:
        """Add the check ``fn(call, ctx)`` (see the rules for what it returns) as ``name``.

        :raises InvalidArgumentError: ``name`` is empty or taken, or ``fn`` is not a
            synchronous callable.
        """
        _check_name(name)
        if not callable(fn):
            raise InvalidArgumentError(f"fn must be a callable fn(call, ctx), got {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise InvalidArgumentError(
                f"check {name!r}: fn must be synchronous (checks run before every tool call "
                "and must not block); got an async function"
            )
        self._add(_Check(name, fn))

    def require_approval(self, *tool_names: str) -> None:
        """Make every call to the tools ``tool_names`` (``"*"``: every tool) wait for a
        person's approval: the run stops with
        :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED` (the policy answers "ask"; see
        :meth:`needs_approval`). The checks still run when an approved call runs.

        :raises InvalidArgumentError: no tool name given, or one is not a non-empty str.
        """
        if not tool_names:
            raise InvalidArgumentError("require_approval() needs at least one tool name")
        names = frozenset(_check_tool(tool, "tool_names") for tool in tool_names)
        self._approvals = self._approvals | names

    def needs_approval(self, call: ToolCallBlock, agent: str) -> bool:
        """Whether ``call``, asked by the agent at path ``agent``, waits for a person."""
        approvals = self._approvals
        return bool(approvals) and (call.name in approvals or "*" in approvals)

    def deny_tool(self, name: str, *tool_names: str) -> None:
        """Deny every call to the tools ``tool_names``.

        :raises InvalidArgumentError: no tool name given, or one is not a non-empty str.
        """
        _check_name(name)
        if not tool_names:
            raise InvalidArgumentError(f"deny_tool({name!r}) needs at least one tool name")
        denied = frozenset(_check_tool(tool, "tool_names") for tool in tool_names)

        def deny(call: ToolCallBlock, ctx: ToolContext) -> str | None:
            return f"tool {call.name!r} is not allowed" if call.name in denied else None

        self._add(_Check(name, deny))

    def deny_parameter(
        self, name: str, tool: str, parameter: str, pattern: str | re.Pattern[str]
    ) -> None:
        """Deny calls of ``tool`` (``"*"``: any tool) whose ``parameter`` matches ``pattern``.

        The pattern is searched (:func:`re.search`, anywhere in the value) in the argument as
        it is when it is a str, and in its compact JSON text otherwise (so a pattern also
        catches the value inside a list). Calls without that argument are allowed.

        :raises InvalidArgumentError: ``pattern`` is not a valid regular expression.
        """
        _check_name(name)
        _check_tool(tool)
        if not isinstance(parameter, str) or not parameter:
            raise InvalidArgumentError(
                f"parameter must be a non-empty str (an argument name), got {parameter!r}"
            )
        if isinstance(pattern, str):
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise InvalidArgumentError(
                    f"pattern {pattern!r} is not a valid regular expression: {exc}"
                ) from None
        elif isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled = pattern
        else:
            raise InvalidArgumentError(
                f"pattern must be a str or a compiled str pattern, got {pattern!r}"
            )

        def deny(call: ToolCallBlock, ctx: ToolContext) -> str | None:
            if not _applies(tool, call) or parameter not in call.arguments:
                return None
            if compiled.search(_argument_text(call.arguments[parameter])) is None:
                return None
            return (
                f"argument {parameter!r} of tool {call.name!r} matches the forbidden "
                f"pattern {compiled.pattern!r}"
            )

        self._add(_Check(name, deny))

    def require_state(self, name: str, key: str, tool: str = "*") -> None:
        """Deny calls of ``tool`` (``"*"``: any tool) unless the tree's state has ``key``.

        The state is ``ctx.infra.state``; a call whose context has no
        :class:`StateStore` there is denied (fail closed).
        """
        _check_name(name)
        _check_tool(tool)
        if not isinstance(key, str):
            raise InvalidArgumentError(f"key must be a str (a state key), got {key!r}")

        def require(call: ToolCallBlock, ctx: ToolContext) -> str | None:
            if not _applies(tool, call):
                return None
            state = getattr(ctx.infra, "state", None)
            if not isinstance(state, StateStore):
                return (
                    f"tool {call.name!r} needs state key {key!r}, but the call has no shared "
                    "state (ctx.infra.state)"
                )
            if key in state:
                return None
            return f"tool {call.name!r} needs state key {key!r}, which is not set"

        self._add(_Check(name, require))

    def limit_calls(self, name: str, tool: str, max_calls: int) -> None:
        """Allow at most ``max_calls`` calls of ``tool`` (``"*"``: all tools together).

        Counts calls the engine allowed (see the rules); see :meth:`calls_allowed`.
        """
        _check_name(name)
        _check_tool(tool)
        if isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0:
            raise InvalidArgumentError(f"max_calls must be an int >= 0, got {max_calls!r}")
        self._require_free(name)
        counts = self._counts
        what = "tool calls" if tool == "*" else f"calls of tool {tool!r}"

        def limit(call: ToolCallBlock, ctx: ToolContext) -> str | None:
            if not _applies(tool, call) or counts[name] < max_calls:
                return None
            return f"the limit of {max_calls} {what} is reached"

        def count(call: ToolCallBlock) -> None:
            if _applies(tool, call):
                counts[name] += 1

        self._add(_Check(name, limit, count))
        counts[name] = 0

    def calls_allowed(self, name: str) -> int:
        """How many calls the :meth:`limit_calls` check ``name`` has counted.

        :raises InvalidArgumentError: there is no limit_calls check of that name.
        """
        if name not in self._counts:
            raise InvalidArgumentError(
                f"no limit_calls check named {name!r} "
                f"(limit_calls checks: {', '.join(self._counts) or 'none'})"
            )
        return self._counts[name]

    def remove_check(self, name: str) -> None:
        """Remove the check ``name``.

        :raises InvalidArgumentError: there is no check of that name.
        """
        for index, check in enumerate(self._checks):
            if check.name == name:
                del self._checks[index]
                self._counts.pop(name, None)
                return
        raise InvalidArgumentError(
            f"no check named {name!r} (checks: {', '.join(self.checks) or 'none'})"
        )

    # ------------------------------------------------------------------ the ToolPolicy protocol

    def check(self, call: ToolCallBlock, ctx: ToolContext) -> None:
        """Run the checks on ``call``; return to allow it, raise :class:`ToolDenied` to deny."""
        checks = tuple(self._checks)
        for check in checks:
            reason = _verdict(check, call, ctx)
            if reason is not None:
                self._deny(check.name, reason, call, ctx)
        for check in checks:
            if check.on_allowed is not None:
                check.on_allowed(call)

    def _deny(self, name: str, reason: str, call: ToolCallBlock, ctx: ToolContext) -> None:
        sink = self.event_sink
        if sink is not None:
            try:
                time = trio.current_time()
            except RuntimeError:
                time = 0.0
            sink(
                PolicyDenied(
                    time=time,
                    agent=ctx.agent,
                    tool=call.name,
                    call_id=call.id,
                    check=name,
                    reason=reason,
                )
            )
        raise ToolDenied(f"policy check {name!r}: {reason}")

    def __repr__(self) -> str:
        return f"<PolicyEngine checks={self.checks!r}>"


def _verdict(check: _Check, call: ToolCallBlock, ctx: ToolContext) -> str | None:
    """``None`` to allow, else the reason for denying."""
    try:
        outcome = check.fn(call, ctx)
    except ToolDenied as exc:
        return str(exc) or "denied"
    except Exception as exc:
        text = str(exc)
        return f"the check raised {type(exc).__name__}" + (f": {text}" if text else "")
    if outcome is None or outcome is True:
        return None
    if outcome is False:
        return "denied"
    if isinstance(outcome, str):
        return outcome or "denied"
    if inspect.iscoroutine(outcome):
        outcome.close()
    return (
        f"the check returned {type(outcome).__name__}; checks return None or True to allow, "
        "False or a reason (str) to deny"
    )
