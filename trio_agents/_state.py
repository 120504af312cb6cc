"""Shared key-value state with a transition log: :class:`StateStore`.

Rules:

* Keys are strings; values are JSON data (dicts with string keys, lists, str, int, float,
  bool, ``None``). Anything else, NaN and infinities included, is rejected with
  :class:`~trio_agents.InvalidArgumentError` naming the key, and the store is left as it was.
* The store keeps its own copies: changing a value after :meth:`StateStore.set`, or a value
  returned by :meth:`StateStore.get` or :meth:`StateStore.snapshot`, never changes the state.
* Every :meth:`~StateStore.set` and :meth:`~StateStore.delete` call records exactly one
  :class:`StateTransition`, even when it changes nothing (rewriting the same value, deleting
  a missing key): the log is an audit trail of writes. :meth:`~StateStore.restore` records
  one transition per key whose value it actually changes.
* Transitions are numbered from 0 in the order they happened; ``transitions(since=n)`` returns
  those numbered ``n`` and later, so ``mark = len(store.transitions())`` followed later by
  ``store.transitions(since=mark)`` gives the writes in between.
* Whether a key existed is recorded separately from its value (``existed_before``,
  ``exists_after``), so a key holding JSON ``null`` is not confused with a missing key.
* ``time`` is :func:`trio.current_time` when the write happens inside a trio run, ``0.0``
  otherwise (trio's clock only exists inside a run).
* All methods are synchronous and never yield to the scheduler, so a read after a write in the
  same task always sees the write, and no other task can interleave within one call.

The durable backend (:meth:`StateStore.open_sqlite`) writes through to an SQLite database with
the standard library's :mod:`sqlite3`: each write is one small local transaction, committed
before the method returns, in the calling thread. It is synchronous on purpose: a write that
awaited (``trio.to_thread``) would make ``set`` async, let other tasks interleave between a
write and the read that follows it, and add a thread hop to work that itself takes a fraction
of a millisecond (0.07 to 0.2 ms per write measured on a local disk). The database runs in
WAL mode with ``synchronous=NORMAL``, so a commit does not wait for ``fsync``: committed writes
survive the process crashing, and the last few may be lost if the machine loses power. Reads
are served from memory.

A store's file is marked as such (SQLite's ``application_id`` and ``user_version`` header
fields); :meth:`StateStore.open_sqlite` refuses, without writing to it, any file that is not
new, empty, or a store's own.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from typing import Final

import attrs
import trio

from ._errors import DeserializationError, InvalidArgumentError, UsageError
from ._messages import JSONValue
from ._serde import _copy_json, _NotJSON

_SCHEMA_VERSION: Final = 1
_JSON_HINT: Final = (
    "values must be JSON data: dicts with str keys, lists, str, int, float, bool, None"
)


SQLITE_APPLICATION_ID: Final = 0x54524741
"""The ``PRAGMA application_id`` of the SQLite files this library writes (ASCII ``"TRGA"``).

A file carries it from the moment the library initialises it; together with ``PRAGMA
user_version`` (the schema version of the kind of file) it tells the library's files apart
from every other SQLite database, which are refused and left untouched."""

# The tables and columns (name, declared type) a StateStore file holds; a file written before
# the files were marked (no application id, user_version 0 or 1) is recognised by exactly these.
_STATE_TABLES: Final = {
    "state": (("key", "TEXT"), ("value", "TEXT")),
    "transitions": (
        ("idx", "INTEGER"),
        ("key", "TEXT"),
        ("old", "TEXT"),
        ("new", "TEXT"),
        ("by", "TEXT"),
        ("time", "REAL"),
    ),
}


def _schema(db: sqlite3.Connection) -> dict[str, tuple[tuple[str, str], ...]]:
    """The tables of ``db`` (sqlite's internal ones excluded) with their columns."""
    names = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        table: tuple(
            (row[1], row[2].upper()) for row in db.execute(f"PRAGMA table_info({table!r})")
        )
        for table in names
    }


