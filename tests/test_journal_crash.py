"""Crash harness: a real process is SIGKILLed at journal step k, a fresh one resumes.

For each k, a subprocess runs a three-level delegation on the SQLite journal and kills itself
at its k-th append; then fresh processes resume it (resolving calls in doubt by looking at
the effects file, as a person would check the outside system). The resumed answer must be the
uncrashed one, the side-effecting tool must have run exactly once per call, and no model
response that was journaled may have been asked for again.

Every k is tried with ``synchronous="FULL"``, and a spread of k with ``"NORMAL"`` (which
must survive a killed process too; it gives up only power-loss durability).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from trio_agents import RunJournal, SQLiteJournal

CHILD = Path(__file__).with_name("journal_crash_child.py")
STEPS = 18  # journal records of the uncrashed tree (all runs)
ANSWER = "lead: researcher: analyst: recorded analyst"
CASES = [("FULL", k) for k in range(1, STEPS + 1)] + [("NORMAL", k) for k in (2, 7, 10, 13, 18)]
# The appends of the two tool results: a kill there leaves a call that ran in doubt.
IN_DOUBT = {7, 13}


def _child(where: Path, *args: str, synchronous: str = "FULL") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHILD), str(where), *args],
        env={**os.environ, "JOURNAL_SYNCHRONOUS": synchronous},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _journaled_responses(where: Path) -> Counter[str]:
    """Which (agent, turn) model responses the journal holds."""
    found: Counter[str] = Counter()
    with SQLiteJournal(where / "journal.db") as backend:
        journal = RunJournal(backend)
        for run in journal.runs():
            turn = 0
            for record in journal.records(run):
                if record.kind == "model_response":
                    agent = {0: "lead", 1: "researcher", 2: "analyst"}[run.count("/")]
                    found[f"{agent} {turn}"] += 1
                    turn += 1
    return found


def test_uncrashed_run(tmp_path: Path) -> None:
    done = _child(tmp_path, "run", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ANSWER
    assert sorted(_lines(tmp_path / "effects")) == ["analyst", "researcher"]
    assert sum(_journaled_responses(tmp_path).values()) == len(_lines(tmp_path / "model"))
    with SQLiteJournal(tmp_path / "journal.db") as backend:
        journal = RunJournal(backend)
        assert sum(len(journal.records(run)) for run in journal.runs()) == STEPS


@pytest.mark.parametrize(("synchronous", "k"), CASES)
def test_sigkill_at_step_k_then_resume_repeats_nothing(
    tmp_path: Path, synchronous: str, k: int
) -> None:
    crashed = _child(tmp_path, "run", str(k), synchronous=synchronous)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    if k == 1:  # died before the first record: nothing to resume; a new run starts
        assert not _lines(tmp_path / "effects")
        return
    journaled = _journaled_responses(tmp_path)
    calls_before = Counter(_lines(tmp_path / "model"))
    resumed = _child(tmp_path, "resume", synchronous=synchronous)
    assert (resumed.returncode == 3) is (k in IN_DOUBT), resumed.stdout
    if resumed.returncode == 3:
        # Calls in doubt: check the outside system, as a person would, and resolve.
        effects = _lines(tmp_path / "effects")
        with SQLiteJournal(tmp_path / "journal.db") as backend:
            journal = RunJournal(backend)
            for doubt in json.loads(resumed.stdout.splitlines()[-1]):
                note = doubt["arguments"]["note"]
                if note in effects:
                    journal.resolve(
                        doubt["run"], doubt["call"], "result", result=f"recorded {note}"
                    )
                else:
                    journal.resolve(doubt["run"], doubt["call"], "rerun")
        resumed = _child(tmp_path, "resume", synchronous=synchronous)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines()[-1] == ANSWER
    # The side-effecting tool ran exactly once per call, across both processes.
    assert sorted(_lines(tmp_path / "effects")) == ["analyst", "researcher"]
    # No journaled model response was asked for again after the crash.
    calls_after = Counter(_lines(tmp_path / "model")) - calls_before
    assert not set(calls_after) & set(journaled), (calls_after, journaled)
    assert all(n == 1 for n in calls_after.values())
