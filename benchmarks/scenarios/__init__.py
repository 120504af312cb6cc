"""The scenarios of the benchmark runner, in the issue's order (one module each)."""

from __future__ import annotations

from .._core import Scenario
from . import (
    agent_run,
    delegation,
    event_log,
    latency,
    pipeline,
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
    pipeline.SCENARIO,
)
"""Every scenario; ``tree`` and ``chain`` are both number 3."""

__all__ = ["SCENARIOS"]