def _check_own_file(db: sqlite3.Connection, name: str) -> None:
    """Refuse (InvalidArgumentError) a database that is not a StateStore file or an empty one.

    Only reads: a refused file is not modified.
    """
    application_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if application_id == SQLITE_APPLICATION_ID:
        if version > _SCHEMA_VERSION:
            raise InvalidArgumentError(
                f"{name!r} is a StateStore database of schema version {version}, written by a "
                f"newer trio_agents; this version reads schema version {_SCHEMA_VERSION} "
                "(upgrade trio_agents to open it)"
            )
        if version == _SCHEMA_VERSION:
            return
        raise InvalidArgumentError(
            f"{name!r} is marked as a trio_agents database but has schema version {version}; "
            f"a StateStore database has schema version {_SCHEMA_VERSION}"
        )
    if application_id != 0:
        raise InvalidArgumentError(
            f"{name!r} is not a StateStore database: it belongs to another application "
            f"(SQLite application_id {application_id:#x}, a StateStore's is "
            f"{SQLITE_APPLICATION_ID:#x}); the file was left untouched"
        )
    schema = _schema(db)
    if not schema and version == 0:
        return  # a new or empty database: initialised by the caller
    if schema == _STATE_TABLES and version in (0, _SCHEMA_VERSION):
        return  # written before files were marked: stamped (migrated) by the caller
    tables = ", ".join(schema) or "none"
    raise InvalidArgumentError(
        f"{name!r} is not a StateStore database: it is an SQLite database of another "
        f"application (tables: {tables}; schema version {version}); a StateStore opens only "
        "a new or empty file or one it wrote; the file was left untouched"
    )


def _now() -> float:
    try:
        return trio.current_time()
    except RuntimeError:  # not inside a trio run
        return 0.0


def _check_key(key: object, argument: str = "key") -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(f"{argument} must be a str, got {type(key).__name__} {key!r}")
    return key


def _check_by(by: object) -> str:
    if not isinstance(by, str):
        raise InvalidArgumentError(f"by must be a str (who wrote), got {type(by).__name__} {by!r}")
    return by


def _encode(key: str, value: object) -> tuple[str, JSONValue]:
    """``value`` as JSON text, and a private copy of it.

    Raises InvalidArgumentError naming ``key`` if it is not JSON data.
    """
    try:
        copied = _copy_json(value)
    except _NotJSON as exc:
        where = exc.where()
        at = f" at {where}" if where else ""
        raise InvalidArgumentError(
            f"value for state key {key!r} is not JSON-compatible{at}: {exc.message} ({_JSON_HINT})"
        ) from None
    try:
        return json.dumps(copied, allow_nan=False, separators=(",", ":")), copied
    except ValueError:
        raise InvalidArgumentError(
            f"value for state key {key!r} holds NaN or an infinity, which JSON cannot represent"
        ) from None


def _decode(text: str | None) -> JSONValue:
    return None if text is None else json.loads(text)


@attrs.frozen(kw_only=True)
class StateTransition:
    """One write to a :class:`StateStore`: a key's value before and after.

    The values are the store's copies at the time of the write; treat them as read-only.
    """

    index: int
    """Position in the store's transition log, from 0."""
    key: str
    """The key written."""
    old: JSONValue
    """The value before (``None`` when the key did not exist: see :attr:`existed_before`)."""
    new: JSONValue
    """The value after (``None`` when the key was deleted: see :attr:`exists_after`)."""
    existed_before: bool
    """Whether the key existed before the write."""
    exists_after: bool
    """Whether the key exists after the write (``False`` for a delete)."""
    by: str
    """Who wrote, as given by the writer (e.g. an agent path); ``""`` when not given."""
    time: float
    """When, in seconds on trio's clock; ``0.0`` for writes made outside a trio run."""


