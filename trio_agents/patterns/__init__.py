"""Coordination patterns: shapes of multi-agent systems built on structured concurrency."""

from __future__ import annotations

from ._agent_tool import agent_tool
from ._handoff import (
    DEFAULT_MAX_HANDOFF_DEPTH,
    AgentTransferred,
    Handoff,
    HandoffResult,
    transfer_to_agent,
)
from ._pipeline import (
    Merge,
    PipelineResult,
    Step,
    StepFailed,
    StepFinished,
    StepOutput,
    run_parallel,
    run_sequential,
)

__all__ = [
    "DEFAULT_MAX_HANDOFF_DEPTH",
    "AgentTransferred",
    "Handoff",
    "HandoffResult",
    "Merge",
    "PipelineResult",
    "Step",
    "StepFailed",
    "StepFinished",
    "StepOutput",
    "agent_tool",
    "run_parallel",
    "run_sequential",
    "transfer_to_agent",
]
