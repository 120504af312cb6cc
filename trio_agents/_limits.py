"""Usage limits and budgets shared by a tree of agents.

A :class:`Budget` is checked *before* each model call (and each spawn or delegation) and
charged *after* each response. A response that pushes usage past a token or cost limit is
kept (the work is done and paid for); the *next* check fails with
:class:`~trio_agents.BudgetExhausted`. A child budget can only shrink what its parent
allows: every check also asks the ancestors, and every charge is added to them.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import BudgetExhausted, InvalidArgumentError
from ._messages import Cost, Usage


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value < 0:
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be >= 0 or None, got {value!r}"
        )


@attrs.frozen(kw_only=True)
class UsageLimits:
    """Upper bounds for a run or a tree of runs; ``None`` means unlimited."""

    requests: int | None = attrs.field(default=None, validator=_non_negative)
    """Model requests."""
    input_tokens: int | None = attrs.field(default=None, validator=_non_negative)
    """Input tokens."""
    output_tokens: int | None = attrs.field(default=None, validator=_non_negative)
    """Output tokens."""
    total_tokens: int | None = attrs.field(default=None, validator=_non_negative)
    """All tokens."""
    cost: float | None = attrs.field(default=None, validator=_non_negative)
    """Money, in US dollars."""
    agents: int | None = attrs.field(default=None, validator=_non_negative)
    """Agents started (spawns and delegations)."""


# Shared frozen defaults: every delegation and every run with limits makes a Budget, and
# building these (six validators for UsageLimits) cost ~1.5 µs each time.
_NO_LIMITS = UsageLimits()
_NO_USAGE = Usage()
_NO_COST = Cost()


class Budget:
    """Usage charged against :class:`UsageLimits`, shared by every agent that holds it.

    :param limits: the limits of this budget.
    :param parent: the budget this one is carved from; checks and charges reach it too.
    """

    __slots__ = ("_agents", "_cost", "_limits", "_parent", "_usage")

    def __init__(self, limits: UsageLimits | None = None, *, parent: Budget | None = None) -> None:
        self._limits = limits if limits is not None else _NO_LIMITS
        self._parent = parent
        self._usage = _NO_USAGE
        self._cost = _NO_COST
        self._agents = 0

    @property
    def limits(self) -> UsageLimits:
        """This budget's own limits (ancestors may be stricter)."""
        return self._limits

    @property
    def parent(self) -> Budget | None:
        """The budget this one was carved from."""
        return self._parent

    @property
    def usage(self) -> Usage:
        """Usage charged to this budget and its children."""
        return self._usage

    @property
    def cost(self) -> Cost:
        """Cost charged to this budget and its children."""
        return self._cost

    @property
    def agents_started(self) -> int:
        """Agents started under this budget and its children."""
        return self._agents

    def child(self, limits: UsageLimits | None = None) -> Budget:
        """A budget for a sub-tree: it may only be *stricter* than this one."""
        return Budget(limits, parent=self)

    def _chain(self) -> list[Budget]:
        chain: list[Budget] = []
        node: Budget | None = self
        while node is not None:
            chain.append(node)
            node = node._parent
        return chain

    def check_request(self) -> None:
        """Raise :class:`BudgetExhausted` if one more model request is not allowed."""
        for budget in self._chain():
            budget._check_own(extra_requests=1)

    def check_spawn(self) -> None:
        """Raise :class:`BudgetExhausted` if one more agent may not start."""
        for budget in self._chain():
            lim = budget._limits
            if lim.agents is not None and budget._agents + 1 > lim.agents:
                raise BudgetExhausted(
                    f"agent budget exhausted: {budget._agents} of {lim.agents} agents started",
                    limit="agents",
                )

    def _check_own(self, *, extra_requests: int) -> None:
        lim, u = self._limits, self._usage
        if lim is _NO_LIMITS:  # nothing to check (the common case of a carved child)
            return
        checks: tuple[tuple[str, float | None, float, bool], ...] = (
            ("requests", lim.requests, u.requests, True),
            ("input_tokens", lim.input_tokens, u.input_tokens, False),
            ("output_tokens", lim.output_tokens, u.output_tokens, False),
            ("total_tokens", lim.total_tokens, u.total_tokens, False),
            ("cost", lim.cost, self._cost.total, False),
        )
        for name, limit, used, counts_next in checks:
            if limit is None:
                continue
            if (used + extra_requests > limit) if counts_next else (used >= limit):
                raise BudgetExhausted(
                    f"{name} budget exhausted: used {used:g} of {limit:g}", limit=name
                )

    def charge(self, usage: Usage, cost: Cost | None = None) -> None:
        """Add a response's usage (and cost) to this budget and every ancestor."""
        for budget in self._chain():
            # Usage() + usage == usage: a budget's first charge needs no addition.
            budget._usage = usage if budget._usage is _NO_USAGE else budget._usage + usage
            if cost is not None:
                budget._cost = cost if budget._cost is _NO_COST else budget._cost + cost

    def charge_spawn(self) -> None:
        """Count one started agent against this budget and every ancestor."""
        for budget in self._chain():
            budget._agents += 1

    def __repr__(self) -> str:
        return f"Budget(limits={self._limits!r}, usage={self._usage!r})"