class StateStore:
    """Key-value state shared by a tree of agents, with a log of every write.

    Keys are str, values JSON data; see the module rules above for copies, transitions and
    time. ``StateStore()`` keeps everything in memory; :meth:`open_sqlite` makes a durable
    one. Tools reach the tree's store as ``ctx.infra.state``.
    """

    __slots__ = ("_closed", "_db", "_path", "_transitions", "_values")

    def __init__(self) -> None:
        self._values: dict[str, str] = {}  # key -> JSON text, in insertion order
        self._transitions: list[StateTransition] = []
        self._db: sqlite3.Connection | None = None
        self._path: str | None = None
        self._closed = False

    # ------------------------------------------------------------------ durable backend

    @classmethod
    def open_sqlite(cls, path: str | os.PathLike[str]) -> StateStore:
        """A store backed by the SQLite database at ``path`` (created if missing).

        The current values and the whole transition log are loaded from the database, so
        reopening a path gives back the state and the log it had. Every later write is
        committed to the database before the method returns (synchronously; see the module
        rules). Use the store from the thread that opened it, and :meth:`close` it (or use it
        as a context manager) when done.

        Which files it opens: a missing or empty file (initialised), or a file a StateStore
        wrote. Its files are marked with ``PRAGMA application_id`` (``SQLITE_APPLICATION_ID``)
        and their schema version (``PRAGMA user_version``). Any other file is refused and left
        byte for byte as it was: another application's database (even one with no tables but a
        schema version of its own), a StateStore file of a newer schema version, a file that is
        not a database. A file written before the marks existed (no application id, exactly the
        store's two tables) is opened and stamped.

        :raises InvalidArgumentError: ``path`` is not a str or path, or the file is not a
            database written by this class (the message names the file and says why).
        :raises sqlite3.Error: the database cannot be opened (e.g. its directory is missing);
            later writes raise it too if the database fails, leaving the store as it was.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentError(
                f"path must be a str or os.PathLike, got {type(path).__name__} {path!r}"
            )
        name = os.fspath(path)
        store = cls()
        store._path = name
        db = sqlite3.connect(name)
        try:
            store._attach(db, name)
        except BaseException:
            db.close()
            raise
        return store

    def _attach(self, db: sqlite3.Connection, name: str) -> None:
        try:
            # Only reads until the file is known to be ours (or empty): a file that is
            # refused is left exactly as it was.
            _check_own_file(db, name)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                db.execute(
                    "CREATE TABLE IF NOT EXISTS transitions (idx INTEGER PRIMARY KEY, "
                    "key TEXT NOT NULL, old TEXT, new TEXT, by TEXT NOT NULL, time REAL NOT NULL)"
                )
                db.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            values = dict(db.execute("SELECT key, value FROM state ORDER BY rowid").fetchall())
            rows = db.execute(
                "SELECT idx, key, old, new, by, time FROM transitions ORDER BY idx"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise InvalidArgumentError(f"{name!r} is not a StateStore database: {exc}") from exc
        transitions: list[StateTransition] = []
        try:
            for values_text in values.values():
                json.loads(values_text)
            for position, (index, key, old, new, by, time) in enumerate(rows):
                if index != position:
                    raise ValueError(f"transition {position} is numbered {index}")
                transitions.append(
                    StateTransition(
                        index=index,
                        key=key,
                        old=_decode(old),
                        new=_decode(new),
                        existed_before=old is not None,
                        exists_after=new is not None,
                        by=by,
                        time=time,
                    )
                )
        except ValueError as exc:
            raise DeserializationError(f"corrupt StateStore database {name!r}: {exc}") from exc
        self._values = values
        self._transitions = transitions
        self._db = db

    @property
    def path(self) -> str | None:
        """The database file of a durable store; ``None`` for an in-memory one."""
        return self._path

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the store (and its database). Idempotent.

        Reads keep working from memory; writes raise :class:`~trio_agents.UsageError`.
        """
        self._closed = True
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads

    def get(self, key: str, default: JSONValue = None) -> JSONValue:
        """A copy of the value of ``key``, or ``default`` if it is not set."""
        text = self._values.get(_check_key(key))
        return default if text is None else json.loads(text)

    def keys(self) -> list[str]:
        """The keys, in the order they were first set (a key deleted and set again moves last)."""
        return list(self._values)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def snapshot(self) -> dict[str, JSONValue]:
        """A deep copy of the whole state, as a dict (for :meth:`restore`)."""
        return {key: json.loads(text) for key, text in self._values.items()}

    def transitions(self, since: int = 0) -> list[StateTransition]:
        """The transitions numbered ``since`` and later, oldest first."""
        if isinstance(since, bool) or not isinstance(since, int) or since < 0:
            raise InvalidArgumentError(
                f"since must be an int >= 0 (a transition index), got {since!r}"
            )
        return self._transitions[since:]

    # ------------------------------------------------------------------ writes

    def set(self, key: str, value: JSONValue, *, by: str = "") -> StateTransition:
        """Set ``key`` to (a copy of) ``value``; returns the transition recorded.

        :raises InvalidArgumentError: ``key`` is not a str, ``value`` is not JSON data (the
            message names the key and where in the value), or ``by`` is not a str.
        :raises UsageError: the store is closed.
        """
        encoded = _encode(_check_key(key), value)
        return self._apply([(key, encoded)], _check_by(by), record_unchanged=True)[0]

    def delete(self, key: str, *, by: str = "") -> bool:
        """Delete ``key``; returns whether it existed. Records a transition either way.

        :raises UsageError: the store is closed.
        """
        _check_key(key)
        existed = key in self._values
        self._apply([(key, None)], _check_by(by), record_unchanged=True)
        return existed

    def restore(self, snapshot: Mapping[str, JSONValue], *, by: str = "") -> list[StateTransition]:
        """Make the state equal to ``snapshot``; returns the transitions recorded.

        Keys missing from ``snapshot`` are deleted (in key order), then keys whose value
        differs are set (in ``snapshot`` order): one transition per changed key, none for a
        key that already has the same value (same JSON text, so ``1`` and ``1.0`` differ).
        Everything is validated first, so a bad snapshot changes nothing; a durable store
        commits the whole restore in one transaction.

        :raises InvalidArgumentError: ``snapshot`` is not a mapping of str keys to JSON data.
        """
        if not isinstance(snapshot, Mapping):
            raise InvalidArgumentError(
                f"snapshot must be a mapping of str keys to JSON values (as returned by "
                f"snapshot()), got {type(snapshot).__name__}"
            )
        _check_by(by)
        wanted = {
            _check_key(key, "snapshot key"): _encode(key, value) for key, value in snapshot.items()
        }
        changes: list[tuple[str, tuple[str, JSONValue] | None]] = [
            (key, None) for key in self._values if key not in wanted
        ]
        changes += [
            (key, encoded) for key, encoded in wanted.items() if self._values.get(key) != encoded[0]
        ]
        return self._apply(changes, by, record_unchanged=False)

    def _apply(
        self,
        changes: list[tuple[str, tuple[str, JSONValue] | None]],
        by: str,
        *,
        record_unchanged: bool,
    ) -> list[StateTransition]:
        """Record and perform ``changes`` atomically.

        Each change is (key, (new JSON text, a private copy of the new value)), or (key,
        None) to delete.
        """
        if self._closed:
            raise UsageError("this StateStore is closed; open a new one to write")
        time = _now()
        values = self._values
        # key, old text, new text, new value
        pending: list[tuple[str, str | None, str | None, JSONValue]] = []
        for key, encoded in changes:
            old = values.get(key)
            new, new_value = (None, None) if encoded is None else encoded
            if old != new or record_unchanged:
                pending.append((key, old, new, new_value))
        if not pending:
            return []
        first = len(self._transitions)
        if self._db is not None:
            with self._db:  # one transaction; memory changes only after it committed
                for offset, (key, old, new, _) in enumerate(pending):
                    if new is None:
                        self._db.execute("DELETE FROM state WHERE key = ?", (key,))
                    else:
                        self._db.execute(
                            "INSERT INTO state (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (key, new),
                        )
                    self._db.execute(
                        "INSERT INTO transitions (idx, key, old, new, by, time) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (first + offset, key, old, new, by, time),
                    )
        recorded: list[StateTransition] = []
        for offset, (key, old, new, new_value) in enumerate(pending):
            if new is None:
                values.pop(key, None)
            else:
                values[key] = new
            transition = StateTransition(
                index=first + offset,
                key=key,
                old=_decode(old),
                new=new_value,
                existed_before=old is not None,
                exists_after=new is not None,
                by=by,
                time=time,
            )
            self._transitions.append(transition)
            recorded.append(transition)
        return recorded

    def __repr__(self) -> str:
        where = f" at {self._path!r}" if self._path is not None else ""
        return (
            f"<StateStore{where} {len(self._values)} keys, "
            f"{len(self._transitions)} transitions{' (closed)' if self._closed else ''}>"
        )
