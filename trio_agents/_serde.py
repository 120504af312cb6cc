"""The one cattrs converter: every value of trio_agents to JSON-compatible data and back.

Wire format
-----------

* attrs classes become JSON objects keyed by field name; every field is written, defaults too.
* Content blocks, messages and stream deltas carry a ``"type"`` tag (see :data:`TYPE_TAGS`),
  written first; events carry their :attr:`Event.kind <trio_agents.Event.kind>` under
  ``"kind"``. The tag is written whenever the class is dumped, and required when loading, even
  into the concrete class (a tag that names another class is an error). Loading into a base
  event class returns the subclass the tag names.
* Enums become their values, tuples become lists, :data:`~trio_agents.JSONValue` fields
  (tool arguments, schemas, settings) are copied as they are and must already be JSON data.
* Floats are written as Python floats, so ``json.dumps``/``json.loads`` round-trips them
  exactly (``repr`` is the shortest exact form).

Loading is strict: wrong types are not coerced (``"3"`` is not an int, ``1`` is not a
string), unknown fields are errors, and every problem is reported with its path, e.g.
``invalid data for AgentResult @ $.messages[2].content[0]: unknown type tag 'txt' (expected
one of: text, image)``.

Event subclasses may be defined anywhere, before or after this module is imported: the kind
→ class map is built from :func:`trio_agents._events.all_event_types` when needed and
refreshed whenever an unknown kind is met.
"""

from __future__ import annotations

import enum
import json
import re
import types
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Final, TypeVar, Union, get_args, get_origin, overload

