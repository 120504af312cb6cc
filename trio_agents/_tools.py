"""Tools: a name, a description, a JSON schema for the arguments and an async callable.

A :class:`Tool` is usually made with the :func:`tool` decorator, which reads the JSON schema
off the function's annotations and its description off the docstring. A :class:`ToolExecutor`
turns a :class:`~trio_agents.ToolCallBlock` into a :class:`~trio_agents.ToolResultBlock`;
:class:`Toolset` is the default one. Bad arguments, unknown tools, timeouts, exceptions and
policy denials all become error results the model can read: an executor never raises because
of what a model or a tool did. :func:`execute_tool_calls` runs every call of one assistant turn
concurrently in one nursery.

Cancellation is never turned into a result: ``trio.Cancelled`` and other ``BaseException``
(``KeyboardInterrupt``, ``SystemExit``) propagate untouched.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import functools
import importlib
import inspect
import json
import math
import re
import sys
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeGuard, cast, overload, runtime_checkable

import attrs
import cattrs
import cattrs.cols
import cattrs.gen
import trio
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from ._cancel import only_cancelled, reraise_cancelled
from ._errors import InvalidArgumentError, ToolDenied, ToolError, ToolTimeout
from ._events import Event, EventSink, ToolFinished, ToolStarted
from ._messages import ToolCallBlock, ToolResultBlock
from ._models import ToolDefinition

ToolFunction = Callable[..., Awaitable[Any]]

# --------------------------------------------------------------------------- context


@attrs.define(eq=False)
class ToolContext:
    """What a tool receives as its first argument when it asks for one.

    Annotate the first parameter of a tool function with :class:`ToolContext` to receive it;
    that parameter is not part of the tool's JSON schema.
    """

    agent: str
    """Path of the calling agent, e.g. ``"lead/researcher"``."""
    call: ToolCallBlock
    """The call being executed."""
    deps: Any = None
    """The user dependencies given to the agent."""
    infra: Any = None
    """Shared infrastructure of the agent tree (state store, event log, ...)."""
    idempotency_key: str | None = None
    """In a journaled run (:class:`~trio_agents.RunJournal`), ``"<run id>/<call id>"``: the
    same when a call left in doubt by a crash is run again, so the tool can hand it to the
    service it calls and the effect happens once. ``None`` outside journaled runs."""


# --------------------------------------------------------------------------- helpers


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(hint: Any) -> str:
    if hint is None or hint is type(None):
        return "None"
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).replace("typing.", "").replace("collections.abc.", "")


def _first_paragraph(lines: Iterable[str]) -> str:
    summary: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not stripped or _SECTION.match(stripped) or stripped.startswith(":"):
            break
        summary.append(stripped)
    return " ".join(summary)


def _check_timeout(value: Any, argument: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value <= 0
    ):
        raise InvalidArgumentError(
            f"{argument} must be a positive number of seconds or None; got {value!r}"
        )
    return float(value)


def _error_result(call: ToolCallBlock, content: str) -> ToolResultBlock:
    return ToolResultBlock(
        tool_call_id=call.id, content=content, is_error=True, tool_name=call.name
    )


def _unknown_tool_message(name: str, available: Iterable[str]) -> str:
    names = ", ".join(available)
    return f"unknown tool {name!r}; " + (
        f"available tools: {names}" if names else "no tools are available"
    )


def _exception_message(tool_name: str, exc: Exception) -> str:
    leaf: BaseException = exc
    # A tool that opens its own nursery raises its single failure wrapped in a group.
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    if isinstance(leaf, ToolError):
        return str(leaf)
    text = str(leaf)
    return f"tool {tool_name!r} raised {type(leaf).__name__}" + (f": {text}" if text else "")


# --------------------------------------------------------------------------- docstrings

_SECTION = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments|other parameters|"
    r"returns?|yields?|raises|examples?|notes?|warnings?|see also|attributes|references|todo)"
    r"\s*:\s*$",
    re.IGNORECASE,
)
_ARGS_SECTION = re.compile(
    r"^(args|arguments|parameters|params|keyword args|keyword arguments)\s*:\s*$", re.IGNORECASE
)
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX_PARAM = re.compile(r"^:param\s+([^:]+?)\s*:\s*(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The first paragraph, and per-parameter descriptions from Google or Sphinx style."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    found: dict[str, list[str]] = {}
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        stripped = line.strip()
        if _ARGS_SECTION.match(stripped):
            header_indent = _indent(line)
            entry_indent: int | None = None
            current: str | None = None
            i += 1
            while i < n:
                entry = lines[i]
                if entry.strip():
                    if _indent(entry) <= header_indent:
                        break
                    if entry_indent is None:
                        entry_indent = _indent(entry)
                    match = _GOOGLE_ENTRY.match(entry.strip())
                    if match is not None and _indent(entry) == entry_indent:
                        current = match.group(1)
                        found[current] = [match.group(2)]
                    elif current is not None:
                        found[current].append(entry.strip())
                i += 1
            continue
        match = _SPHINX_PARAM.match(stripped)
        if match is not None:
            name = match.group(1).split()[-1].lstrip("*")
            parts = [match.group(2)]
            i += 1
            while (
                i < n
                and lines[i].strip()
                and not lines[i].strip().startswith(":")
                and _indent(lines[i]) > _indent(line)
            ):
                parts.append(lines[i].strip())
                i += 1
            found[name] = parts
            continue
        i += 1
    params = {name: " ".join(p for p in parts if p) for name, parts in found.items()}
    return _first_paragraph(lines), {name: text for name, text in params.items() if text}


# --------------------------------------------------------------------------- JSON schema

_SUPPORTED = (
    "str, int, float, bool, None, Any, Enum, Literal, list[X], tuple[X, ...], Sequence[X], "
    "dict[str, X], Mapping[str, X], X | None (and other unions of these), attrs classes, "
    "dataclasses, TypedDicts"
)
_LIST_ORIGINS: tuple[Any, ...] = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
)
_MAPPING_ORIGINS: tuple[Any, ...] = (
    dict,
    collections.abc.Mapping,
    collections.abc.MutableMapping,
)
_PRIMITIVES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_NO_DEFAULT: Any = object()


class _Unsupported(Exception):
    """A part of an annotation that has no JSON schema."""

    def __init__(self, part: Any, why: str = "") -> None:
        super().__init__(part, why)
        self.part = part
        self.why = why


def _json_type(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _enum_schema(values: Sequence[Any]) -> dict[str, Any]:
    kinds = {_json_type(v) for v in values}
    schema: dict[str, Any] = {}
    if len(kinds) == 1 and "null" not in kinds:
        schema["type"] = kinds.pop()
    schema["enum"] = list(values)
    return schema


def _json_default(value: Any) -> Any:
    """``value`` as JSON data for a schema's ``"default"``, or ``_NO_DEFAULT``."""
    try:
        return json.loads(json.dumps(_ARGS.unstructure(value), allow_nan=False))
    except Exception:
        return _NO_DEFAULT


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _is_var_tuple(hint: Any) -> bool:
    args = typing.get_args(hint)
    return typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_literal(hint: Any) -> bool:
    origin: Any = typing.get_origin(hint)
    return origin is Literal


