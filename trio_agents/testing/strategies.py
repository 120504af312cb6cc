"""Hypothesis strategies for every value type of trio_agents.

Use them in property tests of your own agents, tools and models::

    from hypothesis import given
    from trio_agents.testing import strategies

    @given(strategies.messages())
    def test_my_tool_handles_any_message(message): ...

This module needs hypothesis (``pip install 'trio-agents[test]'``); importing
:mod:`trio_agents.testing` alone does not.
"""

from __future__ import annotations

from ._strategies import (
    agent_paths,
    agent_results,
    agent_trees,
    amounts,
    assistant_contents,
    assistant_messages,
    commands,
    content_blocks,
    costs,
    counts,
    delegation_plans,
    error_infos,
    events,
    fault_plans,
    faults,
    from_type,
    identifiers,
    image_blocks,
    json_data,
    json_scalars,
    json_values,
    messages,
    model_requests,
    model_settings,
    restart_strategies,
    stop_reasons,
    stream_dones,
    stream_events,
    system_messages,
    text_blocks,
    text_deltas,
    texts,
    thinking_blocks,
    thinking_deltas,
    tool_call_blocks,
    tool_call_deltas,
    tool_definitions,
    tool_faults,
    tool_result_blocks,
    tool_result_messages,
    transfer_signals,
    tree_nodes,
    usages,
    user_contents,
    user_messages,
    work_items,
    workloads,
)

__all__ = [
    # supervision trees, faults and workloads (the test harness)
    "agent_trees",
    "commands",
    "delegation_plans",
    "fault_plans",
    "faults",
    "restart_strategies",
    "tool_faults",
    "tree_nodes",
    "work_items",
    "workloads",
    # values
    "agent_paths",
    "agent_results",
    "amounts",
    "assistant_contents",
    "assistant_messages",
    "content_blocks",
    "costs",
    "counts",
    "error_infos",
    "events",
    "from_type",
    "identifiers",
    "image_blocks",
    "json_data",
    "json_scalars",
    "json_values",
    "messages",
    "model_requests",
    "model_settings",
    "stop_reasons",
    "stream_dones",
    "stream_events",
    "system_messages",
    "text_blocks",
    "text_deltas",
    "texts",
    "thinking_blocks",
    "thinking_deltas",
    "tool_call_blocks",
    "tool_call_deltas",
    "tool_definitions",
    "tool_result_blocks",
    "tool_result_messages",
    "transfer_signals",
    "usages",
    "user_contents",
    "user_messages",
]
