"""Shared infrastructure of an agent tree: :class:`SharedInfra` and the services it bundles.

One :class:`SharedInfra` is shared by every agent of a tree:

* :attr:`~SharedInfra.state` — a :class:`StateStore` (key-value state with a transition log),
  reached by tools as ``ctx.infra.state``;
* :attr:`~SharedInfra.log` — an :class:`EventLog`, the agents' event sink;
* :attr:`~SharedInfra.policies` — a :class:`PolicyEngine`, the agents' tool policy;
* :attr:`~SharedInfra.budget` — an optional tree-wide :class:`~trio_agents.Budget`;
* :attr:`~SharedInfra.rate_limits` — a :class:`RateLimiter` per model id, applied by
  :meth:`SharedInfra.model_for`;
* :attr:`~SharedInfra.mailbox` — a :class:`Mailbox` (named bounded channels between agents).

The services live in their own modules (``_state``, ``_eventlog``, ``_policy``,
``_ratelimit``, ``_mailbox``); this module re-exports them.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._errors import InvalidArgumentError
from ._eventlog import EventLog, KindFilter, Span, Subscription
from ._limits import Budget
from ._mailbox import Mailbox, MailboxStatistics
from ._models import Model, check_model
from ._policy import PolicyCheck, PolicyDenied, PolicyEngine
from ._ratelimit import RateLimitedModel, RateLimiter, RateLimiterStatistics
from ._state import StateStore, StateTransition

__all__ = [
    "EventLog",
    "KindFilter",
    "Mailbox",
    "MailboxStatistics",
    "PolicyCheck",
    "PolicyDenied",
    "PolicyEngine",
    "RateLimitedModel",
    "RateLimiter",
    "RateLimiterStatistics",
    "SharedInfra",
    "Span",
    "StateStore",
    "StateTransition",
    "Subscription",
]


def _instance_of(cls: type, what: str) -> Any:
    def validate(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, cls):
            raise InvalidArgumentError(
                f"SharedInfra.{attribute.name} must be {what}, got {type(value).__name__}"
            )

    return validate


def _check_budget(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Budget):
        raise InvalidArgumentError(
            f"SharedInfra.budget must be a Budget or None, got {type(value).__name__}"
        )


def _check_rate_limits(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(limiter, RateLimiter) for key, limiter in value.items()
    ):
        raise InvalidArgumentError(
            "SharedInfra.rate_limits must be a dict of model id (str) -> RateLimiter, "
            f"got {value!r}"
        )


def _default_policies(infra: SharedInfra) -> PolicyEngine:
    # Defaults are made before validators run: a bad ``log`` is reported by its validator.
    log: object = infra.log
    return PolicyEngine(event_sink=log if isinstance(log, EventLog) else None)


@attrs.define(eq=False, kw_only=True)
class SharedInfra:
    """The services a tree of agents shares; ``SharedInfra()`` makes fresh, empty ones.

    Agents get it as ``infra`` (tools see it as ``ctx.infra``), :attr:`log` as their event
    sink, :attr:`policies` as their tool policy, :attr:`budget` as their budget, and their
    model through :meth:`model_for`. The default :attr:`policies` engine reports denials to
    :attr:`log`.
    """

    state: StateStore = attrs.field(
        factory=StateStore, validator=_instance_of(StateStore, "a StateStore")
    )
    """Key-value state shared by the tree."""
    log: EventLog = attrs.field(factory=EventLog, validator=_instance_of(EventLog, "an EventLog"))
    """The tree's event log."""
    policies: PolicyEngine = attrs.field(
        default=attrs.Factory(_default_policies, takes_self=True),
        validator=_instance_of(PolicyEngine, "a PolicyEngine"),
    )
    """Checks run before every tool call of the tree."""
    budget: Budget | None = attrs.field(default=None, validator=_check_budget)
    """The tree-wide usage budget, if any."""
    rate_limits: dict[str, RateLimiter] = attrs.field(factory=dict, validator=_check_rate_limits)
    """Rate limiters by model id (may be empty)."""
    mailbox: Mailbox = attrs.field(factory=Mailbox, validator=_instance_of(Mailbox, "a Mailbox"))
    """Named bounded channels between the tree's agents; give it to
    :class:`~trio_agents.AgentOrchestrator` as ``mailbox=`` to open one per agent."""

    def model_for(self, model: Model) -> Model:
        """``model`` behind the limiter registered for its :attr:`~Model.model_id`, if any.

        A model already behind that same limiter is returned as it is (never limited twice).

        :raises InvalidArgumentError: ``model`` is not a :class:`~trio_agents.Model`.
        """
        check_model(model)
        limiter = self.rate_limits.get(model.model_id)
        if limiter is None:
            return model
        if isinstance(model, RateLimitedModel) and model.limiter is limiter:
            return model
        return RateLimitedModel(model, limiter)