import attrs
import cattrs
from cattrs.errors import (
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
    StructureHandlerNotFoundError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._errors import DeserializationError, InvalidArgumentError
from ._events import Event, all_event_types
from ._messages import (
    AssistantContent,
    AssistantMessage,
    ContentBlock,
    ImageBlock,
    Message,
    SystemMessage,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    ToolResultBlock,
    ToolResultMessage,
    UserContent,
    UserMessage,
)
from ._models import StreamDone, StreamEvent, TextDelta, ThinkingDelta, ToolCallDelta

__all__ = [
    "TYPE_TAGS",
    "converter",
    "dump",
    "dumps_json",
    "event_classes",
    "load",
    "loads_json",
]

T = TypeVar("T")

_NoneType = type(None)
_MISSING: Final = object()

TYPE_KEY: Final = "type"
"""Key of the tag of content blocks, messages and stream deltas."""
KIND_KEY: Final = "kind"
"""Key of the tag of events."""

TYPE_TAGS: Final[Mapping[type, str]] = types.MappingProxyType(
    {
        TextBlock: "text",
        ImageBlock: "image",
        ThinkingBlock: "thinking",
        ToolCallBlock: "tool_call",
        ToolResultBlock: "tool_result",
        SystemMessage: "system",
        UserMessage: "user",
        AssistantMessage: "assistant",
        ToolResultMessage: "tool_results",
        TextDelta: "text_delta",
        ThinkingDelta: "thinking_delta",
        ToolCallDelta: "tool_call_delta",
        StreamDone: "stream_done",
    }
)
"""The ``"type"`` tag of every class that carries one."""

_ALIAS_NAMES: Final[dict[Any, str]] = {
    ContentBlock: "ContentBlock",
    UserContent: "UserContent",
    AssistantContent: "AssistantContent",
    Message: "Message",
    StreamEvent: "StreamEvent",
}

_JSON_HINT: Final = (
    "JSON-valued fields take dicts with string keys, lists, str, int, float, bool and None"
)


# --------------------------------------------------------------------------- helpers


class _Invalid(ValueError):
    """A leaf validation error whose message is shown to the user as it is."""


class _NotJSON(Exception):
    """Raised by :func:`_copy_json`; ``parts`` is the path inside the value, innermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[int | str] = []

    def where(self) -> str:
        return "".join(f"[{part!r}]" for part in reversed(self.parts))


def _describe(value: object) -> str:
    """A short description of a bad input value, for error messages."""
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _type_name(tp: Any) -> str:
    try:
        name = _ALIAS_NAMES.get(tp)
    except TypeError:  # unhashable type form
        name = None
    if name is not None:
        return name
    if isinstance(tp, type):
        return tp.__name__
    return re.sub(r"\btrio_agents\.(?:_\w+\.)*", "", repr(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _is_event_class(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Event)


def _own_kind(cls: type) -> str | None:
    kind = cls.__dict__.get("kind")
    return kind if isinstance(kind, str) else None


def _copy_json(value: Any) -> Any:
    """A deep copy of JSON data; raises :class:`_NotJSON` on anything else."""
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if cls is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.__class__ is not str:
                raise _NotJSON(f"object key {key!r} is not a string")
            try:
                out[key] = _copy_json(item)
            except _NotJSON as exc:
                exc.parts.append(key)
                raise
        return out
    if cls is list:
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(_copy_json(item))
            except _NotJSON as exc:
                exc.parts.append(index)
                raise
        return items
    raise _NotJSON(f"{_describe(value)} is not JSON data")


def _not_json_as_validation_error(exc: _NotJSON) -> Exception:
    """Turn a :class:`_NotJSON` into nested cattrs errors, so the path ends up in the message."""
    err: Exception = _Invalid(f"{exc.message} ({_JSON_HINT})")
    for part in exc.parts:
        err.__notes__ = [IterableValidationNote(f"JSON value @ {part!r}", part, Any)]
        err = IterableValidationError("invalid JSON value", [err], object)
    return err


def _not_json_as_usage_error(exc: _NotJSON) -> InvalidArgumentError:
    where = exc.where()
    at = f" at {where}" if where else ""
    return InvalidArgumentError(f"not JSON-compatible{at}: {exc.message} ({_JSON_HINT})")


# --------------------------------------------------------------------------- event kinds


class _EventKinds:
    """The kind → class map of every :class:`Event` subclass, built lazily and refreshed."""

    def __init__(self) -> None:
        self._by_kind: dict[str, type[Event]] = {}
        self._clashes: dict[str, list[type[Event]]] = {}
        self._refreshed = False

    def refresh(self) -> None:
        by_kind: dict[str, type[Event]] = {}
        clashes: dict[str, list[type[Event]]] = {}
        candidates: list[type[Event]] = [Event, *all_event_types()]
        for cls in candidates:
            # attrs builds slotted classes anew; the class it started from stays among
            # __subclasses__() until collected. Only finished attrs classes count.
            if "__attrs_attrs__" not in cls.__dict__:
                continue
            kind = _own_kind(cls)
            if kind is None:
                continue
            other = by_kind.get(kind)
            if other is None:
                by_kind[kind] = cls
            elif (other.__module__, other.__qualname__) == (cls.__module__, cls.__qualname__):
                # The same class defined again (a reloaded module, a class made in a
                # function): the newest definition wins.
                by_kind[kind] = cls
            else:
                clashes.setdefault(kind, [other]).append(cls)
        self._by_kind = by_kind
        self._clashes = clashes
        self._refreshed = True

    def lookup(self, kind: str) -> type[Event] | None:
        """The class of ``kind``; ``None`` if no event class has it.

        Raises :class:`_Invalid` if two different classes claim it.
        """
        cls = self._by_kind.get(kind)
        if cls is None or kind in self._clashes:
            self.refresh()
            cls = self._by_kind.get(kind)
            if kind in self._clashes:
                raise _Invalid(f"event kind {kind!r} is ambiguous: {self._clash_text(kind)}")
        return cls

    def check_dumpable(self, cls: type[Event]) -> str:
        """The kind to write for ``cls``; raises a usage error if it has none of its own."""
        kind = _own_kind(cls)
        if kind is None or not attrs.has(cls):
            raise InvalidArgumentError(
                f"cannot dump {cls.__qualname__}: an Event subclass must be an attrs class "
                "with its own tag, e.g. kind: ClassVar[str] = 'my_event'"
            )
        self.refresh()
        if kind in self._clashes:
            raise InvalidArgumentError(
                f"cannot dump {cls.__qualname__}: event kind {kind!r} is used by "
                f"{self._clash_text(kind)}; give each Event subclass its own kind"
            )
        return kind

    def kinds_under(self, base: type) -> list[str]:
        if not self._refreshed:
            self.refresh()
        return [k for k, c in self._by_kind.items() if issubclass(c, base)]

    def classes_under(self, base: type) -> list[type[Event]]:
        self.refresh()
        return [
            c for k, c in self._by_kind.items() if issubclass(c, base) and k not in self._clashes
        ]

    def _clash_text(self, kind: str) -> str:
        classes = [self._by_kind[kind], *self._clashes[kind][1:]]
        names = sorted({f"{c.__module__}.{c.__qualname__}" for c in classes})
        return " and ".join(names)


_event_kinds = _EventKinds()


def event_classes(base: type[Event] = Event) -> list[type[Event]]:
    """Every event class (``base`` and its subclasses) that can be dumped and loaded now."""
    return _event_kinds.classes_under(base)


# --------------------------------------------------------------------------- the converter

_JSON_SCALARS: Final = (str, int, float, bool, _NoneType)


def _unstructure_fallback_factory(tp: Any) -> Callable[[Any], Any]:
    # Reached for scalars, literals and new types, and for classes without a hook: pass
    # JSON scalars through, refuse the rest when they are met.
    def unstructure_scalar(value: Any) -> Any:
        if value.__class__ in _JSON_SCALARS:
            return value
        raise InvalidArgumentError(
            f"cannot dump {_describe(value)}: trio_agents.converter has no hook for "
            f"{type(value).__qualname__} (register one with "
            "trio_agents.converter.register_unstructure_hook)"
        )

    return unstructure_scalar


converter: Final = cattrs.Converter(
    detailed_validation=True,
    unstructure_fallback_factory=_unstructure_fallback_factory,
    unstruct_collection_overrides={Sequence: list, AbstractSet: list},
)
"""The converter behind :func:`dump` and :func:`load`; register hooks for your own types here."""


# ---- primitives: strict, no coercion


def _structure_str(value: Any, cl: Any) -> Any:
    if isinstance(value, str):
        if cl is str:
            return value
        if isinstance(cl, type) and issubclass(cl, enum.Enum):
            return _structure_enum(value, cl)
        return cl(value)
    raise _Invalid(f"expected a string, got {_describe(value)}")


def _structure_int(value: Any, cl: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        if cl is int:
            return value
        if isinstance(cl, type) and issubclass(cl, enum.Enum):
            return _structure_enum(value, cl)
        return cl(value)
    raise _Invalid(f"expected an integer, got {_describe(value)}")


def _structure_float(value: Any, cl: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return cl(value)
        except OverflowError:
            raise _Invalid(f"number too large for a float: {_describe(value)}") from None
    raise _Invalid(f"expected a number, got {_describe(value)}")


def _structure_bool(value: Any, cl: Any) -> Any:
    if isinstance(value, bool):
        return value
    raise _Invalid(f"expected true or false, got {_describe(value)}")


def _structure_enum(value: Any, cl: Any) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return cl(value)
        except ValueError:
            pass
    expected = ", ".join(repr(m.value) for m in cl)
    raise _Invalid(f"invalid {cl.__name__} {_describe(value)} (expected one of: {expected})")


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)
# By class (singledispatch, so every Enum subclass), not by predicate: cattrs 25.2 and 25.3
# dispatch enums to their own hook ahead of predicate hooks, and their error would not list
# the allowed values.
converter.register_structure_hook(enum.Enum, _structure_enum)


# ---- JSON values (Any, dict[str, Any], list[Any]): copied, must be JSON data


def _is_json_type(tp: Any) -> bool:
    if tp is Any:
        return True
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (dict, Mapping, MutableMapping):
        return args == (str, Any)
    if origin in (list, Sequence, MutableSequence):
        return args == (Any,)
    return False


def _json_factory(tp: Any) -> Callable[[Any, Any], Any]:
    required: type | None = None
    if tp is not Any:
        required = dict if get_origin(tp) in (dict, Mapping, MutableMapping) else list
    required_name = "an object" if required is dict else "a list"

    def structure_json(value: Any, _: Any) -> Any:
        if required is not None and value.__class__ is not required:
            raise _Invalid(f"expected {required_name}, got {_describe(value)}")
        try:
            return _copy_json(value)
        except _NotJSON as exc:
            raise _not_json_as_validation_error(exc) from None

    return structure_json


def _unstructure_json(value: Any) -> Any:
    try:
        return _copy_json(value)
    except _NotJSON as exc:
        raise _not_json_as_usage_error(exc) from None


converter.register_unstructure_hook_func(_is_json_type, _unstructure_json)


# ---- containers: typed lists/tuples need a JSON array, typed dicts a JSON object


def _is_typed_sequence(tp: Any) -> bool:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is tuple:
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, Sequence, MutableSequence) and len(args) == 1


def _sequence_factory(tp: Any) -> Callable[[Any, Any], Any]:
    from cattrs.cols import homogenous_tuple_structure_factory, list_structure_factory

    inner = (
        homogenous_tuple_structure_factory(tp, converter)
        if get_origin(tp) is tuple
        else list_structure_factory(tp, converter)
    )

    def structure_sequence(value: Any, cl: Any) -> Any:
        if value.__class__ is not list and value.__class__ is not tuple:
            raise _Invalid(f"expected a list, got {_describe(value)}")
        return inner(value, cl)

    return structure_sequence


def _is_typed_mapping(tp: Any) -> bool:
    return get_origin(tp) in (dict, Mapping, MutableMapping) and len(get_args(tp)) == 2


def _mapping_factory(tp: Any) -> Callable[[Any, Any], Any]:
    from cattrs.cols import mapping_structure_factory

    inner = mapping_structure_factory(tp, converter, dict, detailed_validation=True)

    def structure_mapping(value: Any, cl: Any) -> Any:
        if not isinstance(value, dict):
            raise _Invalid(f"expected an object, got {_describe(value)}")
        return inner(value, cl)

    return structure_mapping


converter.register_structure_hook_factory(_is_typed_sequence, _sequence_factory)
converter.register_structure_hook_factory(_is_typed_mapping, _mapping_factory)
# Registered after the generic container factories, so JSON-valued containers win.
converter.register_structure_hook_factory(_is_json_type, _json_factory)
# A bare tuple (``dump((a, b))``) becomes a list like every typed one.
converter.register_unstructure_hook_func(
    lambda t: t is tuple, lambda value: [converter.unstructure(item) for item in value]
)


# ---- attrs classes: a JSON object with exactly the class's fields (plus its tag)


def _tag_of(cls: type) -> tuple[str, str] | None:
    tag = TYPE_TAGS.get(cls)
    if tag is not None:
        return TYPE_KEY, tag
    if issubclass(cls, Event):
        kind = _own_kind(cls)
        return (KIND_KEY, kind) if kind is not None else None
    return None


_exact_structurers: dict[type, Callable[[Any], Any]] = {}


def _exact_structurer(cls: type) -> Callable[[Any], Any]:
    """Structure a dict into exactly ``cls`` (checking its tag, if it has one)."""
    hook = _exact_structurers.get(cls)
    if hook is not None:
        return hook
    attrs.resolve_types(cls)
    params = getattr(cls, "__parameters__", ())
    # A generic class (AgentResult) is built as cls[Any, ...]: its fields do not use the
    # type variables at run time.
    built: Any = cls[tuple(Any for _ in params)] if params else cls  # type: ignore[index]
    base: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
        built, converter, _cattrs_forbid_extra_keys=False, _cattrs_detailed_validation=True
    )
    names = [a.name for a in attrs.fields(cls) if a.init]
    tag = _tag_of(cls)
    allowed = frozenset([*names, tag[0]] if tag else names)
    cls_name = cls.__name__

    def structure_exact(value: Any) -> Any:
        if value.__class__ is not dict:
            raise _Invalid(f"expected an object for {cls_name}, got {_describe(value)}")
        if tag is not None:
            key, expected = tag
            found = value.get(key, _MISSING)
            if found != expected:
                if found is _MISSING:
                    raise _Invalid(f"missing {key!r} tag (expected {expected!r} for {cls_name})")
                raise _Invalid(f"wrong {key} tag {found!r} (expected {expected!r} for {cls_name})")
        extra = value.keys() - allowed
        if not extra:
            return base(value, cls)
        error = _Invalid(
            f"unknown field{'s' if len(extra) > 1 else ''} "
            f"{', '.join(sorted(map(repr, extra)))} for {cls_name} "
            f"(fields: {', '.join(names) or 'none'})"
        )
        # Report the other problems of this object too (a misspelt field is also missing).
        others: list[Exception] = []
        try:
            base(value, cls)
        except ClassValidationError as exc:
            others = list(exc.exceptions)
        except Exception as exc:
            others = [exc]
        if others:
            raise ClassValidationError(f"While structuring {cls_name}", [error, *others], cls)
        raise error

    _exact_structurers[cls] = structure_exact
    return structure_exact


def _has_type_var(tp: Any) -> bool:
    return isinstance(tp, TypeVar) or any(_has_type_var(arg) for arg in get_args(tp))


def _is_plain_attrs(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and not issubclass(tp, Event)


def _attrs_structure_factory(cls: type) -> Callable[[Any, Any], Any]:
    exact = _exact_structurer(cls)
    return lambda value, _: exact(value)


def _attrs_unstructure_factory(cls: type) -> Callable[[Any], Any]:
    attrs.resolve_types(cls)
    # A field typed by a type variable (AgentResult.output) is dumped by its value's class.
    by_value: dict[str, Any] = {
        a.name: override(unstruct_hook=converter.unstructure)
        for a in attrs.fields(cls)
        if _has_type_var(a.type)
    }
    base: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, converter, **by_value)
    tag = _tag_of(cls)
    if tag is None:
        return base
    key, value = tag

    def unstructure_tagged(obj: Any) -> dict[str, Any]:
        out = {key: value}
        out.update(base(obj))
        return out

    return unstructure_tagged


converter.register_structure_hook_factory(_is_plain_attrs, _attrs_structure_factory)
converter.register_unstructure_hook_factory(_is_plain_attrs, _attrs_unstructure_factory)


# ---- events: tagged by kind, resolved lazily, polymorphic


_event_unstructurers: dict[type, Callable[[Any], Any]] = {}


def _unstructure_event(obj: Any) -> Any:
    """Unstructure any event by its runtime class (a field typed ``Event`` holds subclasses)."""
    cls = obj.__class__
    hook = _event_unstructurers.get(cls)
    if hook is None:
        hook = _event_unstructurers[cls] = _make_event_unstructurer(cls)
    return hook(obj)


def _make_event_unstructurer(cls: type[Event]) -> Callable[[Any], Any]:
    kind = _event_kinds.check_dumpable(cls)
    attrs.resolve_types(cls)
    base = make_dict_unstructure_fn(cls, converter)

    def unstructure_event(obj: Any) -> Any:
        out = {KIND_KEY: kind}
        out.update(base(obj))
        return out

    return unstructure_event


def _expected_kinds(base: type) -> str:
    kinds = _event_kinds.kinds_under(base)
    return ", ".join(kinds) if kinds else "none"


def _resolve_event_class(value: Any, bases: Sequence[type]) -> type:
    """The event class ``value`` (a dict) names, if it is a subclass of one of ``bases``."""
    kind = value.get(KIND_KEY, _MISSING)
    if kind is _MISSING:
        expected = ", ".join(_expected_kinds(b) for b in bases)
        raise _Invalid(f"missing {KIND_KEY!r} tag (expected one of: {expected})")
    cls = _event_kinds.lookup(kind) if isinstance(kind, str) else None
    if cls is None or not issubclass(cls, tuple(bases)):
        expected = ", ".join(_expected_kinds(b) for b in bases)
        what = "unknown" if cls is None else "unexpected"
        raise _Invalid(f"{what} event kind {kind!r} (expected one of: {expected})")
    return cls


def _event_structure_factory(cls: type) -> Callable[[Any, Any], Any]:
    own = _own_kind(cls)
    bases = (cls,)

    def structure_event(value: Any, _: Any) -> Any:
        if value.__class__ is not dict:
            raise _Invalid(f"expected an object for {cls.__name__}, got {_describe(value)}")
        kind = value.get(KIND_KEY, _MISSING)
        target = cls if own is not None and kind == own else _resolve_event_class(value, bases)
        return _exact_structurer(target)(value)

    return structure_event


converter.register_structure_hook_factory(_is_event_class, _event_structure_factory)
converter.register_unstructure_hook_func(_is_event_class, _unstructure_event)


# ---- tagged unions: blocks, messages, deltas, events (and None)


def _is_tagged_union(tp: Any) -> bool:
    if not _is_union(tp):
        return False
    members = [a for a in get_args(tp) if a is not _NoneType]
    return bool(members) and all(
        isinstance(m, type) and (m in TYPE_TAGS or issubclass(m, Event)) for m in members
    )


def _tagged_union_factory(union: Any) -> Callable[[Any, Any], Any]:
    args = get_args(union)
    allow_none = _NoneType in args
    by_tag = {TYPE_TAGS[m]: m for m in args if m in TYPE_TAGS}
    event_bases = tuple(m for m in args if m is not _NoneType and issubclass(m, Event))
    expected_tags = ", ".join(by_tag)
    union_name = _type_name(union)

    def structure_union(value: Any, _: Any) -> Any:
        if value is None and allow_none:
            return None
        if value.__class__ is not dict:
            raise _Invalid(f"expected an object for {union_name}, got {_describe(value)}")
        if by_tag:
            tag = value.get(TYPE_KEY, _MISSING)
            if tag.__class__ is str and tag in by_tag:
                return _exact_structurer(by_tag[tag])(value)
            if not (event_bases and KIND_KEY in value):
                if tag is _MISSING:
                    raise _Invalid(f"missing {TYPE_KEY!r} tag (expected one of: {expected_tags})")
                raise _Invalid(f"unknown {TYPE_KEY} tag {tag!r} (expected one of: {expected_tags})")
        return _exact_structurer(_resolve_event_class(value, event_bases))(value)

    return structure_union


converter.register_structure_hook_factory(_is_tagged_union, _tagged_union_factory)


# ---- other unions (``int | str``, ``Person | list[str]``): the member whose JSON type matches
# exactly wins, then the members in order; the error lists every member's complaint.


def _is_plain_union(tp: Any) -> bool:
    if not _is_union(tp) or _is_tagged_union(tp):
        return False
    members = [a for a in get_args(tp) if a is not _NoneType]
    return len(members) > 1


_PRIMITIVE_TYPES: Final = (str, int, float, bool)


def _plain_union_factory(union: Any) -> Callable[[Any, Any], Any]:
    args = get_args(union)
    allow_none = _NoneType in args
    members = [a for a in args if a is not _NoneType]
    union_name = _type_name(union)

    def structure_union(value: Any, _: Any) -> Any:
        if value is None and allow_none:
            return None
        for member in members:
            if member in _PRIMITIVE_TYPES and value.__class__ is member:
                return value
        complaints: list[str] = []
        for member in members:
            try:
                return converter.structure(value, member)
            except Exception as exc:
                problems: list[tuple[str, str]] = []
                _collect(exc, "$", problems)
                complaints.append(
                    f"as {_type_name(member)}: "
                    + "; ".join(f"{path[1:] or 'value'}: {msg}" for path, msg in problems[:2])
                )
        raise _Invalid(f"{_describe(value)} is no {union_name} ({'; '.join(complaints)})")

    return structure_union


converter.register_structure_hook_factory(_is_plain_union, _plain_union_factory)


# --------------------------------------------------------------------------- public API


def dump(obj: Any) -> Any:
    """Turn ``obj`` into JSON-compatible data (dicts, lists, str, int, float, bool, None).

    ``obj`` is dumped by its own class: a :class:`~trio_agents.TextBlock` becomes
    ``{"type": "text", "text": ...}``, an event ``{"kind": ..., "time": ..., ...}``.

    :raises InvalidArgumentError: if ``obj`` (or a JSON-valued field in it) holds something
        that is not JSON data.
    """
    return converter.unstructure(obj)


@overload
def load(data: Any, cls: type[T]) -> T: ...
@overload
def load(data: Any, cls: Any) -> Any: ...
def load(data: Any, cls: Any) -> Any:
    """Turn JSON-compatible ``data`` back into a value of ``cls``.

    ``cls`` may be a class (``AgentResult``), a union alias (:data:`~trio_agents.Message`,
    :data:`~trio_agents.ContentBlock`) or a base class (:class:`~trio_agents.Event`): the tag
    in the data picks the class.

    :raises DeserializationError: if ``data`` does not describe a ``cls``; the message says
        where, e.g. ``invalid data for AgentResult @ $.messages[2].content[0]: ...``. The
        cattrs error is the ``__cause__``.
    """
    try:
        return converter.structure(data, cls)
    except StructureHandlerNotFoundError:
        raise
    except Exception as exc:
        raise DeserializationError(_error_message(exc, cls)) from exc


def dumps_json(obj: Any, *, indent: int | None = None) -> str:
    """:func:`dump` ``obj`` and encode it as JSON text (ASCII, compact unless ``indent``)."""
    separators = (",", ":") if indent is None else None
    return json.dumps(dump(obj), indent=indent, separators=separators)


@overload
def loads_json(text: str | bytes, cls: type[T]) -> T: ...
@overload
def loads_json(text: str | bytes, cls: Any) -> Any: ...
def loads_json(text: str | bytes, cls: Any) -> Any:
    """Decode JSON ``text`` and :func:`load` it as ``cls``.

    :raises DeserializationError: if ``text`` is not JSON or does not describe a ``cls``.
    """
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DeserializationError(f"invalid JSON for {_type_name(cls)}: {exc}") from exc
    return load(data, cls)


# --------------------------------------------------------------------------- error messages

_MAX_ERRORS_SHOWN: Final = 5


def _collect(exc: BaseException, path: str, out: list[tuple[str, str]]) -> None:
    if isinstance(exc, IterableValidationError):
        iter_notes, others = exc.group_exceptions()
        for sub, inote in iter_notes:
            _collect(sub, f"{path}[{inote.index!r}]", out)
        for sub in others:
            _collect(sub, path, out)
    elif isinstance(exc, ClassValidationError):
        attr_notes, others = exc.group_exceptions()
        for sub, anote in attr_notes:
            _collect(sub, f"{path}.{anote.name}", out)
        for sub in others:
            _collect(sub, path, out)
    elif isinstance(exc, BaseValidationError):
        for sub in exc.exceptions:
            _collect(sub, path, out)
    else:
        out.append((path, _leaf_message(exc)))


def _leaf_message(exc: BaseException) -> str:
    if isinstance(exc, _Invalid):
        return str(exc)
    if isinstance(exc, KeyError):
        return "missing required field"
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown fields {', '.join(sorted(map(repr, exc.extra_fields)))}"
    return f"{type(exc).__name__}: {exc}"


def _error_message(exc: BaseException, cls: Any) -> str:
    problems: list[tuple[str, str]] = []
    _collect(exc, "$", problems)
    shown = "; ".join(f"@ {path}: {message}" for path, message in problems[:_MAX_ERRORS_SHOWN])
    more = len(problems) - _MAX_ERRORS_SHOWN
    if more > 0:
        shown += f"; and {more} more"
    return f"invalid data for {_type_name(cls)} {shown}"
