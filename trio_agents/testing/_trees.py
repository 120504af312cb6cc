"""Declarative supervision trees and controllable agents for property tests.

:class:`AgentTree` describes a tree of agents with the supervision settings of each node;
:meth:`AgentTree.build` registers it on an :class:`~trio_agents.AgentOrchestrator`. The agents
that :func:`work_agent` builds answer each request as its text says (:class:`Work`), so a test
decides exactly when an agent fails, hangs or takes time: that is what lets
:class:`~trio_agents.testing.SupervisionReference` predict the tree.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from .._agent import Agent, RetryPolicy
from .._errors import AuthenticationError, InvalidArgumentError, ModelOverloaded
from .._messages import AssistantMessage, TextBlock, UserMessage
from .._models import Model, ModelRequest, StreamEvent
from .._orchestrator import AgentOrchestrator
from .._supervision import (
    Backoff,
    RestartLimit,
    RestartStrategy,
    RestartType,
    SupervisorAction,
    SupervisorPolicy,
)
from ._models import FunctionModel

__all__ = [
    "AgentTree",
    "TreeNode",
    "TreePolicy",
    "Work",
    "WorkItem",
    "WorkModel",
    "work_agent",
]


# --------------------------------------------------------------------------- trees


def _name(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value or "/" in value:
        raise InvalidArgumentError(
            f"TreeNode.name must be a non-empty str without '/'; got {value!r}"
        )


def _restarts(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"TreeNode.max_restarts must be an int >= 0; got {value!r}")


def _window(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InvalidArgumentError(
            "TreeNode.restart_window must be None (consecutive failures) or a number of "
            f"seconds > 0; got {value!r}"
        )


def _delay(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(
            f"TreeNode.{attribute.name} must be a finite number of seconds >= 0; got {value!r}"
        )


def _action(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, SupervisorAction):
        raise InvalidArgumentError(
            f"TreeNode.{attribute.name} must be a SupervisorAction (RESTART, STOP or "
            f"ESCALATE); got {value!r}"
        )


def _strategy(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, RestartStrategy):
        raise InvalidArgumentError(
            f"{type(instance).__name__}.{attribute.name} must be a RestartStrategy "
            f"(ONE_FOR_ONE, ONE_FOR_ALL or REST_FOR_ONE); got {value!r}"
        )


def _restart_type(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, RestartType):
        raise InvalidArgumentError(
            f"TreeNode.restart must be a RestartType (PERMANENT, TRANSIENT or TEMPORARY); "
            f"got {value!r}"
        )


def _supervisor(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, SupervisorPolicy):
        raise InvalidArgumentError(
            "AgentTree.supervisor must be None (each node's on_retryable/on_fatal) or a "
            f"SupervisorPolicy (an on_agent_error(name, error) method); got {value!r}"
        )


def _children(value: object) -> tuple[TreeNode, ...]:
    if isinstance(value, TreeNode):
        raise InvalidArgumentError("children must be a sequence of TreeNode; wrap one: (node,)")
    if not isinstance(value, Iterable):
        raise InvalidArgumentError(
            f"children must be a sequence of TreeNode; got {type(value).__name__}"
        )
    items: tuple[object, ...] = tuple(value)
    for index, item in enumerate(items):
        if not isinstance(item, TreeNode):
            raise InvalidArgumentError(
                f"children[{index}] must be a TreeNode; got {type(item).__name__}"
            )
    return items  # type: ignore[return-value]  # every item was checked


@attrs.frozen(kw_only=True)
class TreeNode:
    """One agent of an :class:`AgentTree` and how its supervisor treats it.

    The supervisor's policy (see :class:`TreePolicy`) answers :attr:`on_retryable` for an
    error whose ``retryable`` is true and :attr:`on_fatal` for any other error, including a
    child's escalated failure (:class:`~trio_agents.ChildFailed` is not retryable).
    """

    name: str = attrs.field(validator=_name)
    """The agent's name (unique in the tree)."""
    children: tuple[TreeNode, ...] = attrs.field(default=(), converter=_children)
    """The agents it supervises, in registration order."""
    max_restarts: int = attrs.field(default=3, validator=_restarts)
    """Its restart limit."""
    restart_window: float | None = attrs.field(default=None, validator=_window)
    """``None``: the limit counts consecutive failures; seconds: a sliding window."""
    backoff: float = attrs.field(default=0.0, validator=_delay)
    """Delay before its first restart in a row, doubling for each further one (no jitter)."""
    max_backoff: float = attrs.field(default=30.0, validator=_delay)
    """Upper bound of the backoff delay."""
    strategy: RestartStrategy = attrs.field(
        default=RestartStrategy.ONE_FOR_ONE, validator=_strategy
    )
    """Restart strategy for its children."""
    on_retryable: SupervisorAction = attrs.field(
        default=SupervisorAction.RESTART, validator=_action
    )
    """What its supervisor does when it fails with a retryable error."""
    on_fatal: SupervisorAction = attrs.field(default=SupervisorAction.STOP, validator=_action)
    """What its supervisor does when it fails with any other error."""
    restart: RestartType = attrs.field(default=RestartType.TRANSIENT, validator=_restart_type)
    """Its :class:`~trio_agents.RestartType`."""

    @property
    def limit(self) -> RestartLimit:
        """Its :class:`~trio_agents.RestartLimit`."""
        return RestartLimit(max_restarts=self.max_restarts, window=self.restart_window)

    @property
    def backoff_policy(self) -> Backoff:
        """Its :class:`~trio_agents.Backoff` (exponential, factor 2, no jitter)."""
        return Backoff(initial=self.backoff, factor=2.0, max_delay=self.max_backoff, jitter=False)

    def action_for(self, error: BaseException) -> SupervisorAction:
        """The action its supervisor asks for when it fails with ``error``."""
        return self.on_retryable if getattr(error, "retryable", False) else self.on_fatal

    def walk(self) -> Iterator[tuple[TreeNode, TreeNode | None]]:
        """This node and its descendants with their parents, depth first, in order."""
        stack: list[tuple[TreeNode, TreeNode | None]] = [(self, None)]
        while stack:
            node, parent = stack.pop()
            yield node, parent
            stack.extend((child, node) for child in reversed(node.children))


