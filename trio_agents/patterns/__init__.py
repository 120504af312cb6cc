"""Coordination patterns: shapes of multi-agent systems built on structured concurrency."""

from __future__ import annotations

from ._handoff import (
    DEFAULT_MAX_HANDOFF_DEPTH,
    AgentTransferred,
    Handoff,
    HandoffResult,
    transfer_to_agent,
)

__all__ = [
    "DEFAULT_MAX_HANDOFF_DEPTH",
    "AgentTransferred",
    "Handoff",
    "HandoffResult",
    "transfer_to_agent",
]
