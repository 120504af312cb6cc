"""Deterministic test doubles, fault injection and hypothesis strategies for agent systems.

Importing this package does not import hypothesis; ``trio_agents.testing.strategies`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from . import strategies

__all__ = [
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
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
