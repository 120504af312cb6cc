"""Child process of a memory sample: ``python -m benchmarks._memory`` reads one JSON request
on stdin and prints ``{"rss": ..., "tracemalloc": ...}`` (bytes per operation) on stdout.

It exits as soon as the traced region has ended: tearing down 100k agents under tracemalloc
takes minutes and measures nothing.
"""

from __future__ import annotations

import json
import os
import sys

from ._core import memory_sample_here
from .scenarios import SCENARIOS


def _emit_and_exit(results: dict[str, float]) -> None:
    print(json.dumps(results), flush=True)
    os._exit(0)


def main() -> int:
    request = json.loads(sys.stdin.read())
    scenario = next(s for s in SCENARIOS if s.key == request["scenario"])
    cases = scenario.build(request["size"], request["profile"])
    case = next(c for c in cases if c.name == request["case"])
    variant = case.variant(request["variant"])
    memory_sample_here(
        case, variant, seed=request["seed"], round_index=request["round"], on_end=_emit_and_exit
    )
    raise RuntimeError("the traced region never ended")  # pragma: no cover


if __name__ == "__main__":
    raise SystemExit(main())