def _roots(value: object) -> tuple[TreeNode, ...]:
    roots = _children(value)
    seen: set[str] = set()
    for root in roots:
        for node, _ in root.walk():
            if node.name in seen:
                raise InvalidArgumentError(
                    f"agent name {node.name!r} appears more than once in the tree; "
                    "names must be unique"
                )
            seen.add(node.name)
    return roots


@attrs.frozen(kw_only=True)
class AgentTree:
    """A whole supervision tree: its top-level agents and the root's restart strategy."""

    roots: tuple[TreeNode, ...] = attrs.field(converter=_roots)
    """The top-level agents (supervised by the root), in registration order."""
    strategy: RestartStrategy = attrs.field(
        default=RestartStrategy.ONE_FOR_ONE, validator=_strategy
    )
    """Restart strategy of the root for the top-level agents."""
    supervisor: SupervisorPolicy | None = attrs.field(default=None, validator=_supervisor, eq=False)
    """The policy of the whole tree: ``None`` for :meth:`policy` (each node's
    :attr:`~TreeNode.on_retryable` / :attr:`~TreeNode.on_fatal`), or your own
    :class:`~trio_agents.SupervisorPolicy` (for example :class:`~trio_agents.DefaultSupervisor`)
    so that the harness tests the policy you run. It must decide from the agent's name and the
    error's type and attributes (it is asked again by the reference model with errors of the
    same types), and its answers must not depend on earlier calls."""

    def nodes(self) -> list[TreeNode]:
        """Every node, depth first, in registration order (parents before children)."""
        return [node for root in self.roots for node, _ in root.walk()]

    def names(self) -> list[str]:
        """Every agent name, in the order of :meth:`nodes`."""
        return [node.name for node in self.nodes()]

    def node(self, name: str) -> TreeNode:
        """The node called ``name``."""
        for node in self.nodes():
            if node.name == name:
                return node
        raise InvalidArgumentError(f"no agent {name!r} in the tree (agents: {self.names()})")

    def parent_of(self, name: str) -> str | None:
        """The parent's name; ``None`` for a top-level agent."""
        for root in self.roots:
            for node, parent in root.walk():
                if node.name == name:
                    return parent.name if parent is not None else None
        raise InvalidArgumentError(f"no agent {name!r} in the tree (agents: {self.names()})")

    def path_of(self, name: str) -> str:
        """The agent's path, e.g. ``"lead/researcher"``."""
        parts = [name]
        parent = self.parent_of(name)
        while parent is not None:
            parts.append(parent)
            parent = self.parent_of(parent)
        return "/".join(reversed(parts))

    def policy(self) -> TreePolicy:
        """The supervisor policy that applies every node's ``on_retryable``/``on_fatal``."""
        return TreePolicy(self)

    def build(
        self,
        factory: Callable[[str], Agent],
        **orchestrator_options: Any,
    ) -> AgentOrchestrator:
        """An orchestrator with this tree registered; ``factory(name)`` builds each agent.

        ``orchestrator_options`` go to :class:`~trio_agents.AgentOrchestrator` (e.g.
        ``event_sink``, ``rng``, ``channel_buffer``); ``supervisor`` defaults to
        :attr:`supervisor`, else :meth:`policy`, and ``strategy`` to :attr:`strategy`.
        """
        orchestrator_options.setdefault(
            "supervisor", self.supervisor if self.supervisor is not None else self.policy()
        )
        orchestrator_options.setdefault("strategy", self.strategy)
        orchestrator = AgentOrchestrator(**orchestrator_options)
        for root in self.roots:
            for node, parent in root.walk():
                options: dict[str, Any] = {
                    "max_restarts": node.max_restarts,
                    "restart_window": node.restart_window,
                    "backoff": node.backoff_policy,
                    "strategy": node.strategy,
                    "restart": node.restart,
                }
                build = _bind(factory, node.name)
                if parent is None:
                    orchestrator.add_agent(node.name, build, **options)
                else:
                    orchestrator.add_child(node.name, parent.name, build, **options)
        return orchestrator


