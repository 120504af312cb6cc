"""Command line: ``python -m trio_agents demo`` (also installed as ``trio-agents demo``)."""

from __future__ import annotations

import argparse
import functools
import math
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import trio
import trio.testing

from . import __version__
from ._demo import ModelFactory, run_demo, scripted_models
from ._demo_limits import CallLimits, CallProgress, LimitedModel
from ._errors import AgentError, InvalidArgumentError

_E = TypeVar("_E", bound=BaseException)

# Exit codes besides 0, 1 (the model failed, or --timeout) and 2 (bad arguments): the shell's
# 128 + signal number, as when the process dies of the signal.
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1  # 141: reader left

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
          tree from the shared event log and the usage are printed; (4) coordination
          patterns: a triage agent hands the conversation off to a billing agent, then two
          agents race on one question and the slower is cancelled when the first answers.
          The scripted models run on trio's virtual clock: their simulated latencies cost no
          real time, and every time printed is exact.
          With --model (and --base-url for an OpenAI-compatible server), every agent of the
          same scenarios calls that real model instead, on the real clock; the faults the
          demo injects (a throttled call, a failing worker) are still injected around it.
          A real model's answers are capped (--max-tokens), each call and the whole demo have
          deadlines (--call-timeout, --timeout), and while a call is slow a line on stderr
          every few seconds says which agent is waiting and for how long.
  view    replay a JSON Lines event log (EventLog.export_jsonl) and show the agent tree:
          each agent's final status, requests, errors, restarts, tokens and cost (needs
          the 'live' extra: pip install 'trio-agents[live]').