def _is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, enum.Enum)


def _is_attrs(hint: Any) -> bool:
    return isinstance(hint, type) and typing.get_origin(hint) is None and attrs.has(hint)


def _schema(hint: Any, seen: tuple[type, ...] = ()) -> dict[str, Any]:
    """The JSON schema of one annotation; raises :class:`_Unsupported`."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema = _schema(args[0], seen)
        notes = [note for note in hint.__metadata__ if isinstance(note, str)]
        if notes:
            schema["description"] = " ".join(notes)
        return schema
    if hint is Any:
        return {}
    if hint is None or hint is type(None):
        return {"type": "null"}
    if isinstance(hint, type) and hint in _PRIMITIVES:
        return {"type": _PRIMITIVES[hint]}
    if _is_literal(hint):
        if not all(
            v is None or (isinstance(v, str | int) and not isinstance(v, enum.Enum)) for v in args
        ):
            raise _Unsupported(hint, "Literal values must be str, int, bool or None")
        return _enum_schema(args)
    if _is_enum(hint):
        values = [member.value for member in hint]
        if not all(_json_type(v) is not None for v in values):
            raise _Unsupported(hint, "enum values must be str, int, float, bool or None")
        return _enum_schema(values)
    if _is_union(hint):
        return {"anyOf": [_schema(arg, seen) for arg in args]}
    if origin in _LIST_ORIGINS and len(args) == 1:
        return {"type": "array", "items": _schema(args[0], seen)}
    if _is_var_tuple(hint):
        return {"type": "array", "items": _schema(args[0], seen)}
    if origin in _MAPPING_ORIGINS and len(args) == 2:
        if args[0] is not str:
            raise _Unsupported(hint, "JSON object keys are strings: use dict[str, X]")
        return {"type": "object", "additionalProperties": _schema(args[1], seen)}
    if _is_attrs(hint):
        return _attrs_schema(hint, seen)
    if _is_dataclass(hint) or typing.is_typeddict(hint):
        return _record_schema(hint, seen)
    if hint in (list, tuple, dict) or hint in _LIST_ORIGINS or hint in _MAPPING_ORIGINS:
        raise _Unsupported(hint, "give the item type, e.g. list[str], dict[str, int]")
    if origin is tuple:
        raise _Unsupported(hint, "only tuples of one item type are supported: tuple[X, ...]")
    raise _Unsupported(hint)


def _is_dataclass(hint: Any) -> bool:
    return (
        isinstance(hint, type)
        and typing.get_origin(hint) is None
        and dataclasses.is_dataclass(hint)
    )


def _class_hints(cls: type, seen: tuple[type, ...], kind: str) -> dict[str, Any]:
    """The resolved annotations of a record class whose schema is being built."""
    if cls in seen:
        raise _Unsupported(cls, f"recursive {kind} are not supported")
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise _Unsupported(cls, f"its annotations cannot be resolved ({exc})") from None


def _object_schema(properties: dict[str, Any], required: list[str], doc: str) -> dict[str, Any]:
    """A closed JSON object schema, described by the first paragraph of ``doc``."""
    result: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    description = _first_paragraph(inspect.cleandoc(doc).splitlines())
    if description:
        result["description"] = description
    return result


def _record_schema(cls: type, seen: tuple[type, ...]) -> dict[str, Any]:
    """The schema of a dataclass or a TypedDict: an object of its (annotated) fields."""
    hints = _class_hints(cls, seen, "classes")
    properties: dict[str, Any] = {}
    required: list[str] = []
    if typing.is_typeddict(cls):
        names = list(hints)
        required_keys: Any = getattr(cls, "__required_keys__", frozenset(names))
        for name in names:
            properties[name] = _schema(hints[name], (*seen, cls))
            if name in required_keys:
                required.append(name)
    else:
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            schema = _schema(hints[field.name], (*seen, cls))
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                required.append(field.name)
            elif field.default is not dataclasses.MISSING:
                value = _json_default(field.default)
                if value is not _NO_DEFAULT:
                    schema["default"] = value
            properties[field.name] = schema
    doc = cls.__doc__ or ""
    if dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "("):
        doc = ""  # the signature dataclass writes when there is no docstring
    return _object_schema(properties, required, doc)


def _attrs_schema(cls: type, seen: tuple[type, ...]) -> dict[str, Any]:
    hints = _class_hints(cls, seen, "attrs classes")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for field in attrs.fields(cls):
        if not field.init:
            continue
        if field.name not in hints:
            raise _Unsupported(cls, f"field {field.name!r} has no type annotation")
        schema = _schema(hints[field.name], (*seen, cls))
        description = field.metadata.get("description")
        if isinstance(description, str) and "description" not in schema:
            schema["description"] = description
        default = field.default
        if default is attrs.NOTHING:
            required.append(field.name)
        else:
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                factory = cast(Any, default)
                default = _NO_DEFAULT if factory.takes_self else factory.factory()
            if default is not _NO_DEFAULT:
                value = _json_default(default)
                if value is not _NO_DEFAULT:
                    schema["default"] = value
        properties[field.name] = schema
    return _object_schema(properties, required, cls.__doc__ or "")


# --------------------------------------------------------------------------- argument conversion


class _Mismatch(Exception):
    """A JSON value that is not of the expected type."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected, value)
        self.expected = expected
        self.value = value

    def __str__(self) -> str:
        return f"expected {self.expected}, got {_show(self.value)}"


