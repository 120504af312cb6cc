"""Durable runs: a run journal, resume after a crash, and in-doubt tool calls.

Rules:

* A journaled run (:meth:`RunJournal.run`) appends a record to its backend, under the run's
  id, *before* the run acts on what the record says: the run's input before the first model
  call, each model response before its tool calls run, each tool call's start before the
  tool runs and its result before the model sees it.
* :meth:`RunJournal.resume` runs the same agent again from the journaled input. Journaled
  model responses and tool results are replayed: the model and the tools are not called for
  them. The run continues live from the first step the journal does not hold, so a crash
  loses nothing that was journaled and the resumed run's :class:`~trio_agents.AgentResult`
  is the one the uncrashed run would have returned (given a model and tools that answer the
  same live).
* A tool call whose start is journaled but whose result is not is *in doubt*: the process
  may have died before, during or after the tool's side effect. A tool named in
  ``idempotent=`` is run again with the same :attr:`ToolContext.idempotency_key
  <trio_agents.ToolContext.idempotency_key>` (``"<run id>/<call id>"``), which the tool can
  hand to the outside service so the effect happens once; so is a tool declared with
  ``@tool(idempotent=True)`` (the declaration is journaled with the call's start). Any
  other tool is never run again silently: resume raises :class:`ToolCallInDoubt` naming
  the calls, before any tool of that turn runs, and the caller resolves each one with
  :meth:`RunJournal.resolve` (``"rerun"``, ``"result"`` with the result the effect had,
  or ``"fail"``, which gives the model an error result), then resumes again.
* Every record is one line of JSON with a schema version and a CRC-32 of its content. When
  reading a run, a damaged *last* record (a torn write: the process died while appending)
  is dropped and the run resumes from the record before it; a damaged record anywhere else
  raises :class:`JournalCorrupted` naming the run and the record's index. A record written
  by a newer schema version is refused with :class:`JournalCorrupted` saying so.
* Backends (:class:`JournalBackend`) are synchronous, like :class:`~trio_agents.StateStore`:
  an append is one small local write that returns once the record is stored, without
  yielding to the scheduler. :class:`MemoryJournal` keeps records in memory (tests);
  :class:`SQLiteJournal` is the embedded durable default (WAL mode, ``synchronous=FULL``:
  an append is on disk when it returns, also across a power loss; one transaction per
  record, no batching).
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Final, Literal, Protocol, TypeVar, get_args, runtime_checkable

import attrs

from ._agent import current_agent
from ._errors import AgentError, AlreadyRunningError, InvalidArgumentError, UsageError
from ._messages import (
    AgentResult,
    ApprovalDecision,
    AssistantMessage,
    JSONValue,
    Message,
    PendingApproval,
    StopReason,
    TextBlock,
    ToolCallBlock,
    ToolResultBlock,
    UserMessage,
)
from ._models import ModelRequest, ToolDefinition
from ._serde import dump, load
from ._state import SQLITE_APPLICATION_ID
from ._tools import ToolContext, ToolExecutor

# The name of the delegation tool (see _delegation.DELEGATE_TOOL; not imported: _delegation
# imports this module).
_DELEGATE_TOOL: Final = "delegate"

T = TypeVar("T")

JOURNAL_SCHEMA_VERSION: Final = 2
"""The schema version of the journal records this version writes (and the newest it reads).
Version 2 added the ``"approval_requested"`` record; version 1 journals are read as they are."""

RecordKind = Literal[
    "run_started",
    "model_response",
    "tool_started",
    "tool_result",
    "tool_released",
    "approval",
    "approval_requested",
    "conversation",
]
_KINDS: Final = get_args(RecordKind)
_RESOLUTIONS: Final = ("rerun", "result", "fail")


# --------------------------------------------------------------------------- values


@attrs.frozen(kw_only=True)
class JournalRecord:
    """One step of a journaled run, as stored."""

    run_id: str
    """The run this record belongs to."""
    index: int
    """Position in the run's journal, from 0."""
    kind: RecordKind
    """``"run_started"`` (data: ``{"input": the input messages, "agent": the agent's name,
    instructions and tool names}``), ``"model_response"`` (data: the
    :class:`~trio_agents.AssistantMessage`), ``"tool_started"`` (data: ``{"call": the
    ToolCallBlock, "idempotent": whether the tool was declared idempotent}``),
    ``"tool_result"`` (data: the :class:`~trio_agents.ToolResultBlock`) or
    ``"tool_released"`` (data: the id of an in-doubt call a person allowed to run again) or
    ``"approval"`` (data: the :class:`~trio_agents.ApprovalDecision` list that answered one
    stop for approval) or ``"approval_requested"`` (data: the
    :class:`~trio_agents.PendingApproval` list of a stop for approval the run reached, with
    the :attr:`~trio_agents.PendingApproval.via` of calls deeper in a delegation tree) or
    ``"conversation"`` (data: the messages one answered request added
    to an orchestrated agent's conversation; see ``conversation=`` of
    :meth:`AgentOrchestrator.add_agent <trio_agents.AgentOrchestrator.add_agent>`)."""
    data: JSONValue
    """The record's content, dumped by the library's converter."""
    version: int = JOURNAL_SCHEMA_VERSION
    """Schema version the record was written with."""