Exit codes: 0 done, 1 the model failed or --timeout passed, 2 bad arguments, 130 interrupted
(Ctrl-C), 141 the reader of the output went away (e.g. | head).
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
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
        "--quiet",
        action="store_true",
        help="print only the results (answers, usage, final statuses), "
        "not the transcripts and lifecycle events",
    )
    demo.add_argument(
        "--live",
        action="store_true",
        help="draw the agent tree updating as agents start, serve, fail, restart and stop, "
        "instead of the transcripts (needs the 'live' extra)",
    )
    demo.add_argument(
        "--model",
        metavar="ID",
        help="run every agent on a real model instead of the scripted ones, e.g. "
        "openai:smollm2 with --base-url http://127.0.0.1:8080/v1 (python3 "
        "tools/serve_llama.py serves it), openai:gpt-4o-mini or anthropic:claude-haiku-4-5 "
        "(needs the extra: pip install 'trio-agents[openai]' or '[anthropic]')",
    )
    demo.add_argument(
        "--base-url",
        metavar="URL",
        help="the server of --model, for OpenAI-compatible servers (vLLM, llama.cpp, "
        "Ollama, ...), e.g. http://127.0.0.1:8080/v1",
    )
    demo.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help=f"with --model: cap each answer at N output tokens (default: {_MAX_TOKENS})",
    )
    demo.add_argument(
        "--call-timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --model: deadline of each model call, retried like a network error "
        f"(default: {_CALL_TIMEOUT:g})",
    )
    demo.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help=f"with --model: deadline of the whole demo (default: {_TIMEOUT:g}; 'inf' for none)",
    )
    demo.add_argument(
        "--progress-every",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="with --model: while a model call is slower than this, say so on stderr this "
        f"often (default: {_PROGRESS_EVERY:g})",
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


_MAX_TOKENS = 256
_CALL_TIMEOUT = 120.0
_TIMEOUT = 900.0
_PROGRESS_EVERY = 5.0
_REAL_MODEL_ONLY = ("max_tokens", "call_timeout", "timeout", "progress_every")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0 or 'inf', got {text!r}")
    return value


def _model_factory(args: argparse.Namespace) -> ModelFactory:
    # The scripted models are the default; --model puts one real model behind every agent.
    if args.model is None:
        for dest in ("base_url", *_REAL_MODEL_ONLY):
            if getattr(args, dest) is not None:
                flag = "--" + dest.replace("_", "-")
                raise InvalidArgumentError(f"{flag} needs --model (e.g. --model openai:NAME)")
        return scripted_models()
    from .models import resolve_model

    model = resolve_model(args.model, base_url=args.base_url)
    limits = CallLimits(
        max_tokens=args.max_tokens or _MAX_TOKENS,
        call_timeout=args.call_timeout or _CALL_TIMEOUT,
    )
    progress = args.progress
    return lambda name: LimitedModel(model, name, limits, progress)


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
    try:
        args = parser.parse_args(argv)
        if args.command == "view":
            return _view(parser, args)
        if args.command == "demo":
            return _demo(parser, args)
        raise AssertionError(f"unhandled command {args.command!r}")  # argparse rejects the rest
    except BaseException as exc:
        # Ctrl-C and a reader that went away end the command in one line (or none), with the
        # shell's exit code for the signal, never with a traceback.
        if _find(exc, KeyboardInterrupt) is not None:
            print(f"{parser.prog}: interrupted", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        if _find(exc, BrokenPipeError) is not None:
            _drop_stdout()
            return EXIT_BROKEN_PIPE
        raise


def _demo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    args.progress = None
    if args.model is not None:
        args.progress = CallProgress(sys.stderr, every=args.progress_every or _PROGRESS_EVERY)
    try:
        factory = _model_factory(args)
    except (InvalidArgumentError, ImportError) as exc:
        parser.exit(2, f"{parser.prog} demo: error: {exc}\n")
    if args.live:
        try:
            import trio_agents.live  # noqa: F401
        except ImportError as exc:
            parser.exit(2, f"{parser.prog} demo: error: {exc}\n")
    timeout = math.inf if args.model is None else (args.timeout or _TIMEOUT)
    try:
        finished = trio.run(_run, args, factory, timeout, clock=_clock(args))
    except BaseException as exc:
        failure = _find(exc, AgentError)
        if failure is None or _find(exc, KeyboardInterrupt) is not None:
            raise
        # A real model can fail for real (no server, bad key): say so in one line.
        parser.exit(
            1, f"{parser.prog} demo: the model failed: {type(failure).__name__}: {failure}\n"
        )
    sys.stdout.flush()  # a closed pipe shows here, inside main, not at interpreter exit
    if not finished:
        parser.exit(1, f"{parser.prog} demo: stopped: not done within --timeout {timeout:g} s\n")
    return 0


async def _run(args: argparse.Namespace, factory: ModelFactory, seconds: float) -> bool:
    """Run the demo; returns whether it finished within ``seconds``."""
    progress: CallProgress | None = args.progress
    async with trio.open_nursery() as nursery:
        if progress is not None:
            nursery.start_soon(progress.serve)
        with trio.move_on_after(seconds) as deadline:
            if args.live:
                await _run_live(args, factory)
            else:
                await run_demo(factory, sys.stdout, seed=args.seed, verbose=not args.quiet)
        nursery.cancel_scope.cancel(reason="the demo is over")
    return not deadline.cancelled_caught


async def _run_live(args: argparse.Namespace, factory: ModelFactory) -> None:
    """The demo with ``--live``: the agent tree is the output, not the transcripts."""
    import io

    from rich.console import Console

    from ._eventlog import EventLog
    from .live import follow

    log = EventLog()
    async with trio.open_nursery() as view:
        view.start_soon(functools.partial(follow, log, console=Console()))
        await run_demo(factory, io.StringIO(), seed=args.seed, verbose=False, events=log)
        await trio.sleep(1)  # one more redraw after the last event
        view.cancel_scope.cancel(reason="the demo is over")


def _find(exc: BaseException, kind: type[_E]) -> _E | None:
    """``exc`` if it is a ``kind``, else the first ``kind`` inside it (groups, any depth)."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None


def _drop_stdout() -> None:
    # What Python's docs advise for SIGPIPE: point stdout at devnull, so the interpreter's own
    # flush at exit does not fail again on the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (e.g. replaced in a test)
        pass


if __name__ == "__main__":
    sys.exit(main())
