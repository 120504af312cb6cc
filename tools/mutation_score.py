"""Print the kill score of the last ``mutmut run`` per mutated module, and its survivors.

Run from the repository root after ``mutmut run`` (``nox -s mutate`` does both). Reads the
``.meta`` files mutmut writes under ``mutants/``. Exit status 1 when ``--min`` is given and the
decision core (``trio_agents._supervision``) scores below it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

# mutmut's exit-code meanings (mutmut.stats.status_by_exit_code), the ones a run records.
KILLED = {1, 3, 36, 24, 152, 255, -24, 37}  # a failing test, a timeout, a type error
SURVIVED = {0}
CORE = "trio_agents._supervision"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min", type=float, default=None, help="minimum core score, percent")
    args = parser.parse_args()
    metas = sorted(pathlib.Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results under mutants/: run `mutmut run` first", file=sys.stderr)
        return 2
    core_score: float | None = None
    for meta in metas:
        exit_codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        if not exit_codes:
            continue
        module = next(iter(exit_codes)).rsplit(".", 1)[0]
        killed = sorted(k for k, code in exit_codes.items() if code in KILLED)
        survived = sorted(k for k, code in exit_codes.items() if code in SURVIVED)
        other = sorted(k for k in exit_codes if k not in killed and k not in survived)
        total = len(exit_codes)
        score = 100.0 * len(killed) / total
        print(f"{module}: {len(killed)} of {total} mutants killed ({score:.1f}%)")
        for name in survived:
            print(f"  survived: {name}")
        for name in other:
            print(f"  not killed ({exit_codes[name]}): {name}")
        if module == CORE:
            core_score = score
    if args.min is not None:
        if core_score is None:
            print(f"no results for {CORE}", file=sys.stderr)
            return 1
        if core_score < args.min:
            print(f"{CORE} scored {core_score:.1f}%, below {args.min}%", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
