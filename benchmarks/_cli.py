"""``python -m benchmarks``: run, print the table, write the JSON, compare with an old run."""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence

from ._core import Profile
from ._report import compare, read_json, render, write_json
from ._runner import Config, run, select
from .scenarios import OPT_IN, SCENARIOS


def _sizes(values: Sequence[str]) -> dict[str, tuple[int, ...]]:
    keys = {s.key for s in SCENARIOS + OPT_IN}
    sizes: dict[str, tuple[int, ...]] = {}
    for value in values:
        key, sep, numbers = value.partition("=")
        if not sep or key not in keys:
            raise argparse.ArgumentTypeError(
                f"--size takes SCENARIO=N[,N...] with SCENARIO one of {', '.join(sorted(keys))}; "
                f"got {value!r}"
            )
        try:
            parsed = tuple(int(n.replace("_", "")) for n in numbers.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"--size {value!r}: sizes must be integers") from None
        if not parsed or min(parsed) < 1:
            raise argparse.ArgumentTypeError(f"--size {value!r}: sizes must be >= 1")
        sizes[key] = parsed
    return sizes


def parser() -> argparse.ArgumentParser:
    scenarios = (
        "\n".join(
            f"  {s.number}  {s.key:<14} {s.title}\n     {'':<14} size: {s.size_meaning}; default "
            f"{', '.join(map(str, s.sizes['default']))}; --quick "
            f"{', '.join(map(str, s.sizes['quick']))}"
            for s in SCENARIOS + OPT_IN
        )
        + "\n  (opt-in scenarios run only when named with -s)"
    )
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="trio_agents beside the same operations in raw trio, measured interleaved "
        "(A B A B ...) in one run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scenarios:\n" + scenarios,
    )
    p.add_argument(
        "-s",
        "--scenario",
        action="append",
        default=[],
        metavar="NAME",
        help="scenario key or number (repeat, or separate with commas); default: all",
    )
    p.add_argument(
        "--size",
        action="append",
        default=[],
        metavar="SCENARIO=N[,N]",
        help="sizes of one scenario, e.g. --size spawn=1000,10000",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help="small sizes and fewer operations (about a minute)"
    )
    group.add_argument(
        "--smoke", action="store_true", help="the smallest sizes (checks the runner works)"
    )
    p.add_argument("-r", "--repeats", type=int, default=None, help="measured rounds (default 5)")
    p.add_argument(
        "-w", "--warmup", type=int, default=1, help="discarded warm-up rounds (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument(
        "--memory-repeats",
        type=int,
        default=1,
        help="memory samples per variant (default 1; memory is nearly deterministic)",
    )
    p.add_argument(
        "--no-isolate-memory",
        action="store_true",
        help="take memory samples in this process (RSS growth then under-reports)",
    )
    p.add_argument(
        "--gc",
        choices=("on", "off", "freeze"),
        default="on",
        help="the cyclic garbage collector inside measured regions, on both sides: on "
        "(default), off, or freeze (gc.freeze() first, as after building a large tree)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="where to write the results (default: bench-<UTC time>.json)",
    )
    p.add_argument("--no-json", action="store_true", help="do not write JSON")
    p.add_argument("--compare", metavar="OLD.json", help="compare with an earlier run's JSON")
    p.add_argument(
        "--show", metavar="RUN.json", help="print the table of a saved run instead of running"
    )
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``; returns the exit status."""
    p = parser()
    args = p.parse_args(argv)
    if args.list:
        print(p.epilog)
        return 0
    if args.show:
        report = read_json(args.show)
        print(render(report))
        if args.compare:
            print()
            print(compare(read_json(args.compare), report))
        return 0
    try:
        sizes = _sizes(args.size)
    except argparse.ArgumentTypeError as exc:
        p.error(str(exc))
    old = read_json(args.compare) if args.compare else None
    profile: Profile = "smoke" if args.smoke else "quick" if args.quick else "default"
    repeats = args.repeats if args.repeats is not None else (3 if profile != "default" else 5)
    try:
        config = Config(
            scenarios=tuple(s for value in args.scenario for s in value.split(",") if s),
            sizes=sizes,
            profile=profile,
            repeats=repeats,
            warmup=args.warmup,
            seed=args.seed,
            isolate_memory=not args.no_isolate_memory,
            memory_repeats=args.memory_repeats,
            gc=args.gc,
        )
        select(config)
    except ValueError as exc:
        p.error(str(exc))
    report = run(config, progress=None if args.no_progress else sys.stderr)
    print(render(report))
    if not args.no_json:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        path = write_json(report, args.json or f"bench-{stamp}.json")
        print(f"\nwrote {path} (every sample; compare later runs with --compare {path})")
    if old is not None:
        print()
        print(compare(old, report))
    return 0
