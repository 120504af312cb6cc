"""Deterministic test doubles, fault injection and hypothesis strategies for agent systems.

Importing this package does not import hypothesis; ``trio_agents.testing.strategies`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# --- the property-based test harness (faults, trees, reference model, invariants, machine)
from ._driver import Command, LiveSystem, Observation, Op, Trace, replay
from ._faults import Fault, FaultKind, FaultPlan, FaultyModel, FaultyTool
from ._invariants import (
    InvariantViolation,
    check_cancellation_not_failure,
    check_cancelled_subtrees,
    check_deterministic,
    check_event_log,
    check_lifecycle,
    check_no_serving_after_end,
    check_one_reply,
    check_restart_limits,
    check_same_events,
    check_statuses,
    check_usage,
    looks_complete,
    restart_limits,
)
from ._models import (
    FunctionModel,
    ScriptedModel,
    ScriptItem,
    ScriptStep,
    fail,
    hang,
    text,
    thinking,
    tool_call,
)
from ._plans import DelegationPlan, DelegationStep
from ._reference import ExpectedDecision, ReferenceSnapshot, SupervisionReference
from ._trees import AgentTree, TreeNode, TreePolicy, Work, WorkItem, WorkModel, work_agent

# --- end of the harness block

if TYPE_CHECKING:
    from . import strategies
    from ._machine import SupervisionMachine

__all__ = [
    # the property-based test harness
    "AgentTree",
    "Command",
    "DelegationPlan",
    "DelegationStep",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "FaultyModel",
    "FaultyTool",
    "InvariantViolation",
    "LiveSystem",
    "Observation",
    "Op",
    "ExpectedDecision",
    "ReferenceSnapshot",
    "SupervisionMachine",
    "SupervisionReference",
    "Trace",
    "TreeNode",
    "TreePolicy",
    "Work",
    "WorkItem",
    "WorkModel",
    "check_cancellation_not_failure",
    "check_cancelled_subtrees",
    "check_deterministic",
    "check_event_log",
    "check_lifecycle",
    "check_no_serving_after_end",
    "check_one_reply",
    "check_restart_limits",
    "check_same_events",
    "check_statuses",
    "check_usage",
    "replay",
    "looks_complete",
    "restart_limits",
    "work_agent",
    # end of the harness names
    "FunctionModel",
    "ScriptItem",
    "ScriptStep",
    "ScriptedModel",
    "fail",
    "hang",
    "strategies",
    "text",
    "thinking",
    "tool_call",
]


def __getattr__(name: str) -> Any:
    # hypothesis is a test-time dependency: load the strategies module only when asked.
    if name == "strategies":
        import importlib

        return importlib.import_module(f"{__name__}.strategies")
    if name == "SupervisionMachine":  # needs hypothesis, like the strategies
        from ._machine import SupervisionMachine

        return SupervisionMachine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
