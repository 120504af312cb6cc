"""The scenarios of the benchmark runner, in the issue's order (one module each)."""

from __future__ import annotations

from .._core import Scenario
from . import (
    agent_run,
    delegation,
    event_log,
    history,
    interop,
    journal,
    latency,
    mcp_call,
    pipeline,
    ray_remote,
    request_reply,
    restart,
    spawn,
    tree,
)

SCENARIOS: tuple[Scenario, ...] = (
    request_reply.SCENARIO,
    spawn.SCENARIO,
    tree.TREE,
    tree.CHAIN,
    restart.SCENARIO,
    delegation.SCENARIO,
    latency.SCENARIO,
    event_log.SCENARIO,
    agent_run.SCENARIO,
    mcp_call.SCENARIO,
    pipeline.SCENARIO,
    history.SCENARIO,
    journal.SCENARIO,
    interop.SCENARIO,
)
"""Every scenario; ``tree`` and ``chain`` are both number 3."""

OPT_IN: tuple[Scenario, ...] = (ray_remote.SCENARIO,)
"""Scenarios that run only when named (``-s ray``): they need an optional extra."""

__all__ = ["OPT_IN", "SCENARIOS"]
