"""StateStore: transitions, copies, validation, snapshot/restore and the SQLite backend."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from trio_agents import InvalidArgumentError, StateStore, StateTransition, UsageError
from trio_agents._state import SQLITE_APPLICATION_ID
from trio_agents.testing import strategies


def test_set_get_delete_record_transitions() -> None:
    store = StateStore()
    first = store.set("plan", {"steps": [1, 2]}, by="lead")
    store.set("plan", None, by="lead/worker")
    assert store.delete("plan") is True
    assert store.delete("plan", by="x") is False  # a delete of a missing key is recorded too

    assert first == store.transitions()[0]
    assert store.transitions() == [
        StateTransition(
            index=0,
            key="plan",
            old=None,
            new={"steps": [1, 2]},
            existed_before=False,
            exists_after=True,
            by="lead",
            time=0.0,
        ),
        StateTransition(
            index=1,
            key="plan",
            old={"steps": [1, 2]},
            new=None,
            existed_before=True,
            exists_after=True,  # JSON null is a value, not a missing key
            by="lead/worker",
            time=0.0,
        ),
        StateTransition(
            index=2,
            key="plan",
            old=None,
            new=None,
            existed_before=True,
            exists_after=False,
            by="",
            time=0.0,
        ),
        StateTransition(
            index=3,
            key="plan",
            old=None,
            new=None,
            existed_before=False,
            exists_after=False,
            by="x",
            time=0.0,
        ),
    ]
    assert "plan" not in store
    assert store.get("plan", "absent") == "absent"
    assert len(store) == 0


def test_writing_the_same_value_is_recorded() -> None:
    store = StateStore()
    store.set("k", 1)
    store.set("k", 1)
    assert [(t.old, t.new) for t in store.transitions()] == [(None, 1), (1, 1)]


def test_transitions_since() -> None:
    store = StateStore()
    store.set("a", 1)
    mark = len(store.transitions())
    store.set("b", 2)
    store.set("a", 3)
    assert [(t.index, t.key) for t in store.transitions(since=mark)] == [(1, "b"), (2, "a")]
    assert store.transitions(since=10) == []
    for bad in (-1, 1.5, "1", True):
        with pytest.raises(InvalidArgumentError, match="since must be an int >= 0"):
            store.transitions(since=bad)  # type: ignore[arg-type]


def test_keys_contains_len_iter() -> None:
    store = StateStore()
    store.set("b", 1)
    store.set("a", 2)
    store.set("b", 3)  # keeps its place
    assert store.keys() == ["b", "a"]
    assert list(store) == ["b", "a"]
    assert len(store) == 2
    assert "a" in store
    assert "c" not in store
    assert 1 not in store
    store.delete("b")
    store.set("b", 4)  # set again: moves last
    assert store.keys() == ["a", "b"]


async def test_time_is_trios_clock(autojump_clock: trio.testing.MockClock) -> None:
    store = StateStore()
    start = trio.current_time()
    store.set("a", 1)
    await trio.sleep(5)
    store.delete("a")
    assert [t.time for t in store.transitions()] == [start, start + 5]


def test_time_outside_trio_is_zero() -> None:
    store = StateStore()
    assert store.set("a", 1).time == 0.0


def test_store_keeps_its_own_copies() -> None:
    store = StateStore()
    value: dict[str, Any] = {"items": [1, {"x": "y"}]}
    store.set("k", value)
    value["items"].append(99)
    value["items"][1]["x"] = "changed"
    assert store.get("k") == {"items": [1, {"x": "y"}]}

    got = store.get("k")
    got["items"].clear()
    snap = store.snapshot()
    snap["k"]["items"].append("z")
    snap["new"] = 1
    assert store.get("k") == {"items": [1, {"x": "y"}]}
    assert "new" not in store
    # the transition's value is not the caller's object either
    assert store.transitions()[0].new == {"items": [1, {"x": "y"}]}


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1: "a"}, "object key 1 is not a string"),
        ((1, 2), "tuple"),
        ({"a": [1, {2, 3}]}, "at ['a'][1]"),
        (object(), "object"),
        (b"bytes", "bytes"),
        (float("nan"), "NaN"),
        ({"deep": [float("inf")]}, "infinity"),
    ],
)
def test_non_json_values_are_rejected_naming_the_key(value: object, where: str) -> None:
    store = StateStore()
    store.set("ok", 1)
    with pytest.raises(InvalidArgumentError, match="state key 'bad'") as info:
        store.set("bad", value)
    assert where in str(info.value)
    assert store.snapshot() == {"ok": 1}
    assert len(store.transitions()) == 1


def test_bad_key_and_by() -> None:
    store = StateStore()
    with pytest.raises(InvalidArgumentError, match="key must be a str"):
        store.set(1, "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="key must be a str"):
        store.get(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="by must be a str"):
        store.set("k", "x", by=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="by must be a str"):
        store.delete("k", by=3)  # type: ignore[arg-type]
    assert store.transitions() == []


def test_snapshot_and_restore_record_only_changes() -> None:
    store = StateStore()
    store.set("keep", {"a": 1})
    store.set("change", 1)
    store.set("drop", True)
    snap = store.snapshot()
    assert snap == {"keep": {"a": 1}, "change": 1, "drop": True}

    store.set("change", 2)
    store.delete("drop")
    store.set("extra", [1])
    mark = len(store.transitions())

    recorded = store.restore(snap, by="restorer")
    assert store.snapshot() == snap
    after = store.transitions(since=mark)
    assert recorded == after
    assert [(t.key, t.old, t.new, t.existed_before, t.exists_after, t.by) for t in after] == [
        ("extra", [1], None, True, False, "restorer"),
        ("change", 2, 1, True, True, "restorer"),
        ("drop", None, True, False, True, "restorer"),
    ]
    assert store.restore(snap) == []  # nothing differs: nothing recorded


def test_restore_distinguishes_int_and_float() -> None:
    store = StateStore()
    store.set("n", 1)
    [transition] = store.restore({"n": 1.0})
    assert transition.old == 1 and type(transition.new) is float
    assert type(store.get("n")) is float


def test_bad_restore_changes_nothing() -> None:
    store = StateStore()
    store.set("a", 1)
    with pytest.raises(InvalidArgumentError, match="state key 'b'"):
        store.restore({"a": 2, "b": {1, 2}})
    with pytest.raises(InvalidArgumentError, match="snapshot key must be a str"):
        store.restore({"a": 2, 3: 4})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgumentError, match="snapshot must be a mapping"):
        store.restore([("a", 2)])  # type: ignore[arg-type]
    assert store.snapshot() == {"a": 1}
    assert len(store.transitions()) == 1


keys = st.sampled_from(["a", "b", "c", ""])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, strategies.json_data()),
        st.tuples(st.just("delete"), keys, st.none()),
        st.tuples(
            st.just("restore"),
            st.just(""),
            st.dictionaries(keys, strategies.json_data(), max_size=3),
        ),
    ),
    max_size=20,
)


@given(operations)
def test_transitions_replay_to_the_state(ops: list[tuple[str, str, Any]]) -> None:
    store = StateStore()
    model: dict[str, Any] = {}
    for op, key, value in ops:
        if op == "set":
            store.set(key, value)
            model[key] = value
        elif op == "delete":
            assert store.delete(key) == (key in model)
            model.pop(key, None)
        else:
            store.restore(value)
            model = dict(value)
        assert store.snapshot() == model
    # The log is complete: replaying it from nothing gives the state, and each transition's
    # "before" is what the replay had at that point.
    replay: dict[str, Any] = {}
    for index, t in enumerate(store.transitions()):
        assert t.index == index
        assert t.existed_before == (t.key in replay)
        if t.existed_before:
            assert t.old == replay[t.key]
        if t.exists_after:
            replay[t.key] = t.new
        else:
            replay.pop(t.key, None)
    assert replay == store.snapshot()


# --------------------------------------------------------------------------- SQLite


def test_sqlite_state_and_transitions_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore.open_sqlite(path)
    assert store.path == str(path)
    store.set("b", {"nested": [1, 2.5, None, "x"]}, by="lead")
    store.set("a", None)
    store.set("c", 1)
    store.delete("c", by="lead/worker")
    store.delete("missing")
    store.set("b", 1.0)
    values, transitions, keys = store.snapshot(), store.transitions(), store.keys()
    store.close()
    assert store.closed

    reopened = StateStore.open_sqlite(str(path))
    assert reopened.snapshot() == values
    assert type(reopened.get("b")) is float
    assert reopened.get("a", "absent") is None  # null survives as a value
    assert reopened.keys() == keys
    assert reopened.transitions() == transitions
    # Writing goes on from where the log stopped.
    assert reopened.set("d", [True], by="again").index == len(transitions)
    reopened.close()

    with StateStore.open_sqlite(path) as third:
        assert len(third.transitions()) == len(transitions) + 1
        assert third.get("d") == [True]
    assert third.closed


async def test_sqlite_restore_and_times_survive_reopen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    path = tmp_path / "state.db"
    with StateStore.open_sqlite(path) as store:
        store.set("x", 1)
        snap = store.snapshot()
        await trio.sleep(3)
        store.set("x", 2)
        store.set("y", 3)
        store.restore(snap, by="undo")
        transitions = store.transitions()
    with StateStore.open_sqlite(path) as store:
        assert store.snapshot() == {"x": 1}
        assert store.transitions() == transitions
        assert transitions[-1].time == transitions[0].time + 3


class _FailingConnection:
    """Wraps a connection; the ``fail_at``-th execute raises (for atomicity tests)."""

    def __init__(self, db: sqlite3.Connection, fail_at: int) -> None:
        self.db = db
        self.calls = 0
        self.fail_at = fail_at

    def execute(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self.db.execute(*args)

    def __enter__(self) -> Any:
        return self.db.__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return self.db.__exit__(*exc)

    def close(self) -> None:
        self.db.close()


def test_sqlite_failure_leaves_memory_and_database_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = StateStore.open_sqlite(path)
    store.set("a", 1)
    store.set("b", 2)
    snap, transitions = store.snapshot(), store.transitions()
    store._db = _FailingConnection(store._db, fail_at=3)  # type: ignore[arg-type, assignment]
    with pytest.raises(sqlite3.OperationalError, match="injected"):
        store.restore({"a": 10, "b": 20, "c": 30})
    assert store.snapshot() == snap
    assert store.transitions() == transitions
    store.close()
    with StateStore.open_sqlite(path) as reopened:
        assert reopened.snapshot() == snap
        assert reopened.transitions() == transitions


def test_closed_store_refuses_writes_but_reads(tmp_path: Path) -> None:
    for store in (StateStore(), StateStore.open_sqlite(tmp_path / "s.db")):
        store.set("a", 1)
        store.close()
        store.close()  # idempotent
        with pytest.raises(UsageError, match="closed"):
            store.set("a", 2)
        with pytest.raises(UsageError, match="closed"):
            store.delete("a")
        with pytest.raises(UsageError, match="closed"):
            store.restore({})
        assert store.get("a") == 1
        assert len(store.transitions()) == 1


def test_open_sqlite_rejects_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(InvalidArgumentError, match="is not a StateStore database"):
        StateStore.open_sqlite(junk)
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("PRAGMA user_version = 7")
    db.close()
    with pytest.raises(InvalidArgumentError, match="schema version 7"):
        StateStore.open_sqlite(other)
    with pytest.raises(InvalidArgumentError, match=r"path must be a str or os\.PathLike"):
        StateStore.open_sqlite(3)  # type: ignore[arg-type]


def test_repr() -> None:
    store = StateStore()
    store.set("a", 1)
    assert repr(store) == "<StateStore 1 keys, 1 transitions>"


def _file_state(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def _header(path: Path) -> tuple[int, int]:
    db = sqlite3.connect(path)
    try:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()
    return application_id, version


@pytest.mark.parametrize(
    ("setup", "why"),
    [
        (["CREATE TABLE t (x INTEGER)", "INSERT INTO t VALUES (1)"], r"tables: t\b"),
        (
            [
                "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                "CREATE TABLE t (x INTEGER)",
            ],
            r"tables: state, t\b",
        ),
        (["CREATE TABLE t (x INTEGER)", "PRAGMA application_id = 1234"], r"application_id 0x4d2"),
        (["PRAGMA user_version = 3"], "schema version 3"),
    ],
)
def test_open_sqlite_refuses_another_applications_database_untouched(
    tmp_path: Path, setup: list[str], why: str
) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    for statement in setup:
        db.execute(statement)
    db.commit()
    db.close()
    before = _file_state(path)
    with pytest.raises(InvalidArgumentError) as info:
        StateStore.open_sqlite(path)
    message = str(info.value)
    assert repr(str(path)) in message
    assert "is not a StateStore database" in message
    assert re.search(why, message), message
    assert "left untouched" in message
    assert _file_state(path) == before


def test_open_sqlite_refuses_a_newer_schema_version_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with StateStore.open_sqlite(path) as store:
        store.set("a", 1)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 2")
    db.close()
    before = _file_state(path)
    with pytest.raises(InvalidArgumentError, match=r"schema version 2, written by a newer"):
        StateStore.open_sqlite(path)
    assert _file_state(path) == before


def test_open_sqlite_marks_new_files_and_stamps_unmarked_store_files(tmp_path: Path) -> None:
    new = tmp_path / "new.db"
    StateStore.open_sqlite(new).close()
    assert _header(new) == (SQLITE_APPLICATION_ID, 1)
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with StateStore.open_sqlite(empty) as store:
        store.set("a", 1)
    assert _header(empty) == (SQLITE_APPLICATION_ID, 1)
    # A file as the store wrote it before files were marked: the same tables, no application id.
    old = tmp_path / "old.db"
    with StateStore.open_sqlite(old) as store:
        store.set("k", [1, 2], by="w")
    db = sqlite3.connect(old)
    db.execute("PRAGMA application_id = 0")
    db.close()
    assert _header(old) == (0, 1)
    with StateStore.open_sqlite(old) as store:
        assert store.get("k") == [1, 2]
        assert [t.by for t in store.transitions()] == ["w"]
    assert _header(old) == (SQLITE_APPLICATION_ID, 1)
