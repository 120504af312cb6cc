"""Command line: ``python -m trio_agents demo`` (also installed as ``trio-agents demo``)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

import trio
import trio.testing

from ._demo import ModelFactory, run_demo, scripted_models
from ._errors import AgentError, InvalidArgumentError

_DESCRIPTION = """\
trio_agents: systems of LLM agents on Trio, with the guarantees of structured concurrency.

Commands:
  demo    run the demo scenarios offline, on scripted models shipped in the package:
          (1) an agent with two tools answers a question over several turns, recovering
          from a throttled model call and from a tool error; (2) a supervision tree of
          seven agents (lead -> 2 researchers -> 2 workers each) in which one worker fails
          once, is restarted by its supervisor after a backoff, and answers; then the tree
          closes gracefully and every agent's status and statistics are printed; (3) a lead
          delegating to three specialists, two of them in parallel, through the delegate
          tool: a policy denies one tool call, one specialist fails once and the lead asks
          again, the writer delegates once more; then the delegation records, the event
          tree from the shared event log and the usage are printed.
          The scripted models run on trio's virtual clock: their simulated latencies cost no
          real time, and every time printed is exact.
          With --model (and --base-url for an OpenAI-compatible server), every agent of the
          same scenarios calls that real model instead, on the real clock; the faults the
          demo injects (a throttled call, a failing worker) are still injected around it.
  view    replay a JSON Lines event log (EventLog.export_jsonl) and show the agent tree:
          each agent's final status, requests, errors, restarts, tokens and cost (needs
          the 'live' extra: pip install 'trio-agents[live]').
"""


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "trio-agents" if name.startswith("trio-agents") else "python -m trio_agents"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the offline demo scenarios (no network, deterministic)",
        description="Run the demo scenarios on scripted models: no network, no API key. "
        "The same --seed always prints the same output.",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the retry and backoff jitter (default: 0)",
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="draw the agent tree updating as agents start, serve, fail, restart and stop, "
        "instead of the transcripts (needs the 'live' extra)",
    )
    demo.add_argument(
        "--quiet",
        action="store_true",
        help="print only the results (answers, usage, final statuses), "
        "not the transcripts and lifecycle events",
    )
    demo.add_argument(
        "--model",
        metavar="ID",
        help="run every agent on a real model instead of the scripted ones, e.g. "
        "openai:gpt-4o-mini or anthropic:claude-3-5-haiku-latest (needs the extra: "
        "pip install 'trio-agents[openai]' or '[anthropic]')",
    )
    demo.add_argument(
        "--base-url",
        metavar="URL",
        help="the server of --model, for OpenAI-compatible servers (vLLM, llama.cpp, "
        "Ollama, ...), e.g. http://127.0.0.1:8080/v1",
    )
    _add_view(commands)
    return parser


def _add_view(commands: Any) -> None:
    view = commands.add_parser(
        "view",
        help="show the agent tree of a JSON Lines event log (needs the 'live' extra)",
        description="Replay an event log written by EventLog.export_jsonl and show each "
        "agent's final status, requests, errors, restarts, tokens and cost.",
    )
    view.add_argument("log", metavar="LOG.jsonl", help="the event log to replay")


def _view(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from .live import replay
    except ImportError as exc:
        parser.exit(2, f"{parser.prog} view: error: {exc}\n")
    from rich.console import Console

    from ._errors import DeserializationError
    from ._eventlog import EventLog

    try:
        log = EventLog.import_jsonl(args.log)
    except (OSError, DeserializationError) as exc:
        parser.exit(2, f"{parser.prog} view: error: cannot read {args.log}: {exc}\n")
    console = Console()
    console.print(replay(log, console=console).render(title=args.log))
    return 0


def _model_factory(args: argparse.Namespace) -> ModelFactory:
    # The scripted models are the default; --model puts one real model behind every agent.
    if args.model is None:
        if args.base_url is not None:
            raise InvalidArgumentError("--base-url needs --model (e.g. --model openai:NAME)")
        return scripted_models()
    from .models import resolve_model

    model = resolve_model(args.model, base_url=args.base_url)
    return lambda name: model


def _clock(args: argparse.Namespace) -> trio.abc.Clock | None:
    # The scripted models run on a virtual clock: their simulated latencies, the retry and
    # backoff delays take no real time, and the times scenario 3 prints are exact. A real
    # provider needs the real clock (None), or its network waits would be skipped.
    if args.model is not None:
        return None
    return trio.testing.MockClock(autojump_threshold=0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "view":
        return _view(parser, args)
    if args.command == "demo":
        try:
            factory = _model_factory(args)
        except (InvalidArgumentError, ImportError) as exc:
            parser.exit(2, f"{parser.prog} demo: error: {exc}\n")
        if args.live:
            try:
                import trio_agents.live  # noqa: F401
            except ImportError as exc:
                parser.exit(2, f"{parser.prog} demo: error: {exc}\n")
        try:
            _run_live(args, factory) if args.live else _run(args, factory)
        except AgentError as exc:
            # A real model can fail for real (no server, bad key): say so in one line.
            parser.exit(1, f"{parser.prog} demo: the model failed: {type(exc).__name__}: {exc}\n")
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects the rest


def _run(args: argparse.Namespace, factory: ModelFactory) -> None:
    trio.run(
        functools.partial(
            run_demo,
            factory,
            sys.stdout,
            seed=args.seed,
            verbose=not args.quiet,
        ),
        clock=_clock(args),
    )


def _run_live(args: argparse.Namespace, factory: ModelFactory) -> None:
    import io

    from rich.console import Console

    from ._eventlog import EventLog
    from .live import follow

    async def main() -> None:
        log = EventLog()
        console = Console()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(follow, log, console=console))
            # The transcript is not shown: the tree is the output.
            await run_demo(factory, io.StringIO(), seed=args.seed, verbose=False, events=log)
            await trio.sleep(1)  # one more redraw after the last event
            nursery.cancel_scope.cancel()

    trio.run(main, clock=_clock(args))


if __name__ == "__main__":
    sys.exit(main())
