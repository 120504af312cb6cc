"""The error of a peer agent that maps to nothing more specific."""

from __future__ import annotations

from .._errors import AgentError

__all__ = ["InteropError"]


class InteropError(AgentError):
    """A peer agent failed with an error of its own (its tool raised, for example).

    Not retryable. The peer's exception is the ``__cause__``.
    """