def _bind(factory: Callable[[str], Agent], name: str) -> Callable[[], Agent]:
    def build() -> Agent:
        return factory(name)

    return build


class TreePolicy:
    """The supervisor policy of an :class:`AgentTree`: each node says what to do about it."""

    def __init__(self, tree: AgentTree) -> None:
        self._nodes = {node.name: node for node in tree.nodes()}

    def on_agent_error(self, name: str, error: BaseException) -> SupervisorAction:
        """The node's :attr:`~TreeNode.on_retryable` or :attr:`~TreeNode.on_fatal`;
        :attr:`~trio_agents.SupervisorAction.ESCALATE` for an agent not in the tree."""
        node = self._nodes.get(name)
        if node is None:
            return SupervisorAction.ESCALATE
        return node.action_for(error)

    def __repr__(self) -> str:
        return f"<TreePolicy {sorted(self._nodes)}>"


# --------------------------------------------------------------------------- work


class Work(enum.Enum):
    """What a request asks of a :func:`work_agent`."""

    OK = "ok"
    """Answer at once."""
    SLEEP = "sleep"
    """Answer after :attr:`WorkItem.seconds` on trio's clock."""
    HANG = "hang"
    """Never answer: wait until cancelled."""
    FAIL = "fail"
    """Fail with a retryable :class:`~trio_agents.ModelOverloaded`."""
    FATAL = "fatal"
    """Fail with a non-retryable :class:`~trio_agents.AuthenticationError`."""


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(f"WorkItem.seconds must be a finite number >= 0; got {value!r}")


