"""Coordination patterns: shapes of multi-agent systems built on structured concurrency."""

from __future__ import annotations

from ._agent_pattern import pattern_agent
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
from ._shapes import (
    APPROVED_MARKER,
    DebateResult,
    Loop,
    LoopExhausted,
    LoopResult,
    MapReduceResult,
    Match,
    ReviewResult,
    ReviewRound,
    RoundFinished,
    TournamentResult,
    VoteResult,
    debate,
    map_reduce,
    normalise_answer,
    review_loop,
    tournament,
    vote,
)
from ._swarm import Swarm, SwarmMode, SwarmResult

__all__ = [
    "APPROVED_MARKER",
    "DEFAULT_MAX_HANDOFF_DEPTH",
    "AgentTransferred",
    "DebateResult",
    "Handoff",
    "HandoffResult",
    "Loop",
    "LoopExhausted",
    "LoopResult",
    "MapReduceResult",
    "Match",
    "Merge",
    "PipelineResult",
    "ReviewResult",
    "ReviewRound",
    "RoundFinished",
    "Step",
    "StepFailed",
    "StepFinished",
    "StepOutput",
    "TournamentResult",
    "VoteResult",
    "agent_tool",
    "debate",
    "map_reduce",
    "normalise_answer",
    "pattern_agent",
    "review_loop",
    "run_parallel",
    "run_sequential",
    "tournament",
    "transfer_to_agent",
    "vote",
    "Swarm",
    "SwarmMode",
    "SwarmResult",
]
