"""The one error hierarchy of trio_agents.

Every error says whether retrying could succeed (:attr:`AgentError.retryable`) and may
carry :attr:`AgentError.retry_after`. Misuse of the API raises a :class:`UsageError`
at once, with a message naming the argument and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

# At import time, not in info(): an import statement in a function costs ~1 µs per call, and
# info() runs for every failed run (restarts, failed delegations). _messages, a lower layer,
# imports nothing from trio_agents, so there is no cycle.
from ._messages import ErrorInfo

if TYPE_CHECKING:
    from ._delegation import DelegationRecord
    from ._messages import AgentResult


class AgentError(Exception):
    """Base class of every error trio_agents raises on purpose.

    :param message: what went wrong.
    :param retry_after: seconds the provider asked us to wait before retrying, if it said.
    :param result: the partial :class:`~trio_agents.AgentResult` of the run that failed, when
        the error ended a run (transcript and usage so far).
    """

    retryable: ClassVar[bool] = False
    """Whether retrying the same request could succeed."""

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        result: AgentResult | None = None,
    ) -> None:
        super().__init__(message or self.__class__.__doc__ or self.__class__.__name__)
        self.message: str = message or (self.__class__.__doc__ or "").strip().split("\n")[0]
        self.retry_after: float | None = retry_after
        self.result: AgentResult | None = result

    def __str__(self) -> str:
        return self.message

    def info(self) -> ErrorInfo:
        """A serialisable description of this error."""
        return ErrorInfo(
            type=type(self).__name__,
            message=self.message,
            retryable=self.retryable,
            retry_after=self.retry_after,
        )


# --------------------------------------------------------------------------- model errors


class ModelError(AgentError):
    """A model provider refused or failed a request."""


class ModelThrottled(ModelError):
    """The provider is rate limiting us (HTTP 429)."""

    retryable = True


class ModelOverloaded(ModelError):
    """The provider is overloaded or unavailable (HTTP 500, 503, 529)."""

    retryable = True


class NetworkError(ModelError):
    """The request or its answer was lost on the way (connection error, timeout)."""

    retryable = True


class ContextWindowExceeded(ModelError):
    """The conversation does not fit in the model's context window."""


class AuthenticationError(ModelError):
    """The provider rejected our credentials (HTTP 401, 403)."""


class BadRequestError(ModelError):
    """The provider rejected the request as malformed (HTTP 4xx)."""


class ContentFiltered(ModelError):
    """The provider's content filter blocked the request or the response."""


class ModelTimeout(NetworkError):
    """A model call did not finish within its deadline."""


# --------------------------------------------------------------------------- run limits


class BudgetExhausted(AgentError):
    """A usage or cost budget ran out."""

    def __init__(self, message: str = "", *, limit: str = "", result: AgentResult | None = None):
        super().__init__(message, result=result)
        self.limit: str = limit
        """Name of the limit that ran out, e.g. ``"total_tokens"``."""


class MaxTurnsExceeded(AgentError):
    """The run used all its turns without a final answer."""

    def __init__(self, max_turns: int, *, result: AgentResult | None = None) -> None:
        super().__init__(
            f"the run reached max_turns={max_turns} without a final answer; "
            "raise max_turns or make the task smaller",
            result=result,
        )
        self.max_turns: int = max_turns


class RunTimeout(AgentError):
    """A whole run did not finish within its deadline."""