@attrs.frozen(kw_only=True)
class WorkItem:
    """One request of a workload: which agent, what work, and its label."""

    agent: str
    """Name of the agent the request goes to."""
    work: Work = Work.OK
    """What the request asks for."""
    seconds: float = attrs.field(default=0.0, validator=_seconds)
    """Duration of a :attr:`Work.SLEEP` request."""
    label: str = ""
    """Free text put in the request, e.g. a request id (must not contain ``]``)."""

    @property
    def text(self) -> str:
        """The request text a :func:`work_model` understands, e.g. ``"[r7] sleep 2.0"``."""
        prefix = f"[{self.label}] " if self.label else ""
        if self.work is Work.SLEEP:
            return f"{prefix}sleep {float(self.seconds)!r}"
        return f"{prefix}{self.work.value}"


_WORK = re.compile(r"^(?:\[(?P<label>[^\]]*)\] )?(?P<work>[a-z]+)(?: (?P<seconds>\S+))?$")


def _parse_work(text: str) -> tuple[Work, float] | None:
    """``(work, seconds)`` for a request text made by :attr:`WorkItem.text`, else ``None``."""
    match = _WORK.match(text)
    if match is None:
        return None
    try:
        work = Work(match["work"])
        seconds = float(match["seconds"]) if match["seconds"] else 0.0
    except ValueError:
        return None
    return work, seconds


class WorkModel:
    """Wraps a model so that each request does what its text says (:class:`Work`).

    The first model call of a run reads the run's last user message: ``fail`` raises
    :class:`~trio_agents.ModelOverloaded`, ``fatal`` raises
    :class:`~trio_agents.AuthenticationError`, ``hang`` waits until cancelled, ``sleep N``
    waits ``N`` seconds on trio's clock and then asks ``inner``; ``ok`` (and any text that is
    not a work order) asks ``inner`` at once. Later calls of the same run (after tool results)
    always go to ``inner``, so an agent with tools runs its real loop.

    :param inner: the model that answers; by default one that says ``"<name> done"``.
    :param name: used in the default answer and the injected errors' messages.
    """

    def __init__(self, inner: Model | None = None, *, name: str = "agent") -> None:
        self._name = name
        self._inner: Model = inner if inner is not None else FunctionModel(lambda _: f"{name} done")

    @property
    def model_id(self) -> str:
        """``"work:"`` followed by the inner model's id."""
        return f"work:{self._inner.model_id}"

    @property
    def inner(self) -> Model:
        """The wrapped model."""
        return self._inner

    async def _before(self, request: ModelRequest) -> None:
        if not request.messages or not isinstance(request.messages[-1], UserMessage):
            return  # a later call of the run: the work was done by its first call
        parsed = _parse_work(_user_text(request.messages[-1]))
        if parsed is None:
            return
        work, seconds = parsed
        if work is Work.FAIL:
            await trio.lowlevel.checkpoint()
            raise ModelOverloaded(f"{self._name}: injected overload")
        if work is Work.FATAL:
            await trio.lowlevel.checkpoint()
            raise AuthenticationError(f"{self._name}: injected fatal error")
        if work is Work.HANG:
            await trio.sleep_forever()
        if work is Work.SLEEP and seconds > 0:
            await trio.sleep(seconds)

    async def request(self, request: ModelRequest) -> AssistantMessage:
        """Do the request's work, then let the inner model answer."""
        await self._before(request)
        return await self._inner.request(request)

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """Do the request's work, then stream the inner model's answer."""
        await self._before(request)
        async with self._inner.stream(request) as events:
            yield events

    def __repr__(self) -> str:
        return f"<WorkModel {self._name!r} inner={self._inner!r}>"


def _user_text(message: UserMessage) -> str:
    return "".join(b.text for b in message.content if isinstance(b, TextBlock))


def work_agent(name: str, model: Model | None = None) -> Agent:
    """An :class:`~trio_agents.Agent` on :class:`WorkModel` with its own retries off, so that
    an injected fault reaches the supervisor at once.

    :param name: the agent's name.
    :param model: the model that answers ``ok`` requests (default: ``"<name> done"``).
    """
    return Agent(WorkModel(model, name=name), name=name, retry=RetryPolicy(max_attempts=1))
