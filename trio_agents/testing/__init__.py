"""Deterministic test doubles, fault injection and hypothesis strategies for agent systems."""

from __future__ import annotations

__all__: list[str] = []
