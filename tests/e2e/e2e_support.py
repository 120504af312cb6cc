"""Shared by the e2e conftest and tests (a module of its own, so that no test imports a
conftest by name)."""

from __future__ import annotations

import attrs

TIMINGS: dict[str, float] = {}
"""Measured seconds, printed at the end of the session."""


@attrs.frozen
class LlamaServer:
    """The running server."""

    url: str
    """``http://127.0.0.1:PORT``."""
    model_name: str
    """The name the server answers to."""
    slot_context: int
    """Context tokens of one request."""

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"
