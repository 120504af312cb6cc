"""The command line as a user meets it: run as a separate process, interrupted with Ctrl-C,
piped into a reader that leaves early, asked for its version."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import trio_agents
from trio_agents.__main__ import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED

# A demo whose first model call waits forever (after saying so on stderr), so the test can
# interrupt it mid-run without any timing guess.
_WAITING_DEMO = textwrap.dedent(
    """
    import sys
    import trio
    import trio_agents.__main__ as cli
    from trio_agents.testing import FunctionModel

    async def wait_forever(request):
        print("model call started", file=sys.stderr, flush=True)
        await trio.sleep_forever()

    cli.scripted_models = lambda: (lambda name: FunctionModel(wait_forever))
    sys.exit(cli.main(["demo"]))
    """
)


def _run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def test_version_prints_one_line() -> None:
    done = _run("-m", "trio_agents", "--version")
    assert done.returncode == 0
    assert done.stdout == f"python -m trio_agents {trio_agents.__version__}\n"
    assert done.stderr == ""


def test_ctrl_c_mid_run_is_one_line_and_exit_130() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", _WAITING_DEMO],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline() == "model call started\n"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == EXIT_INTERRUPTED == 130
    assert err == "python -m trio_agents: interrupted\n"
    assert "Traceback" not in out


def test_a_reader_that_leaves_early_ends_the_demo_quietly() -> None:
    # The reader has gone before the first line is written: every write fails with EPIPE
    # (Python ignores SIGPIPE), which is what `demo | head -3` meets once head exits.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "trio_agents", "demo", "--quiet"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert done.returncode == EXIT_BROKEN_PIPE == 141
    assert done.stderr == ""


def test_the_whole_quiet_demo_through_a_pipe() -> None:
    done = _run("-m", "trio_agents", "demo", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("== 1. An agent with tools ==\n")
    assert done.stderr == ""