@attrs.frozen
class InDoubtCall:
    """A tool call whose start was journaled but whose result was not."""

    run_id: str
    """The journaled run."""
    call: ToolCallBlock
    """The call: it may or may not have had its effect."""


class JournalCorrupted(AgentError):
    """A journal cannot be read: a damaged record before the last one, or a newer schema."""


class ToolCallInDoubt(AgentError):
    """Resume stopped before tool calls that may already have run (see :class:`InDoubtCall`).

    Resolve each call with :meth:`RunJournal.resolve`, then resume again.
    """

    def __init__(self, message: str, *, calls: Sequence[InDoubtCall] = ()) -> None:
        super().__init__(message)
        self.calls: tuple[InDoubtCall, ...] = tuple(calls)
        """The calls in doubt, in the order the model asked for them."""


# --------------------------------------------------------------------------- encoding


def _encode(record: JournalRecord) -> str:
    body = json.dumps(
        {
            "v": record.version,
            "run": record.run_id,
            "i": record.index,
            "kind": record.kind,
            "data": record.data,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    return f"{zlib.crc32(body.encode()):08x} {body}"


def _decode(run_id: str, index: int, line: str) -> JournalRecord | None:
    """The record in ``line``, None when damaged; JournalCorrupted for a newer schema."""
    crc, _, body = line.partition(" ")
    try:
        if int(crc, 16) != zlib.crc32(body.encode()):
            return None
        raw = json.loads(body)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    version = raw.get("v")
    if not isinstance(version, int) or version < 1:
        return None
    if version > JOURNAL_SCHEMA_VERSION:  # before the kind: a newer schema may add kinds
        raise JournalCorrupted(
            f"record {index} of run {run_id!r} has journal schema version {version}, written "
            f"by a newer trio_agents; this version reads up to {JOURNAL_SCHEMA_VERSION}"
        )
    if raw.get("kind") not in _KINDS:
        return None
    if raw.get("run") != run_id or raw.get("i") != index:
        return None
    return JournalRecord(
        run_id=run_id, index=index, kind=raw["kind"], data=raw.get("data"), version=version
    )


def _check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgumentError(f"run_id must be a non-empty str, got {run_id!r}")
    return run_id


# --------------------------------------------------------------------------- backends


@runtime_checkable
class JournalBackend(Protocol):
    """Where journal records are stored: encoded lines, appended per run.

    Methods are synchronous and must not yield to the scheduler; :meth:`append` returns once
    the line is stored.
    """

    def append(self, run_id: str, index: int, line: str) -> None:
        """Store ``line`` as record ``index`` of ``run_id`` (indices come in order from 0).

        A stored record at ``index`` or later (a torn tail that resume dropped) is replaced.
        """
        ...

    def read(self, run_id: str) -> list[str]:
        """The lines of ``run_id`` in index order (empty for an unknown run)."""
        ...

    def runs(self) -> list[str]:
        """The ids of the runs stored, in the order they were started."""
        ...


class MemoryJournal:
    """A :class:`JournalBackend` in memory: survives a cancelled run, not a process."""

    def __init__(self) -> None:
        self._runs: dict[str, list[str]] = {}

    def append(self, run_id: str, index: int, line: str) -> None:
        """Store ``line`` as record ``index`` of ``run_id``."""
        lines = self._runs.setdefault(run_id, [])
        del lines[index:]  # a torn tail
        if index != len(lines):
            raise InvalidArgumentError(
                f"record {index} of run {run_id!r} out of order: the run has {len(lines)}"
            )
        lines.append(line)

    def read(self, run_id: str) -> list[str]:
        """The lines of ``run_id``."""
        return list(self._runs.get(run_id, ()))

    def runs(self) -> list[str]:
        """The ids of the runs stored."""
        return list(self._runs)

    def __repr__(self) -> str:
        return f"<MemoryJournal runs={len(self._runs)}>"


_JOURNAL_TABLE: Final = "journal"


class SQLiteJournal:
    """A :class:`JournalBackend` in an SQLite file, the embedded durable default.

    WAL mode, each append its own transaction. With ``synchronous="FULL"`` (the default) an
    append is on disk when :meth:`append` returns: the journal survives the process dying and
    the machine losing power. With ``synchronous="NORMAL"`` SQLite skips the fsync of each
    commit (WAL checkpoints still sync): an append survives the *process* dying (``SIGKILL``,
    a crash) but the last appends may be lost if the *machine* loses power or the OS crashes,
    and a lost tool-call start can then let a side effect run again. Choose it only where
    that is acceptable; it is several times faster (see the ``journal`` benchmark).

    The file is marked like the library's other SQLite files
    (``PRAGMA application_id`` = ``SQLITE_APPLICATION_ID``); a file that is neither new,
    empty, nor a journal is refused with :class:`~trio_agents.InvalidArgumentError` and left
    untouched. Calls run in the calling thread (see the module rules).

    :param path: the database file.
    :param synchronous: ``"FULL"`` or ``"NORMAL"`` (see above).
    :raises InvalidArgumentError: another ``synchronous``, or a file that is not a journal.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: Literal["FULL", "NORMAL"] = "FULL"
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise InvalidArgumentError(
                f"synchronous must be 'FULL' or 'NORMAL', got {synchronous!r}"
            )
        self._path = os.fspath(path)
        self.synchronous: str = synchronous
        """The SQLite ``synchronous`` setting in use."""
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            self._check(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            with _transaction(db):
                db.execute(
                    f"CREATE TABLE IF NOT EXISTS {_JOURNAL_TABLE} ("
                    "run TEXT NOT NULL, idx INTEGER NOT NULL, line TEXT NOT NULL, "
                    "PRIMARY KEY (run, idx))"
                )
                db.execute(f"PRAGMA application_id = {SQLITE_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {JOURNAL_SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._db: sqlite3.Connection | None = db

    def _check(self, db: sqlite3.Connection) -> None:
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if application_id == 0 and not tables:
            return  # new or empty
        if application_id != SQLITE_APPLICATION_ID or tables != {_JOURNAL_TABLE}:
            raise InvalidArgumentError(
                f"{self._path!r} is not a run journal database (application_id "
                f"{application_id:#x}, tables {sorted(tables)}); the file was left untouched"
            )
        if version > JOURNAL_SCHEMA_VERSION:
            raise InvalidArgumentError(
                f"{self._path!r} is a run journal of schema version {version}, written by a "
                f"newer trio_agents; this version reads up to {JOURNAL_SCHEMA_VERSION}"
            )

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise InvalidArgumentError(f"the journal {self._path!r} is closed")
        return self._db

    def append(self, run_id: str, index: int, line: str) -> None:
        """Store ``line`` as record ``index`` of ``run_id`` (committed on return)."""
        db = self._connection()
        with _transaction(db):
            # A stored record at index or later is a torn tail that resume dropped.
            db.execute(f"DELETE FROM {_JOURNAL_TABLE} WHERE run = ? AND idx >= ?", (run_id, index))
            db.execute(f"INSERT INTO {_JOURNAL_TABLE} VALUES (?, ?, ?)", (run_id, index, line))

    def read(self, run_id: str) -> list[str]:
        """The lines of ``run_id``, in index order."""
        rows = self._connection().execute(
            f"SELECT line FROM {_JOURNAL_TABLE} WHERE run = ? ORDER BY idx", (run_id,)
        )
        return [row[0] for row in rows]

    def runs(self) -> list[str]:
        """The ids of the runs stored, in the order they were started."""
        rows = self._connection().execute(
            f"SELECT run FROM {_JOURNAL_TABLE} WHERE idx = 0 ORDER BY rowid"
        )
        return [row[0] for row in rows]

    def close(self) -> None:
        """Close the database (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> SQLiteJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SQLiteJournal {self._path!r}>"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# --------------------------------------------------------------------------- replay


@attrs.define(eq=False)
class _Replay:
    """What a run's journal holds, and the appending of its next records."""

    run_id: str
    backend: JournalBackend
    records: list[JournalRecord]
    idempotent: frozenset[str]
    responses: list[AssistantMessage] = attrs.field(factory=list)
    started: dict[str, ToolCallBlock] = attrs.field(factory=dict)
    results: dict[str, ToolResultBlock] = attrs.field(factory=dict)
    released: set[str] = attrs.field(factory=set)
    declared: set[str] = attrs.field(factory=set)  # calls of tools declared idempotent
    approvals: list[tuple[ApprovalDecision, ...]] = attrs.field(factory=list)
    position: int = 0  # model responses handed out so far

    def __attrs_post_init__(self) -> None:
        for record in self.records:
            if record.kind == "model_response":
                self.responses.append(load(record.data, AssistantMessage))
            elif record.kind == "tool_started":
                data = record.data
                if not isinstance(data, dict):
                    raise JournalCorrupted(
                        f"record {record.index} of run {self.run_id!r}: a tool start without "
                        "its call"
                    )
                call = load(data.get("call"), ToolCallBlock)
                self.started[call.id] = call
                if data.get("idempotent") is True:
                    self.declared.add(call.id)
                self.released.discard(call.id)  # a released call that started again
            elif record.kind == "tool_released":
                self.released.add(str(record.data))
            elif record.kind == "approval":
                self.approvals.append(tuple(load(record.data, list[ApprovalDecision])))
            elif record.kind == "tool_result":
                result = load(record.data, ToolResultBlock)
                self.results[result.tool_call_id] = result

    def append(self, kind: RecordKind, value: Any) -> None:
        record = JournalRecord(
            run_id=self.run_id, index=len(self.records), kind=kind, data=dump(value)
        )
        self.backend.append(self.run_id, record.index, _encode(record))
        self.records.append(record)

    def in_doubt(self, calls: Iterable[ToolCallBlock]) -> list[InDoubtCall]:
        return [
            InDoubtCall(run_id=self.run_id, call=call)
            for call in calls
            if call.id in self.started
            and call.id not in self.results
            and call.id not in self.released
            and call.name not in self.idempotent
            and call.id not in self.declared
            # A delegation journals its specialist under a child run: running it again
            # resumes that run, which repeats nothing journaled.
            and call.name != _DELEGATE_TOOL
        ]


class _JournaledModel:
    """Hands out journaled responses, then calls the model and journals what it answers."""

    def __init__(self, inner: Any, replay: _Replay) -> None:
        self._inner = inner
        self._replay = replay

    @property
    def model_id(self) -> str:
        return str(self._inner.model_id)

    async def request(self, request: ModelRequest) -> AssistantMessage:
        replay = self._replay
        if replay.position < len(replay.responses):
            message = replay.responses[replay.position]
            replay.position += 1
            doubtful = replay.in_doubt(message.tool_calls)
            if doubtful:
                names = ", ".join(f"{d.call.name} (call {d.call.id!r})" for d in doubtful)
                raise ToolCallInDoubt(
                    f"run {replay.run_id!r}: tool calls {names} started but their results "
                    "were not journaled; resolve each with RunJournal.resolve() "
                    "('rerun', 'result' or 'fail') and resume again",
                    calls=doubtful,
                )
            return message
        live: AssistantMessage = await self._inner.request(request)
        message = live
        seen = {call.id for response in replay.responses for call in response.tool_calls}
        reused = sorted({call.id for call in message.tool_calls if call.id in seen})
        if reused:
            # Results are replayed by call id: a reused id would replay another call's result.
            raise UsageError(
                f"run {replay.run_id!r}: model {self.model_id!r} reused tool call ids "
                f"{reused} of an earlier turn; a journaled run needs call ids unique within "
                "the run"
            )
        replay.append("model_response", message)
        replay.responses.append(message)
        replay.position += 1
        return message


class _JournaledTools:
    """Replays journaled tool results; journals the start and result of every live call."""

    def __init__(self, inner: ToolExecutor, replay: _Replay) -> None:
        self._inner = inner
        self._replay = replay

    def definitions(self) -> Sequence[ToolDefinition]:
        return self._inner.definitions()

    def get(self, name: str) -> Any:  # approval checks look tools up by name
        get = getattr(self._inner, "get", None)
        return get(name) if get is not None else None

    async def execute(self, call: ToolCallBlock, ctx: ToolContext) -> ToolResultBlock:
        replay = self._replay
        done = replay.results.get(call.id)
        if done is not None:
            return done
        if call.id not in replay.started or call.id in replay.released:
            found = self.get(call.name)
            declared = getattr(found, "idempotent", False) is True
            replay.append("tool_started", {"call": dump(call), "idempotent": declared})
            replay.started[call.id] = call
            replay.released.discard(call.id)
        child = f"{replay.run_id}/{call.id}"
        ctx = attrs.evolve(ctx, idempotency_key=child)
        # A specialist this call delegates to journals under the child run id.
        token = _NESTED.set(_Binding(replay.backend, child, replay.idempotent))
        try:
            result = await self._inner.execute(call, ctx)
        finally:
            _NESTED.reset(token)
        caller = current_agent()
        if caller is not None and call.id in caller._parking:
            # A delegation whose specialist waits for approval: what it returned says so, it
            # is not the call's result. The call runs again (resuming its child run, which
            # repeats nothing journaled) when the tree is resumed.
            return result
        replay.append("tool_result", result)
        replay.results[call.id] = result
        return result


@attrs.frozen
class _Binding:
    """The journaled run the next agent run through :func:`run_nested` belongs to."""

    backend: JournalBackend
    run_id: str
    idempotent: frozenset[str]
    pattern: bool = False
    """Bound by :meth:`RunJournal.run_pattern` (not by a tool call of a journaled run)."""
    keyed: set[str] = attrs.field(factory=set, eq=False)
    """The keyed child run ids used so far under this binding (each names one run)."""


_NESTED: ContextVar[_Binding | None] = ContextVar("trio_agents_journal_binding", default=None)

# The decisions RunJournal.resume_delegator routes to the runs of a tree, by run id: each
# run's drive takes its own when it reaches the stop they answer.
_TREE_DECISIONS: ContextVar[dict[str, tuple[ApprovalDecision, ...]] | None] = ContextVar(
    "trio_agents_journal_tree_decisions", default=None
)


async def run_nested(
    agent: Any, task: str | Message | Sequence[Message], *, key: str | None = None
) -> AgentResult[Any]:
    """Run ``agent`` on ``task``; journaled when a journaled run (or a tool call of one, or
    a :meth:`RunJournal.run_pattern`) is in progress in this context, and resumed when that
    run is already journaled.

    The run id is the bound one (``key=None``: a specialist under its ``delegate`` call), or
    ``"<bound run id>/<key>"`` (the branches and steps of a pattern, one key each).
    :class:`~trio_agents.ModelRunner` runs its agents through this, so the specialists of a
    journaled delegation journal under ``"<parent run id>/<delegate call id>"``.
    """
    binding = _NESTED.get()
    result: AgentResult[Any]
    if binding is None:
        result = await agent.run(task)
        return result
    run_id = binding.run_id if key is None else f"{binding.run_id}/{key}"
    if key is not None:
        if run_id in binding.keyed:
            # Two patterns in one scope (say two run_parallel calls in one run_pattern):
            # the second would resume the first's journal and silently answer with it.
            raise UsageError(
                f"two agent runs would journal under {run_id!r}: run each pattern in its own "
                "RunJournal.run_pattern (or tool call), so that its steps get their own ids"
            )
        binding.keyed.add(run_id)
    token = _NESTED.set(None)  # the agent's own tool calls bind their children
    try:
        journal = RunJournal(binding.backend)
        if binding.backend.read(run_id):
            result = await journal.resume(agent, run_id, idempotent=binding.idempotent)
        else:
            result = await journal.run(agent, task, run_id=run_id, idempotent=binding.idempotent)
        return result
    finally:
        _NESTED.reset(token)


def refuse_unjournaled(what: str) -> None:
    """Raise UsageError when ``what`` (a pattern whose agents cannot be journaled) is run
    directly inside :meth:`RunJournal.run_pattern`, where it would silently run again on
    resume. Inside a journaled agent's tool call it may run: that call is what a crash leaves
    in doubt."""
    binding = _NESTED.get()
    if binding is not None and binding.pattern:
        raise UsageError(
            f"{what} is not journaled: its agents keep a conversation from turn to turn, "
            "which a journaled run does not resume. Inside RunJournal.run_pattern it would "
            "run again after a crash; run it outside the journal, or in a tool of a "
            "journaled agent (a crash then leaves that call in doubt)"
        )


def _shape(agent: Any) -> dict[str, JSONValue]:
    """What must match between the agent that started a run and one that resumes it."""
    return {
        "name": agent.name,
        "instructions": agent.instructions,
        "tools": sorted(d.name for d in agent._tool_definitions),
    }


def _started(record: JournalRecord, agent: Any) -> list[Message]:
    """The input of a run_started record; InvalidArgumentError when ``agent`` is not built
    like the agent that started the run (nothing is run)."""
    data = record.data
    if record.kind == "conversation":
        raise InvalidArgumentError(
            f"{record.run_id!r} holds an orchestrated agent's conversation, not a run; "
            "read it with RunJournal.conversation()"
        )
    if record.kind != "run_started" or not isinstance(data, dict):
        raise JournalCorrupted(f"record 0 of run {record.run_id!r} is not the run's start")
    if agent is not None:
        shape = _shape(agent)
        stored = data.get("agent")
        if stored != shape:
            differ = sorted(
                key
                for key in shape
                if not isinstance(stored, dict) or stored.get(key) != shape[key]
            )
            raise InvalidArgumentError(
                f"run {record.run_id!r} was started by an agent with another "
                f"{', '.join(differ)} ({stored!r}); resume it with an agent built the same "
                f"way, not {shape!r}"
            )
    return load(data.get("input"), list[Message])


def _not_waiting(run_id: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"run {run_id!r} does not wait for approval: its journal ends at no unanswered stop "
        "(it finished, its decisions are journaled, or it died before journaling the stop; "
        "resume it without decisions: it goes on, or stops and journals what waits); the "
        "decisions were not used"
    )


def _stop(records: Sequence[JournalRecord]) -> list[PendingApproval]:
    """What a run's journal says it waits for: the pending calls of its last stop for
    approval when nothing was journaled after it, else nothing."""
    if not records or records[-1].kind != "approval_requested":
        return []
    return load(records[-1].data, list[PendingApproval])


def _conversation(records: Sequence[JournalRecord]) -> list[Message]:
    messages: list[Message] = []
    for record in records:
        if record.kind != "conversation":
            raise InvalidArgumentError(
                f"{record.run_id!r} is a journaled run, not an orchestrated agent's conversation"
            )
        messages.extend(load(record.data, list[Message]))
    return messages


# --------------------------------------------------------------------------- the journal


class RunJournal:
    """Runs agents so that a crash loses nothing and repeats no journaled step.

    :param backend: where the records go (:class:`MemoryJournal`, :class:`SQLiteJournal`,
        or any :class:`JournalBackend`).
    """

    def __init__(self, backend: JournalBackend) -> None:
        if not isinstance(backend, JournalBackend):
            raise InvalidArgumentError(
                "backend must be a JournalBackend (append, read, runs), "
                f"got {type(backend).__name__}"
            )
        self.backend = backend

    def records(self, run_id: str) -> list[JournalRecord]:
        """The complete records of ``run_id`` (a torn last record is left out).

        :raises JournalCorrupted: a record before the last one is damaged, or was written by
            a newer schema version; the message names the run and the record's index.
        """
        lines = self.backend.read(_check_run_id(run_id))
        records: list[JournalRecord] = []
        for index, line in enumerate(lines):
            record = _decode(run_id, index, line)
            if record is None:
                if index == len(lines) - 1:
                    break  # a torn write: the process died while appending it
                raise JournalCorrupted(
                    f"record {index} of run {run_id!r} is damaged (bad checksum or content) "
                    f"and {len(lines) - index - 1} records follow it; the journal cannot be "
                    "resumed"
                )
            records.append(record)
        return records

    def runs(self) -> list[str]:
        """The ids of the journaled runs (and of the orchestrated agents' conversations)."""
        return self.backend.runs()

    def conversation(self, run_id: str) -> list[Message]:
        """The conversation journaled under ``run_id`` by an orchestrated agent registered
        with ``conversation=`` (its id is ``"conversation:<agent path>"``): the messages of
        every request it answered, in order; empty when nothing is journaled.

        :raises InvalidArgumentError: ``run_id`` is a journaled run, not a conversation.
        :raises JournalCorrupted: see :meth:`records`.
        """
        return _conversation(self.records(run_id))

    def pending_approvals(self, run_id: str) -> tuple[PendingApproval, ...]:
        """The calls the journaled run ``run_id`` waits on a person for, read from the journal
        alone (after a crash, in another process); ``()`` when it does not wait.

        For a delegation tree (:meth:`run_delegator`) these are the calls at every depth, each
        with its :attr:`~trio_agents.PendingApproval.via`; a call whose decision is already
        journaled (in the run of the agent that asked) no longer waits.

        :raises InvalidArgumentError: ``run_id`` is not journaled.
        :raises JournalCorrupted: see :meth:`records`.
        """
        run_id = _check_run_id(run_id)
        records = self.records(run_id)
        if not records:
            raise InvalidArgumentError(
                f"run {run_id!r} is not journaled (journaled runs: {self.runs()[:10]})"
            )
        return tuple(p for p in _stop(records) if not self._answered(run_id, p))

    def _answered(self, run_id: str, pending: PendingApproval) -> bool:
        """Whether the run of the agent that asked for ``pending`` journaled its decision."""
        if not pending.via:
            return False  # the run's own call: its stop is its last record
        owner = "/".join((run_id, *pending.via))
        waits = [p.call_id for p in _stop(self.records(owner))]
        return pending.call_id not in waits

    def _extend_conversation(self, run_id: str, index: int, messages: Sequence[Message]) -> None:
        record = JournalRecord(
            run_id=run_id, index=index, kind="conversation", data=dump(list(messages))
        )
        self.backend.append(run_id, index, _encode(record))

    async def run(
        self,
        agent: Any,
        input: str | Message | Sequence[Message],
        *,
        run_id: str,
        idempotent: Iterable[str] = (),
    ) -> Any:
        """Run ``agent`` on ``input`` as :meth:`Agent.run <trio_agents.Agent.run>` does,
        journaling every step under ``run_id``.

        :param agent: an :class:`~trio_agents.Agent` with an empty history and
            ``stream=False``.
        :param run_id: a new run id.
        :param idempotent: names of tools that may be run again with the same idempotency key
            when a crash left their call in doubt.
        :raises InvalidArgumentError: ``run_id`` is already journaled, or the agent has a
            history or streams. Nothing is journaled.
        """
        from ._agent import _as_messages

        run_id = _check_run_id(run_id)
        self._check_agent(agent)
        if self.backend.read(run_id):
            raise InvalidArgumentError(
                f"run {run_id!r} is already journaled; resume() it, or use a new run_id"
            )
        messages = _as_messages(input)
        replay = _Replay(run_id, self.backend, [], frozenset(idempotent))
        replay.append("run_started", {"input": dump(messages), "agent": _shape(agent)})
        return await self._drive(agent, messages, replay)

    async def resume(
        self,
        agent: Any,
        run_id: str,
        *,
        idempotent: Iterable[str] = (),
        decisions: Iterable[ApprovalDecision] | None = None,
    ) -> Any:
        """Continue the journaled run ``run_id`` in ``agent`` (e.g. after a crash).

        Journaled model responses and tool results are replayed without calling the model or
        the tools; the run goes on live from the first step not journaled. Resuming a run
        that had finished replays it and returns its result.

        :param agent: an agent built like the one that started the run (same model,
            instructions, tools), with an empty history and ``stream=False``.
        :param idempotent: as in :meth:`run`.
        :param decisions: for a run that stopped with
            :attr:`~trio_agents.StopReason.APPROVAL_REQUIRED`: one
            :class:`~trio_agents.ApprovalDecision` per pending call. They are journaled before
            the run acts on them, so a resume after a later crash answers that stop the same
            way without asking again; the result is then that of the resumed part, as from
            :meth:`Agent.resume <trio_agents.Agent.resume>`. Journaled decisions of earlier
            stops are replayed. ``None`` (the default) means no decisions: the run goes on,
            or stops again at its stop; ``[]`` is an answer, refused while a call waits.
        :raises InvalidArgumentError: ``run_id`` is not journaled, or ``decisions`` do not
            answer the stop the run reached (or it reached none); nothing is journaled.
        :raises JournalCorrupted: see :meth:`records`.
        :raises ToolCallInDoubt: a tool call not in ``idempotent`` started but has no
            journaled result; resolve it with :meth:`resolve` first.
        """
        run_id = _check_run_id(run_id)
        self._check_agent(agent)
        records = self.records(run_id)
        if not records:
            raise InvalidArgumentError(
                f"run {run_id!r} is not journaled (journaled runs: {self.runs()[:10]})"
            )
        messages = _started(records[0], agent)
        self._check_tree(run_id, frozenset(idempotent))
        replay = _Replay(run_id, self.backend, records, frozenset(idempotent))
        given = None if decisions is None else tuple(decisions)
        if given is not None and not _stop(records) and all(r.version >= 2 for r in records):
            # Every stop of a version-2 journal is journaled: refuse before anything runs.
            # (A version-1 run's stop is found by replaying to it, as it was written.)
            raise _not_waiting(run_id)
        return await self._drive(agent, messages, replay, given)

    def _check_tree(self, run_id: str, idempotent: frozenset[str]) -> None:
        """Raise ToolCallInDoubt for the in-doubt calls of ``run_id`` and its child runs,
        before anything of the tree runs again."""
        doubtful: list[InDoubtCall] = []
        prefix = run_id + "/"
        for run in [run_id, *(r for r in self.runs() if r.startswith(prefix))]:
            replay = _Replay(run, self.backend, self.records(run), idempotent)
            doubtful.extend(replay.in_doubt(replay.started.values()))
        if doubtful:
            names = ", ".join(
                f"{d.call.name} (call {d.call.id!r} of run {d.run_id!r})" for d in doubtful
            )
            raise ToolCallInDoubt(
                f"tool calls {names} started but their results were not journaled; resolve "
                "each with RunJournal.resolve() ('rerun', 'result' or 'fail') and resume again",
                calls=doubtful,
            )

    async def run_delegator(
        self, delegator: Any, task: str, *, runner: Any, run_id: str, idempotent: Iterable[str] = ()
    ) -> Any:
        """Run ``delegator`` on ``task`` (:meth:`Delegator.run <trio_agents.Delegator.run>`)
        with its main agent journaled under ``run_id`` and each specialist under
        ``"<parent run id>/<delegate call id>"``.

        :param runner: a :class:`~trio_agents.ModelRunner` (it runs agents through the
            journal).
        :raises InvalidArgumentError: ``run_id`` is already journaled (use
            :meth:`resume_delegator`). Nothing is journaled.
        """
        run_id = _check_run_id(run_id)
        if self.backend.read(run_id):
            raise InvalidArgumentError(
                f"run {run_id!r} is already journaled; resume_delegator() it, or use a new run_id"
            )
        token = _NESTED.set(_Binding(self.backend, run_id, frozenset(idempotent)))
        try:
            return await delegator.run(task, runner=runner)
        finally:
            _NESTED.reset(token)

    async def resume_delegator(
        self,
        delegator: Any,
        run_id: str,
        *,
        runner: Any,
        idempotent: Iterable[str] = (),
        decisions: Iterable[ApprovalDecision] | None = None,
    ) -> Any:
        """Resume a :meth:`run_delegator` run after a crash: the main agent and every
        specialist resume from their journals; finished specialist work is replayed.

        :param decisions: for a tree that waits for approval (:meth:`pending_approvals`, or
            the :attr:`~trio_agents.DelegatorResult.pending_approvals` of the result that
            stopped): one :class:`~trio_agents.ApprovalDecision` per pending call, at any
            depth. They are checked against the journal before anything runs; each is
            journaled in the run of the agent that asked, before that agent acts on it, so
            a resume after a later crash answers the same way without asking again. The
            tree is replayed up to the stop and goes on; the result is the whole tree's.
            A decision's ``agent``, when given, is the asking agent's full path, as in
            :attr:`PendingApproval.agent <trio_agents.PendingApproval.agent>` (e.g.
            ``"lead/analyst/clerk"``). ``None`` means no decisions; ``[]`` is an answer,
            refused while a call waits.
        :raises InvalidArgumentError: ``run_id`` is not journaled, or ``decisions`` do not
            answer exactly the calls that wait (or nothing waits). Nothing changes.
        :raises ToolCallInDoubt: a call anywhere in the tree is in doubt (see :meth:`resume`).
        """
        from ._agent import _check_decisions

        run_id = _check_run_id(run_id)
        records = self.records(run_id)
        if not records:
            raise InvalidArgumentError(
                f"run {run_id!r} is not journaled (journaled runs: {self.runs()[:10]})"
            )
        self._check_tree(run_id, frozenset(idempotent))
        routed: dict[str, tuple[ApprovalDecision, ...]] | None = None
        if decisions is not None:
            given = tuple(decisions)
            pending = self.pending_approvals(run_id)
            if not pending:
                raise _not_waiting(run_id)
            chosen = _check_decisions(pending, given)
            by_run: dict[str, list[ApprovalDecision]] = {}
            for index, decision in sorted(chosen.items()):
                owner = "/".join((run_id, *pending[index].via))
                by_run.setdefault(owner, []).append(decision)
            routed = {owner: tuple(answers) for owner, answers in by_run.items()}
        messages = _started(records[0], None)
        first = messages[0] if messages else None
        blocks = first.content if isinstance(first, UserMessage) else ()
        if len(blocks) != 1 or not isinstance(blocks[0], TextBlock):
            raise InvalidArgumentError(
                f"run {run_id!r} was not started by run_delegator (its input is not one task)"
            )
        task = blocks[0].text
        token = _NESTED.set(_Binding(self.backend, run_id, frozenset(idempotent)))
        answers = _TREE_DECISIONS.set(routed)
        try:
            return await delegator.run(task, runner=runner)
        finally:
            _TREE_DECISIONS.reset(answers)
            _NESTED.reset(token)

    async def run_pattern(
        self,
        pattern: Callable[[], Awaitable[T]],
        *,
        run_id: str,
        idempotent: Iterable[str] = (),
    ) -> T:
        """Await ``pattern()`` (e.g. ``lambda: run_parallel(branches, task)``) with every
        agent run of :func:`~trio_agents.patterns.run_parallel` and
        :func:`~trio_agents.patterns.run_sequential` inside it journaled under ``run_id``:
        branch *i* under ``"<run_id>/branch-<i>"``, step *i* under ``"<run_id>/step-<i>"``,
        the aggregator under ``"<run_id>/aggregate"`` (and a specialist or pattern inside
        one of their tool calls under that call, as in a journaled run).

        :param idempotent: as in :meth:`run`.
        :raises InvalidArgumentError: runs under ``run_id`` are already journaled (use
            :meth:`resume_pattern`). Nothing is journaled.
        """
        run_id = _check_run_id(run_id)
        if not callable(pattern):
            raise InvalidArgumentError(
                f"pattern must be a function returning an awaitable, got {pattern!r}"
            )
        existing = self._under(run_id)
        if existing:
            raise InvalidArgumentError(
                f"runs under {run_id!r} are already journaled ({existing[:5]}); "
                "resume_pattern() it, or use a new run_id"
            )
        return await self._bound(pattern, run_id, frozenset(idempotent))

    async def resume_pattern(
        self,
        pattern: Callable[[], Awaitable[T]],
        *,
        run_id: str,
        idempotent: Iterable[str] = (),
    ) -> T:
        """Resume a :meth:`run_pattern` run after a crash: give the same ``pattern`` (built
        the same way). Every journaled branch or step resumes from its journal: a finished
        one is replayed without calling its model or tools, one cut off goes on live from
        its first unjournaled step, one that never started runs.

        :raises InvalidArgumentError: nothing is journaled under ``run_id``. Nothing runs.
        :raises ToolCallInDoubt: a call in any of its runs is in doubt (see :meth:`resume`),
            before anything runs.
        """
        run_id = _check_run_id(run_id)
        if not callable(pattern):
            raise InvalidArgumentError(
                f"pattern must be a function returning an awaitable, got {pattern!r}"
            )
        if not self._under(run_id):
            raise InvalidArgumentError(
                f"nothing is journaled under {run_id!r} (journaled runs: {self.runs()[:10]})"
            )
        self._check_tree(run_id, frozenset(idempotent))
        return await self._bound(pattern, run_id, frozenset(idempotent))

    def _under(self, run_id: str) -> list[str]:
        prefix = run_id + "/"
        return [r for r in self.runs() if r == run_id or r.startswith(prefix)]

    async def _bound(
        self, pattern: Callable[[], Awaitable[T]], run_id: str, idempotent: frozenset[str]
    ) -> T:
        token = _NESTED.set(_Binding(self.backend, run_id, idempotent, pattern=True))
        try:
            return await pattern()
        finally:
            _NESTED.reset(token)

    def resolve(
        self,
        run_id: str,
        call_id: str,
        how: Literal["rerun", "result", "fail"],
        *,
        result: str = "",
    ) -> None:
        """Decide what an in-doubt tool call becomes when the run is resumed.

        ``"rerun"`` runs the tool again (the person checked that its effect did not happen);
        ``"result"`` journals ``result`` as what the call returned (its effect happened);
        ``"fail"`` journals an error result that tells the model the call's outcome is
        unknown.

        :raises InvalidArgumentError: ``how`` is not one of those, or ``call_id`` is not in
            doubt in ``run_id`` (the message lists the calls that are). Nothing changes.
        """
        if how not in _RESOLUTIONS:
            raise InvalidArgumentError(
                f"how must be one of {', '.join(map(repr, _RESOLUTIONS))}, got {how!r}"
            )
        records = self.records(run_id)
        replay = _Replay(run_id, self.backend, records, frozenset())
        doubtful = {c.call.id: c.call for c in replay.in_doubt(replay.started.values())}
        call = doubtful.get(call_id)
        if call is None:
            raise InvalidArgumentError(
                f"call {call_id!r} is not in doubt in run {run_id!r}; "
                f"calls in doubt: {sorted(doubtful)}"
            )
        if how == "rerun":
            replay.append("tool_released", call.id)
            return
        replay.append(
            "tool_result",
            ToolResultBlock(
                tool_call_id=call.id,
                content=result
                if how == "result"
                else "the outcome of this call is unknown: the process running it stopped",
                is_error=how == "fail",
                tool_name=call.name,
            ),
        )

    def _check_agent(self, agent: Any) -> None:
        if agent.running:
            raise AlreadyRunningError(f"agent {agent.name!r} is already running")
        if agent.messages:
            raise InvalidArgumentError(
                f"agent {agent.name!r} has a history; a journaled run starts a fresh "
                "conversation (clear_history() or a new Agent)"
            )
        if agent.stream:
            raise InvalidArgumentError(
                f"agent {agent.name!r} streams; journaled runs need stream=False"
            )

    async def _drive(
        self,
        agent: Any,
        messages: list[Message],
        replay: _Replay,
        decisions: tuple[ApprovalDecision, ...] | None = None,
    ) -> Any:
        from ._agent import _check_decisions

        if decisions is None:
            routed = _TREE_DECISIONS.get()
            if routed is not None:
                decisions = routed.pop(replay.run_id, None)
        model, executor = agent._model, agent._executor
        agent._model = _JournaledModel(model, replay)
        agent._executor = _JournaledTools(executor, replay)
        try:
            result = await agent.run(messages)
            stops = 0
            while result.stop_reason is StopReason.APPROVAL_REQUIRED:
                if stops < len(replay.approvals):
                    answer = replay.approvals[stops]
                elif decisions is not None:
                    _check_decisions(result.pending_approvals, decisions)
                    replay.append("approval", list(decisions))
                    replay.approvals.append(decisions)
                    answer, decisions = decisions, None
                else:
                    # The stop is journaled (once: a resume that reaches it again without
                    # an answer adds nothing), so what waits can be read after a crash.
                    pending = dump(list(result.pending_approvals))
                    last = replay.records[-1]
                    if last.kind != "approval_requested" or last.data != pending:
                        replay.append("approval_requested", result.pending_approvals)
                    break
                stops += 1
                result = await agent.resume(answer)
            if decisions is not None:
                raise InvalidArgumentError(
                    f"run {replay.run_id!r} does not wait for approval (it ended with "
                    f"{result.stop_reason}); the decisions were not used"
                )
            return result
        finally:
            agent._model, agent._executor = model, executor

    def __repr__(self) -> str:
        return f"<RunJournal {self.backend!r}>"
