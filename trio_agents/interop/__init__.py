"""Agents of asyncio frameworks as trio_agents agents (extra ``interop``, on trio-asyncio).

A `pydantic-ai <https://ai.pydantic.dev>`_ agent (:class:`PydanticAIAgent`) or an `OpenAI
Agents SDK <https://openai.github.io/openai-agents-python/>`_ agent
(:class:`OpenAIAgentsAgent`) runs as an asyncio task on a loop trio-asyncio runs inside trio,
and is used like a trio_agents agent: ``await peer.run(task)``, a tool of an
:class:`~trio_agents.Agent` (:meth:`~AsyncioAgent.as_tool`), or a specialist of a
:class:`~trio_agents.Delegator` (:class:`AsyncioRunner`). Trio's cancellation reaches the peer
as ``asyncio.CancelledError`` and comes back as the bare ``trio.Cancelled``; the peer's usage
is a :class:`~trio_agents.Usage`; its errors are the library's.

This is the only part of trio_agents that loads asyncio. See :doc:`/interop`.
"""

from __future__ import annotations

from ._core import AsyncioAgent, AsyncioRunner, open_asyncio_loop
from ._errors import InteropError
from ._openai_agents import OpenAIAgentsAgent
from ._pydantic_ai import PydanticAIAgent

__all__ = [
    "AsyncioAgent",
    "AsyncioRunner",
    "InteropError",
    "OpenAIAgentsAgent",
    "PydanticAIAgent",
    "open_asyncio_loop",
]