class _InvalidArguments(ToolError):
    """The arguments of a tool call do not match the tool's signature."""


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Mismatch("str", value)


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise _Mismatch("int", value)


def _structure_float(value: Any, _: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _Mismatch("float", value)


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Mismatch("bool", value)


def _structure_none(value: Any, _: Any) -> None:
    if value is None:
        return None
    raise _Mismatch("None", value)


def _same_value(expected: Any, value: Any) -> bool:
    return type(expected) is type(value) and expected == value


def _choices(values: Iterable[Any]) -> str:
    return "one of " + ", ".join(repr(v) for v in values)


def _enum_hook(cls: type[enum.Enum]) -> Callable[[Any, Any], Any]:
    members = list(cls)

    def structure_enum(value: Any, _: Any) -> Any:
        if isinstance(value, cls):
            return value
        for member in members:
            if _same_value(member.value, value):
                return member
        raise _Mismatch(_choices(m.value for m in members), value)

    return structure_enum


def _structure_any_enum(value: Any, cls: Any) -> Any:
    return _enum_hook(cls)(value, cls)


def _literal_hook(hint: Any) -> Callable[[Any, Any], Any]:
    allowed = typing.get_args(hint)

    def structure_literal(value: Any, _: Any) -> Any:
        for candidate in allowed:
            if _same_value(candidate, value):
                return candidate
        raise _Mismatch(_choices(allowed), value)

    return structure_literal


def _union_hook(hint: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    members = typing.get_args(hint)
    nullable = type(None) in members
    others = [m for m in members if m is not type(None)]
    expected = " or ".join(_type_name(m) for m in members)

    def structure_union(value: Any, _: Any) -> Any:
        if value is None and nullable:
            return None
        if len(others) == 1:
            # ``X | None``: keep X's detailed errors.
            try:
                return converter.structure(value, others[0])
            except _Mismatch as exc:
                raise _Mismatch(f"{exc.expected} or None", value) from None
        for member in others:  # the member whose JSON type matches exactly wins
            if isinstance(member, type) and member in _PRIMITIVES and type(value) is member:
                return value
        for member in others:
            try:
                return converter.structure(value, member)
            except Exception:
                continue
        raise _Mismatch(expected, value)

    return structure_union


def _list_hook(hint: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    if _is_var_tuple(hint):
        inner = cattrs.cols.homogenous_tuple_structure_factory(hint, converter)
    else:
        inner = cattrs.cols.list_structure_factory(hint, converter)

    def structure_list(value: Any, type_: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _Mismatch("list", value)
        return inner(value, type_)

    return structure_list


def _mapping_hook(hint: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = cattrs.gen.mapping_structure_factory(hint, converter, structure_to=dict)

    def structure_mapping(value: Any, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Mismatch("object", value)
        return inner(value, type_)

    return structure_mapping


def _attrs_hook(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner: Callable[[Any, Any], Any] = cattrs.gen.make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True
    )

    def structure_attrs(value: Any, type_: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise _Mismatch(f"object ({cls.__name__})", value)
        return inner(value, type_)

    return structure_attrs


def _make_arguments_converter() -> cattrs.Converter:
    """A strict converter: JSON types must match (an int is accepted for a float, and an
    integral float for an int), so ``"5"`` is not an int and ``"abc"`` is not a list."""
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(type(None), _structure_none)
    # By class (singledispatch, so every Enum subclass), not by predicate: cattrs 25.2 and 25.3
    # dispatch enums to their own hook ahead of predicate hooks, whose error would not list
    # the allowed values.
    converter.register_structure_hook(enum.Enum, _structure_any_enum)
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_union, _union_hook)
    converter.register_structure_hook_factory(
        lambda t: (
            (typing.get_origin(t) in _LIST_ORIGINS and len(typing.get_args(t)) == 1)
            or _is_var_tuple(t)
        ),
        _list_hook,
    )
    converter.register_structure_hook_factory(
        lambda t: typing.get_origin(t) in _MAPPING_ORIGINS and len(typing.get_args(t)) == 2,
        _mapping_hook,
    )
    converter.register_structure_hook_factory(_is_attrs, _attrs_hook)
    return converter


_ARGS = _make_arguments_converter()


def _problems(exc: BaseException, path: str) -> list[str]:
    """Readable descriptions of a (detailed) cattrs error for the argument at ``path``."""
    out: list[str] = []
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        for sub, field_note in with_notes:
            if isinstance(sub, KeyError):
                out.append(f"argument '{path}': missing required field {field_note.name!r}")
            else:
                out.extend(_problems(sub, f"{path}.{field_note.name}"))
        for sub in without:
            if isinstance(sub, ForbiddenExtraKeysError):
                extra = ", ".join(repr(k) for k in sorted(sub.extra_fields))
                plural = "s" if len(sub.extra_fields) > 1 else ""
                out.append(f"argument '{path}': unexpected field{plural} {extra}")
            else:
                out.extend(_problems(sub, path))
        return out
    if isinstance(exc, IterableValidationError):
        with_index, without_index = exc.group_exceptions()
        for sub, index_note in with_index:
            out.extend(_problems(sub, f"{path}[{index_note.index!r}]"))
        for sub in without_index:
            out.extend(_problems(sub, path))
        return out
    text = str(exc) or type(exc).__name__
    return [f"argument '{path}': {text}"]


# --------------------------------------------------------------------------- binding


@attrs.frozen
class _Param:
    name: str
    hint: Any
    validate: bool
    required: bool
    positional: bool
    default: Any


@attrs.frozen
class _Binder:
    """How a tool's JSON arguments become the function's arguments."""

    params: tuple[_Param, ...]
    context: str | None = None
    context_by_keyword: bool = False
    accepts_any: bool = False
    names: frozenset[str] = attrs.field(
        default=attrs.Factory(lambda self: frozenset(p.name for p in self.params), takes_self=True)
    )

    def bind(
        self, tool: str, arguments: Mapping[str, Any], ctx: ToolContext
    ) -> tuple[list[Any], dict[str, Any]]:
        if not isinstance(arguments, Mapping):
            raise _InvalidArguments(
                f"invalid arguments for tool {tool!r}: "
                f"expected a JSON object, got {_show(arguments)}"
            )
        problems: list[str] = []
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        if self.context is not None:
            if self.context_by_keyword:
                kwargs[self.context] = ctx
            else:
                args.append(ctx)
        for param in self.params:
            if param.name in arguments:
                value = arguments[param.name]
                if param.validate:
                    try:
                        value = _ARGS.structure(value, param.hint)
                    except Exception as exc:
                        problems.extend(_problems(exc, param.name))
                        continue
            elif param.required:
                problems.append(f"missing required argument {param.name!r}")
                continue
            elif param.positional:
                value = param.default
            else:
                continue
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        unexpected = [key for key in arguments if key not in self.names]
        if self.accepts_any:
            for key in unexpected:
                kwargs[key] = arguments[key]
        else:
            problems.extend(f"unexpected argument {key!r}" for key in unexpected)
        if problems:
            message = f"invalid arguments for tool {tool!r}: " + "; ".join(problems)
            if unexpected and not self.accepts_any:
                accepted = ", ".join(repr(p.name) for p in self.params)
                message += f" (accepted arguments: {accepted or 'none'})"
            raise _InvalidArguments(message)
        return args, kwargs


def _hint_source(fn: Any) -> Any:
    if isinstance(fn, functools.partial):
        return _hint_source(fn.func)
    if inspect.isfunction(fn) or inspect.ismethod(fn):
        return fn
    return getattr(fn, "__call__", fn)  # noqa: B004 - a callable object's method


def _unannotated(hint: Any) -> Any:
    while typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint


def _is_context(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint is ToolContext


def _resolve_hints(fn: Any, tool: str, localns: Mapping[str, Any] | None) -> dict[str, Any]:
    source = _hint_source(fn)
    try:
        return typing.get_type_hints(source, include_extras=True)
    except NameError as exc:
        if localns is not None:
            try:
                return typing.get_type_hints(source, localns=dict(localns), include_extras=True)
            except Exception:
                pass
        raise InvalidArgumentError(
            f"cannot resolve the annotations of tool {tool!r}: {exc}; "
            "define the types it uses at module level"
        ) from None
    except Exception as exc:
        raise InvalidArgumentError(
            f"cannot resolve the annotations of tool {tool!r}: {type(exc).__name__}: {exc}"
        ) from None


def _signature(fn: Any, tool: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot read the signature of tool {tool!r}: {exc}") from None


def _analyze(
    fn: Any, tool: str, localns: Mapping[str, Any] | None, docs: Mapping[str, str]
) -> tuple[_Binder, dict[str, Any], bool]:
    """Binder, JSON schema and takes_context of a tool function; raises on anything unsupported."""
    hints = _resolve_hints(fn, tool, localns)
    params = list(_signature(fn, tool).parameters.values())
    context: inspect.Parameter | None = None
    if params and _is_context(hints.get(params[0].name)):
        context = params.pop(0)
    bound: list[_Param] = []
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in params:
        where = f"tool {tool!r}: parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidArgumentError(
                f"{where}: *args and **kwargs are not supported; "
                "declare each argument with a type annotation"
            )
        if param.name not in hints and param.name in ("self", "cls") and not bound:
            raise InvalidArgumentError(
                f"{where}: @tool does not work on methods in a class body; "
                "make a tool from the bound method instead: tool(instance.method)"
            )
        if param.name not in hints:
            raise InvalidArgumentError(
                f"{where} has no type annotation; annotate it (e.g. `{param.name}: str`) "
                "so that its JSON schema can be generated"
            )
        hint = hints[param.name]
        if _is_context(hint):
            raise InvalidArgumentError(f"{where}: a ToolContext must be the first parameter")
        try:
            schema = _schema(hint)
        except _Unsupported as exc:
            message = f"{where} has an unsupported annotation {_type_name(hint)}"
            if exc.part is not hint:
                message += f" (because of {_type_name(exc.part)})"
            message += f": {exc.why}" if exc.why else f"; supported: {_SUPPORTED}"
            raise InvalidArgumentError(message) from None
        if param.name in docs and "description" not in schema:
            schema["description"] = docs[param.name]
        has_default = param.default is not param.empty
        if has_default:
            default = _json_default(param.default)
            if default is not _NO_DEFAULT:
                schema["default"] = default
        else:
            required.append(param.name)
        properties[param.name] = schema
        bound.append(
            _Param(
                name=param.name,
                # Validated against the bare type: cattrs does not see through Annotated
                # for every kind of type (a TypedDict, for one).
                hint=_unannotated(hint),
                validate=True,
                required=not has_default,
                positional=param.kind is param.POSITIONAL_ONLY,
                default=param.default,
            )
        )
    binder = _Binder(
        params=tuple(bound),
        context=None if context is None else context.name,
        context_by_keyword=context is not None and context.kind is context.KEYWORD_ONLY,
    )
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return binder, schema, context is not None


def _lenient_binder(fn: Any, takes_context: bool) -> _Binder:
    """The binder of a :class:`Tool` built by hand: annotations that have a schema are
    validated, anything else is passed through as is."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return _Binder(params=(), context="" if takes_context else None, accepts_any=True)
    try:
        hints = typing.get_type_hints(_hint_source(fn), include_extras=True)
    except Exception:
        hints = {}
    context: inspect.Parameter | None = params.pop(0) if takes_context and params else None
    bound: list[_Param] = []
    accepts_any = False
    for param in params:
        if param.kind is param.VAR_KEYWORD:
            accepts_any = True
            continue
        if param.kind is param.VAR_POSITIONAL:
            continue
        validate = param.name in hints
        if validate:
            try:
                _schema(hints[param.name])
            except _Unsupported:
                validate = False
        bound.append(
            _Param(
                name=param.name,
                hint=_unannotated(hints.get(param.name, Any)),
                validate=validate,
                required=param.default is param.empty,
                positional=param.kind is param.POSITIONAL_ONLY,
                default=param.default,
            )
        )
    return _Binder(
        params=tuple(bound),
        context=None if context is None else context.name,
        context_by_keyword=context is not None and context.kind is context.KEYWORD_ONLY,
        accepts_any=accepts_any,
    )


# --------------------------------------------------------------------------- results


@functools.cache
def _result_converter() -> cattrs.BaseConverter:
    """The package's converter (``trio_agents._serde``) when it exists, else a plain one."""
    try:
        module = importlib.import_module(f"{__package__}._serde")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}._serde":
            raise
        return cattrs.Converter()
    converter = getattr(module, "converter", None)
    return converter if isinstance(converter, cattrs.BaseConverter) else cattrs.Converter()


def _encode(tool: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(_result_converter().unstructure(value), ensure_ascii=False)
    except Exception as exc:
        raise ToolError(
            f"tool {tool!r} returned a {type(value).__name__} that cannot be encoded as JSON "
            f"({type(exc).__name__}: {exc}); return a str or JSON-compatible data"
        ) from exc


# --------------------------------------------------------------------------- Tool


def _validate_name(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"Tool {attribute.name} must be a non-empty str; got {value!r}")


def _validate_str(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"Tool {attribute.name} must be a str; got {value!r}")


def _validate_parameters(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise InvalidArgumentError(
            f"Tool {attribute.name} must be a dict (the JSON schema of the arguments object); "
            f"got {type(value).__name__}"
        )


def _validate_function(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        raise InvalidArgumentError(
            f"Tool {attribute.name} must be an async callable; got {type(value).__name__}"
        )


def _validate_timeout(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    _check_timeout(value, f"Tool {attribute.name}")


@attrs.frozen(kw_only=True)
class Tool:
    """A tool the model can call: a name, a description, a JSON schema and an async callable.

    Make one with the :func:`tool` decorator. Built by hand, a tool validates the arguments
    whose annotations have a schema (see :func:`tool`) and passes the others through as given.
    """

    name: str = attrs.field(validator=_validate_name)
    """The name the model calls the tool by."""
    description: str = attrs.field(validator=_validate_str)
    """What the tool does, for the model."""
    parameters: dict[str, Any] = attrs.field(validator=_validate_parameters)
    """JSON schema of the arguments object."""
    function: ToolFunction = attrs.field(validator=_validate_function)
    """The async callable that does the work."""
    takes_context: bool = False
    """Whether :attr:`function` takes a :class:`ToolContext` as its first argument."""
    timeout: float | None = attrs.field(default=None, validator=_validate_timeout)
    """Seconds (on trio's clock) a call may take, or ``None`` for the executor's default."""
    requires_approval: bool = False
    """Whether a person must approve each call before it runs: the agent's run stops with
    :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED` instead (see :meth:`Agent.resume
    <trio_agents.Agent.resume>`)."""
    idempotent: bool = False
    """Whether running a call twice has the effect of running it once (given its
    :attr:`ToolContext.idempotency_key`): a journaled run resumed after a crash runs such a
    call again when the crash left it in doubt (see :class:`~trio_agents.RunJournal`)."""
    _binder: _Binder | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def definition(self) -> ToolDefinition:
        """What the model is told about this tool."""
        return ToolDefinition(
            name=self.name, description=self.description, parameters=self.parameters
        )

    async def call(self, arguments: Mapping[str, Any], ctx: ToolContext) -> str:
        """Validate ``arguments``, call the function under :attr:`timeout` and encode its result.

        A ``str`` result is returned as is; anything else is encoded as JSON (attrs instances
        through the trio_agents converter).

        :raises ToolError: the arguments are invalid (the message names each bad argument and
            what was expected), or the result cannot be encoded as JSON.
        :raises ToolTimeout: the call took longer than :attr:`timeout`.
        :raises Exception: whatever the function raised.
        """
        return await self._invoke(arguments, ctx, self.timeout)

    async def _invoke(
        self, arguments: Mapping[str, Any], ctx: ToolContext, time_limit: float | None
    ) -> str:
        binder = self._binder
        if binder is None:
            binder = _lenient_binder(self.function, self.takes_context)
            object.__setattr__(self, "_binder", binder)
        args, kwargs = binder.bind(self.name, arguments, ctx)
        try:
            if time_limit is None:
                value = await self.function(*args, **kwargs)
            else:
                value = None
                with trio.move_on_after(time_limit) as scope:
                    value = await self.function(*args, **kwargs)
                if scope.cancelled_caught:
                    raise ToolTimeout(f"tool {self.name!r} timed out after {time_limit:g} s")
        except BaseExceptionGroup as group:
            # A tool whose own nursery was cancelled from outside: the bare Cancelled.
            reraise_cancelled(group)
            raise
        return _encode(self.name, value)


def _caller_locals() -> Mapping[str, Any] | None:
    """Local names of the scope that applies the decorator (two frames up), to resolve
    annotations that name classes defined inside a function."""
    try:
        return sys._getframe(2).f_locals
    except (AttributeError, ValueError):  # pragma: no cover - no frames on this interpreter
        return None


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or (
        not inspect.isroutine(fn)
        and not isinstance(fn, functools.partial)
        and inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
    )


def _make_tool(
    fn: Any,
    *,
    name: str | None,
    description: str | None,
    timeout: float | None,
    localns: Mapping[str, Any] | None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Tool:
    if not callable(fn):
        raise InvalidArgumentError(
            f"tool() takes the tool function as its only positional argument; got {fn!r} "
            "(set the name with @tool(name=...))"
        )
    target = fn.func if isinstance(fn, functools.partial) else fn
    label = getattr(target, "__qualname__", None) or type(target).__qualname__
    if not _is_async_callable(fn):
        kind = (
            "an async generator function"
            if inspect.isasyncgenfunction(target)
            else "a regular (synchronous) function"
        )
        raise InvalidArgumentError(
            f"tool function {label!r} is {kind}; tools must be coroutine functions: "
            f"define it with `async def {getattr(target, '__name__', 'name')}(...)`"
        )
    if name is None:
        name = getattr(target, "__name__", None) or type(target).__name__
    summary, docs = _parse_docstring(inspect.getdoc(target))
    binder, parameters, takes_context = _analyze(fn, name, localns, docs)
    made = Tool(
        name=name,
        description=summary if description is None else description,
        parameters=parameters,
        function=fn,
        takes_context=takes_context,
        timeout=timeout,
        requires_approval=requires_approval,
        idempotent=idempotent,
    )
    object.__setattr__(made, "_binder", binder)
    return made


@overload
def tool(
    fn: ToolFunction,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Callable[[ToolFunction], Tool]: ...
def tool(
    fn: ToolFunction | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
    requires_approval: bool = False,
    idempotent: bool = False,
) -> Tool | Callable[[ToolFunction], Tool]:
    """Make a :class:`Tool` from an ``async def`` function.

    Use it as ``@tool`` or ``@tool(name=..., timeout=...)``, or call it as
    ``tool(fn, name=...)`` on an existing function.

    The JSON schema comes from the parameters' annotations: ``str``, ``int``, ``float``,
    ``bool``, ``None``, ``Any``, enums and ``Literal`` (``"enum"``), ``list[X]``,
    ``tuple[X, ...]`` and ``Sequence[X]`` (arrays), ``dict[str, X]`` and ``Mapping[str, X]``,
    unions (``anyOf``; ``X | None`` accepts ``null``) and attrs classes (nested objects).
    ``Annotated[X, "text"]`` adds a description. A parameter with a default is not required
    and its default is in the schema. If the first parameter is annotated
    :class:`ToolContext`, the tool receives the context there and it is not in the schema.

    The description is the docstring's first paragraph; per-parameter descriptions come from
    a Google-style ``Args:`` section or Sphinx ``:param x:`` lines.

    Arguments are validated strictly against the annotations: an int is accepted for a float
    and an integral float for an int, nothing else is converted (``"5"`` is not an int).

    :param fn: the tool function (``async def``).
    :param name: the tool's name; defaults to the function's name.
    :param description: the tool's description; defaults to the docstring's first paragraph.
    :param timeout: seconds (trio's clock) a call may take; ``None`` for the executor's default.
    :param requires_approval: a person must approve each call before it runs (the run stops
        with :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED`; see :meth:`Agent.resume
        <trio_agents.Agent.resume>`).
    :param idempotent: running a call twice (with the same
        :attr:`ToolContext.idempotency_key`) has the effect of running it once, so a journaled
        run resumed after a crash may run a call left in doubt again (see
        :class:`~trio_agents.RunJournal`).
    :raises InvalidArgumentError: ``fn`` is not an ``async def`` function, or a parameter has
        no annotation or one without a JSON schema (the message names the parameter).
    """
    checked_timeout = _check_timeout(timeout, "timeout")
    if fn is None:

        def decorate(fn: ToolFunction) -> Tool:
            return _make_tool(
                fn,
                name=name,
                description=description,
                timeout=checked_timeout,
                localns=_caller_locals(),
                requires_approval=bool(requires_approval),
                idempotent=bool(idempotent),
            )

        return decorate
    return _make_tool(
        fn,
        name=name,
        description=description,
        timeout=checked_timeout,
        localns=_caller_locals(),
        requires_approval=bool(requires_approval),
        idempotent=bool(idempotent),
    )


# --------------------------------------------------------------------------- executors


@runtime_checkable
class ToolExecutor(Protocol):
    """Anything that can run tool calls.

    :meth:`execute` turns every problem caused by the model or the tool (unknown tool, bad
    arguments, timeout, exception) into an error result. An exception it raises is a
    deliberate failure of the whole turn: :func:`execute_tool_calls` lets it propagate and
    cancels the turn's other calls.
    """

    def definitions(self) -> Sequence[ToolDefinition]:
        """The tools this executor runs, as told to the model."""
        ...

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        """Run one call and return its result."""
        ...


@runtime_checkable
class ToolPolicy(Protocol):
    """A check run before every tool call.

    :meth:`check` returns to allow the call and raises to deny it: :class:`~trio_agents.ToolDenied`
    with a reason for the model, or any other exception (fail closed).

    A policy may also have a method ``needs_approval(call, agent) -> bool`` (``agent`` is the
    asking agent's path): when it answers true the call is not run and waits for a person (see
    :meth:`Agent.resume <trio_agents.Agent.resume>`). :class:`~trio_agents.PolicyEngine` has
    one (:meth:`~trio_agents.PolicyEngine.require_approval`).
    """

    def check(self, call: ToolCallBlock, ctx: ToolContext) -> None:
        """Raise to deny ``call``; return to allow it. Must not block."""
        ...


# Classes whose instances passed the ToolExecutor check: an isinstance against a
# runtime-checkable Protocol costs ~8 µs on Python 3.11, which every delegation paid (see
# _models.check_model, which does the same for Model).
_EXECUTOR_CLASSES: set[type] = set()


def _is_executor(value: object) -> TypeGuard[ToolExecutor]:
    """``isinstance(value, ToolExecutor)``, cached per class."""
    cls = type(value)
    if cls in _EXECUTOR_CLASSES:
        return True
    if cls is tuple or cls is list:
        # A sequence of tools. Exact builtins have no instance attributes: never an executor.
        return False
    if not isinstance(value, ToolExecutor):
        return False
    if callable(getattr(cls, "execute", None)) and callable(getattr(cls, "definitions", None)):
        _EXECUTOR_CLASSES.add(cls)  # methods of the class: every instance passes the same way
    return True


class Toolset:
    """The default :class:`ToolExecutor`: runs :class:`Tool` objects by name.

    :param tools: the tools; their names must be unique.
    :param timeout: seconds (trio's clock) a call may take, for tools without their own
        :attr:`Tool.timeout`; ``None`` for no limit.
    :raises InvalidArgumentError: an item is not a :class:`Tool`, two tools share a name, or
        ``timeout`` is not a positive number.
    """

    __slots__ = ("_definitions", "_timeout", "_tools")

    def __init__(self, tools: Iterable[Tool] = (), *, timeout: float | None = None) -> None:
        self._timeout = _check_timeout(timeout, "timeout")
        if isinstance(tools, Tool):
            raise InvalidArgumentError("tools must be an iterable of Tool; wrap one tool: [tool]")
        found: dict[str, Tool] = {}
        items: Iterable[object] = tools
        for index, item in enumerate(items):
            if not isinstance(item, Tool):
                hint = "; decorate the function with @trio_agents.tool" if callable(item) else ""
                raise InvalidArgumentError(
                    f"tools[{index}] must be a Tool; got {type(item).__name__}{hint}"
                )
            if item.name in found:
                raise InvalidArgumentError(
                    f"duplicate tool name {item.name!r} in tools; tool names must be unique "
                    "(rename one with @tool(name=...))"
                )
            found[item.name] = item
        self._tools = found
        self._definitions = tuple(t.definition() for t in found.values())

    @property
    def timeout(self) -> float | None:
        """The default timeout for tools without their own."""
        return self._timeout

    def definitions(self) -> Sequence[ToolDefinition]:
        """The tools' definitions, in the order the tools were given."""
        return self._definitions

    def get(self, name: str) -> Tool | None:
        """The tool called ``name``, or ``None``."""
        return self._tools.get(name)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, Tool):
            return self._tools.get(item.name) == item
        return isinstance(item, str) and item in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __repr__(self) -> str:
        return f"Toolset([{', '.join(self._tools)}], timeout={self._timeout!r})"

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        """Run ``call``; every failure except cancellation becomes an error result."""
        found = self._tools.get(call.name)
        if found is None:
            return _error_result(call, _unknown_tool_message(call.name, self._tools))
        if call.raw_arguments is not None:
            return _error_result(call, _invalid_json_message(call))
        timeout = found.timeout if found.timeout is not None else self._timeout
        try:
            content = await found._invoke(call.arguments, ctx, timeout)
        except Exception as exc:
            return _error_result(call, _exception_message(call.name, exc))
        return ToolResultBlock(tool_call_id=call.id, content=content, tool_name=call.name)


def _invalid_json_message(call: ToolCallBlock) -> str:
    raw = call.raw_arguments or ""
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        detail = str(exc)
    else:
        detail = f"expected a JSON object, got {type(decoded).__name__}"
    return (
        f"invalid JSON arguments for tool {call.name!r}: {detail}; "
        "send the arguments as one JSON object"
    )


class _CombinedExecutor:
    """Routes each call to the executor that defines its tool."""

    __slots__ = ("_executors",)

    def __init__(self, executors: tuple[ToolExecutor, ...]) -> None:
        self._executors = executors
        self._routes()

    def _routes(self) -> dict[str, ToolExecutor]:
        routes: dict[str, ToolExecutor] = {}
        for executor in self._executors:
            for definition in executor.definitions():
                if definition.name in routes:
                    raise InvalidArgumentError(
                        f"tool {definition.name!r} is defined by more than one executor "
                        f"({routes[definition.name]!r} and {executor!r}); tool names must be unique"
                    )
                routes[definition.name] = executor
        return routes

    def definitions(self) -> Sequence[ToolDefinition]:
        self._routes()
        return [d for executor in self._executors for d in executor.definitions()]

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        for executor in self._executors:
            if any(d.name == call.name for d in executor.definitions()):
                return await executor.execute(call, ctx)
        names = (d.name for executor in self._executors for d in executor.definitions())
        return _error_result(call, _unknown_tool_message(call.name, names))

    def get(self, name: str) -> Tool | None:
        """The :class:`Tool` called ``name`` in the executor that defines it (``None`` when
        none does, or that executor cannot say): how an agent sees that a combined tool
        requires approval."""
        for executor in self._executors:
            if any(d.name == name for d in executor.definitions()):
                get = getattr(executor, "get", None)
                found = get(name) if get is not None else None
                return found if isinstance(found, Tool) else None
        return None

    def __repr__(self) -> str:
        return f"combine_executors({', '.join(repr(e) for e in self._executors)})"


def combine_executors(*executors: ToolExecutor) -> ToolExecutor:
    """One executor that routes each call by tool name to the executor defining that tool.

    The executors' :meth:`~ToolExecutor.definitions` are read again at every call, so
    executors whose tools change are followed. A call to a tool none of them defines gets an
    error result listing every available tool.

    :raises InvalidArgumentError: an argument is not a :class:`ToolExecutor`, or two executors
        define a tool of the same name.
    """
    for index, executor in enumerate(executors):
        if not _is_executor(executor):
            raise InvalidArgumentError(
                f"executors[{index}] must be a ToolExecutor (definitions() and async "
                f"execute()); got {type(executor).__name__}"
            )
    return _CombinedExecutor(executors)


# --------------------------------------------------------------------------- one turn


@attrs.define(eq=False)
class _Started:
    call: ToolCallBlock
    ctx: ToolContext
    time: float
    denial: ToolResultBlock | None = None


def _interrupted_result(call: ToolCallBlock, exc: BaseException) -> ToolResultBlock:
    if only_cancelled(exc) is not None:
        return _error_result(call, f"tool {call.name!r} was cancelled")
    text = str(exc)
    return _error_result(
        call,
        f"tool {call.name!r} did not finish: {type(exc).__name__}" + (f": {text}" if text else ""),
    )


@attrs.define(eq=False)
class _TurnRunner:
    executor: ToolExecutor
    agent: str
    deps: Any
    infra: Any
    limiter: trio.CapacityLimiter | None
    policy: ToolPolicy | None
    event_sink: EventSink | None

    def emit(self, event: Event) -> None:
        if self.event_sink is not None:
            self.event_sink(event)

    async def acquire(self) -> object:
        borrower = object()  # one token per call, even for calls made from the same task
        if self.limiter is not None:
            await self.limiter.acquire_on_behalf_of(borrower)
        return borrower

    def release(self, borrower: object) -> None:
        if self.limiter is not None:
            self.limiter.release_on_behalf_of(borrower)

    def check(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock | None:
        if self.policy is None:
            return None
        check = cast(Callable[[ToolCallBlock, ToolContext], object], self.policy.check)
        try:
            outcome = check(call, ctx)
        except ToolDenied as exc:
            reason = str(exc)
        except Exception as exc:
            text = str(exc)
            reason = f"policy check raised {type(exc).__name__}" + (f": {text}" if text else "")
        else:
            if not inspect.isawaitable(outcome):
                return None
            if inspect.iscoroutine(outcome):
                outcome.close()
            reason = (
                "the policy's check() returned an awaitable; ToolPolicy.check must be synchronous"
            )
        return _error_result(call, f"tool call denied: {reason}")

    def begin(self, call: ToolCallBlock) -> _Started:
        """Emit ToolStarted and check the policy (in call order, in the caller's task)."""
        ctx = ToolContext(agent=self.agent, call=call, deps=self.deps, infra=self.infra)
        started = _Started(call=call, ctx=ctx, time=trio.current_time())
        self.emit(ToolStarted(time=started.time, agent=self.agent, call=call))
        started.denial = self.check(call, ctx)
        if started.denial is not None:
            self.finished(started, started.denial)
        return started

    def finished(self, started: _Started, result: ToolResultBlock) -> None:
        now = trio.current_time()
        self.emit(
            ToolFinished(time=now, agent=self.agent, result=result, duration=now - started.time)
        )

    async def finish(self, started: _Started) -> ToolResultBlock:
        try:
            result = await self.executor.execute(started.call, started.ctx)
        except BaseException as exc:
            self.finished(started, _interrupted_result(started.call, exc))
            if isinstance(exc, BaseExceptionGroup):
                # An executor (or a tool) whose own nursery was cancelled from outside.
                reraise_cancelled(exc)
            raise
        self.finished(started, result)
        return result

    async def run_one(self, call: ToolCallBlock) -> ToolResultBlock:
        borrower = await self.acquire()
        try:
            started = self.begin(call)
            if started.denial is not None:
                return started.denial
            return await self.finish(started)
        finally:
            self.release(borrower)

    async def run_many(self, calls: Sequence[ToolCallBlock]) -> list[ToolResultBlock]:
        results: list[ToolResultBlock | None] = [None] * len(calls)

        async def run(index: int, started: _Started, borrower: object) -> None:
            try:
                results[index] = await self.finish(started)
            finally:
                self.release(borrower)

        async with trio.open_nursery() as nursery:
            for index, call in enumerate(calls):
                # Admission, ToolStarted and the policy check happen here, in call order,
                # so that events and limiter turns are deterministic.
                borrower = await self.acquire()
                try:
                    started = self.begin(call)
                except BaseException:
                    self.release(borrower)
                    raise
                if started.denial is not None:
                    results[index] = started.denial
                    self.release(borrower)
                    continue
                nursery.start_soon(
                    run, index, started, borrower, name=f"tool {call.name} {call.id}"
                )
        return [result for result in results if result is not None]


def _collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside a group of one; otherwise the group itself."""
    if len(group.exceptions) == 1:
        return group.exceptions[0]
    return group


async def execute_tool_calls(
    executor: ToolExecutor,
    calls: Sequence[ToolCallBlock],
    *,
    agent: str,
    deps: Any = None,
    infra: Any = None,
    limiter: trio.CapacityLimiter | None = None,
    policy: ToolPolicy | None = None,
    event_sink: EventSink | None = None,
) -> list[ToolResultBlock]:
    """Run every tool call of one assistant turn concurrently; return the results in call order.

    Calls start in order: each takes a token of ``limiter`` (if given), then
    :class:`~trio_agents.ToolStarted` is emitted and ``policy`` checked; a denied call (the
    check raised anything: fail closed) gets the error result ``"tool call denied: ..."``
    without running. Each call ends with :class:`~trio_agents.ToolFinished`, also when it is
    cancelled (then with an error result that says so, which is not returned). A single call
    runs in the caller's task, without a nursery.

    Cancelling the enclosing scope cancels every running call at once; ``trio.Cancelled``
    propagates. An exception raised by ``executor.execute`` (executors turn ordinary failures
    into results, so this is a deliberate fail-fast) cancels the other calls and propagates;
    a single exception is not wrapped in an exception group.

    :param executor: runs each call.
    :param calls: the turn's tool calls.
    :param agent: path of the calling agent, for :class:`ToolContext` and events.
    :param deps: user dependencies, passed on in :class:`ToolContext`.
    :param infra: shared infrastructure, passed on in :class:`ToolContext`.
    :param limiter: caps how many calls run at once.
    :param policy: checked before each call.
    :param event_sink: receives the tool events.
    """
    runner = _TurnRunner(
        executor=executor,
        agent=agent,
        deps=deps,
        infra=infra,
        limiter=limiter,
        policy=policy,
        event_sink=event_sink,
    )
    if not calls:
        return []
    if len(calls) == 1:
        return [await runner.run_one(calls[0])]
    try:
        return await runner.run_many(calls)
    except BaseExceptionGroup as group:
        reraise_cancelled(group)  # only Cancelled (at any depth): the bare Cancelled
        collapsed = _collapse(group)
        if collapsed is group:
            raise
        raise collapsed from collapsed.__cause__
