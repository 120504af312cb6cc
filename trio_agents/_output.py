"""Structured output: an agent's ``output_type``, its JSON schema, and checking an answer.

The schema comes from the tool-schema machinery (:mod:`trio_agents._tools`), the answer is
loaded by the one converter (:mod:`trio_agents._serde`). Types that are not a record (attrs
class, dataclass, TypedDict) are wrapped in an object with one ``"response"`` property,
because structured-output modes and tool arguments are JSON objects.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import attrs

from ._errors import DeserializationError, InvalidArgumentError
from ._models import OutputMode, OutputSchema, ToolDefinition
from ._serde import load
from ._tools import _SUPPORTED, _first_paragraph, _schema, _Unsupported

FINAL_RESULT_TOOL = "final_result"
"""Name of the final-result tool (and of the output schema)."""

_WRAP_KEY = "response"


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and not typing.get_args(tp) else repr(tp)


def _is_record(tp: Any) -> bool:
    return (
        isinstance(tp, type)
        and typing.get_origin(tp) is None
        and (attrs.has(tp) or dataclasses.is_dataclass(tp) or typing.is_typeddict(tp))
    )


class OutputInvalid(Exception):
    """An answer that does not match the output type; the message is the retry prompt."""


@attrs.frozen
class OutputSpec:
    """What an agent with an ``output_type`` asks for and how it checks the answer."""

    type: Any
    schema: OutputSchema
    wrapped: bool

    @property
    def tool(self) -> ToolDefinition:
        """The final-result tool (:attr:`OutputMode.TOOL`)."""
        return ToolDefinition(
            name=self.schema.name,
            description=self.schema.description,
            parameters=self.schema.schema,
        )

    def parse(self, data: Any) -> Any:
        """``data`` (the decoded JSON answer) as a value of :attr:`type`."""
        if self.wrapped:
            if not isinstance(data, dict) or set(data) != {_WRAP_KEY}:
                raise OutputInvalid(
                    f'the answer must be a JSON object {{"{_WRAP_KEY}": ...}} with exactly '
                    f"that one key, got {json.dumps(data)[:200]}"
                )
            data = data[_WRAP_KEY]
        try:
            return load(data, self.type)
        except DeserializationError as exc:
            raise OutputInvalid(str(exc)) from None

    def parse_text(self, text: str) -> Any:
        """A text answer (:attr:`OutputMode.NATIVE`), decoded from JSON, as :attr:`type`."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise OutputInvalid(f"the answer is not valid JSON ({exc})") from None
        return self.parse(data)


def output_spec(output_type: Any, mode: OutputMode) -> OutputSpec | None:
    """The spec of ``output_type``, or ``None`` for ``str`` (a plain text answer).

    :raises InvalidArgumentError: if the type has no JSON schema; the message names it.
    """
    if output_type is str:
        return None
    try:
        schema = _schema(output_type)
    except _Unsupported as exc:
        part = "" if exc.part is output_type else f" (its part {_type_name(exc.part)})"
        why = f": {exc.why}" if exc.why else ""
        raise InvalidArgumentError(
            f"output_type {_type_name(output_type)} is not supported{part}{why}; "
            f"supported: {_SUPPORTED}"
        ) from None
    wrapped = not _is_record(output_type)
    description = ""
    if wrapped:
        schema = {
            "type": "object",
            "properties": {_WRAP_KEY: schema},
            "required": [_WRAP_KEY],
            "additionalProperties": False,
        }
        description = f"The final answer, of type {_type_name(output_type)}."
    else:
        description = str(schema.get("description") or "") or (
            f"The final answer, a {_type_name(output_type)}."
        )
    doc = _first_paragraph([description])
    return OutputSpec(
        type=output_type,
        schema=OutputSchema(name=FINAL_RESULT_TOOL, schema=schema, description=doc, mode=mode),
        wrapped=wrapped,
    )