class OutputValidationError(AgentError):
    """The model's final answer did not match the agent's ``output_type``, even after
    ``output_retries`` retries (each told the model what was wrong).

    Not retryable: the same conversation would be asked again.
    """

    def __init__(
        self, message: str = "", *, problems: str = "", result: AgentResult | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.problems: str = problems
        """What was wrong with the last answer, as the model was told."""


# --------------------------------------------------------------------------- lifecycle


class AgentCancelled(AgentError):
    """The agent was cancelled (by its owner, its supervisor tree, or a shutdown) before it replied.

    A request whose run the supervisor tree cuts short gets it at that moment, before any
    decision or backoff; :attr:`reason` says why and :attr:`result` holds the partial run.
    """

    def __init__(self, message: str = "", *, reason: str = "", result: AgentResult | None = None):
        super().__init__(
            message or f"agent cancelled: {reason or 'no reason given'}", result=result
        )
        self.reason: str = reason
        """Why, in a few words. Agents named in it are named by path, e.g.
        ``"sibling 'lead/b' is restarting"`` or ``"agent 'lead/w' failed and its failure
        escalated to 'lead'"`` (the list is on the docs page "Supervision", "Reasons")."""


class AgentStopped(AgentError):
    """The agent was stopped by its supervisor or closed; it takes no more requests."""


class AgentEscalated(AgentStopped):
    """The agent failed and its supervisor escalated the failure; it takes no more requests.

    The reply to every request still waiting in the queue of an agent whose failure escalated
    (when the agent ends, because a supervisor further up stopped it or the failure reached
    the root), and the error a later send raises. The failure is the ``__cause__`` (and
    :attr:`failure`); :attr:`path` is the agent's path. Not retryable: the agent has ended.
    A subclass of :class:`AgentStopped`, so ``except AgentStopped`` still catches every "this
    agent takes no more requests".
    """

    def __init__(self, path: str, failure: BaseException, *, escalated_to: str = "") -> None:
        to = f"to {escalated_to!r}" if escalated_to else "to the root"
        super().__init__(
            f"agent {path!r} failed and its failure escalated {to}: "
            f"{type(failure).__name__}: {failure}"
        )
        self.path: str = path
        """Path of the agent whose failure escalated."""
        self.failure: BaseException = failure
        """The failure that escalated (also the ``__cause__``)."""
        self.__cause__ = failure


class ChildFailed(AgentError):
    """A supervised agent's failure escalated to its supervisor.

    Raised by the failing agent into its parent's supervisor nursery, where it becomes the
    parent's failure; one is added at every level the failure passes, each the ``__cause__`` of
    the next, ending at the original error. The three attributes, at every level:

    * :attr:`path` -- the path of the agent whose failure escalated at this level: the child
      of the agent that now fails with this error (at the root, the top-level agent).
    * :attr:`origin` -- the path of the agent where the failure started; the same at every
      level.
    * :attr:`original` -- the error that started it (the end of the ``__cause__`` chain); the
      same at every level.

    Example: ``worker`` (path ``lead/researcher/worker``) fails with ``AuthenticationError``
    and every policy escalates. The policy is asked about ``researcher`` with a
    ``ChildFailed`` whose ``path`` is ``"lead/researcher/worker"``, then about ``lead`` with one
    whose ``path`` is ``"lead/researcher"``, and the system's ``async with`` raises one whose
    ``path`` is ``"lead"``. All three have ``origin == "lead/researcher/worker"`` and the
    ``AuthenticationError`` as ``original``.
    """

    def __init__(self, path: str, cause: BaseException) -> None:
        if isinstance(cause, ChildFailed):
            origin, original = cause.origin, cause.original
        else:
            origin, original = path, cause
        where = "" if origin == path else f" (escalated from {origin!r})"
        # The message names only the origin, so it stays short however deep the tree is.
        super().__init__(f"agent {path!r} failed{where}: {type(original).__name__}: {original}")
        self.path: str = path
        """The path of the agent whose failure escalated at this level (the failing agent's
        child that raised it; at the root, the top-level agent)."""
        self.origin: str = origin
        """The path of the agent where the failure started (the same at every level)."""
        self.original: BaseException = original
        """The error that started it: the end of the ``__cause__`` chain."""
        self.__cause__ = cause


class DelegationFailed(AgentError):
    """A specialist failed under the ``fail_fast`` failure policy of a
    :class:`~trio_agents.Delegator`, which fails the delegating agent's run.

    The specialist's error is the ``__cause__`` (and :attr:`cause`).
    """

    def __init__(
        self, specialist: str, cause: BaseException, *, result: AgentResult | None = None
    ) -> None:
        leaf = cause
        # A failure inside a nursery arrives wrapped in a group of one: name the error itself.
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        super().__init__(
            f"specialist {specialist!r} failed: {type(leaf).__name__}: {leaf}", result=result
        )
        self.specialist: str = specialist
        """Name of the specialist that failed."""
        self.cause: BaseException = cause
        """The specialist's error."""
        self.delegations: tuple[DelegationRecord, ...] = ()
        """Every delegation of the run so far, as :meth:`Delegator.run
        <trio_agents.Delegator.run>` would have returned them (set by it; siblings that
        were cancelled say ``cancelled=True``)."""
        self.__cause__ = cause


# --------------------------------------------------------------------------- tools


class ToolError(AgentError):
    """A tool failed. Raise it from a tool to send a clean error message back to the model."""


class ToolTimeout(ToolError):
    """A tool did not finish within its timeout."""


class ToolDenied(ToolError):
    """A policy denied a tool call."""


# --------------------------------------------------------------------------- misuse


class UsageError(AgentError, ValueError):
    """The library was used wrongly; the message names the argument and the fix."""


class NoMessagesError(UsageError):
    """A run was asked for with no input messages."""


class AlreadyRunningError(UsageError):
    """An agent that is already running was asked to run again."""


class InvalidArgumentError(UsageError):
    """An argument has a value the library cannot accept."""


class ScriptExhausted(UsageError):
    """A :class:`~trio_agents.testing.ScriptedModel` was called more times than it has responses."""


class DeserializationError(UsageError):
    """Data could not be turned into a trio_agents value; the message says where it is bad."""


class ApprovalPending(AlreadyRunningError):
    """A request reached an agent that waits for a person's approval of tool calls.

    :attr:`~AgentError.result` is the waiting result (its
    :attr:`~trio_agents.AgentResult.pending_approvals` are the calls); answer them with
    :meth:`Agent.resume <trio_agents.Agent.resume>` (or :meth:`AgentHandle.resume
    <trio_agents.AgentHandle.resume>` for an orchestrated agent) before anything else.
    """
