#!/usr/bin/env python3
"""Serve a small real model on 127.0.0.1 for the demo: llama.cpp's ``llama-server`` with
SmolLM2-135M-Instruct, both fetched (and the server built, once) by ``build_llama_server.py``.

Usage: ``python3 tools/serve_llama.py [--port 8080] [--threads N] [--jobs N]``. It prints the
exact ``--model`` and ``--base-url`` to give the demo once the server answers, and serves
until Ctrl-C. The first run on a machine builds the server (about 12 minutes on 2 cores;
needs a C/C++ compiler and cmake); later runs start in seconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_llama_server as build

ALIAS = "smollm2"
"""The model name the server answers to (``--model openai:smollm2``)."""

EXIT_INTERRUPTED = 130


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def server_command(server: Path, model: Path, port: int, threads: int) -> list[str]:
    """The ``llama-server`` command line: loopback only, the model under :data:`ALIAS`."""
    return [
        str(server),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-t",
        str(threads),
        "-c",
        "4096",
        "-np",
        "4",
        "--no-webui",
        "--jinja",
        "--alias",
        ALIAS,
    ]


def demo_command(port: int) -> str:
    """The demo command line that uses the server on ``port``."""
    return (
        f"python3 -m trio_agents demo --model openai:{ALIAS} --base-url http://127.0.0.1:{port}/v1"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (8080)")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="compute threads (all cores)"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="build jobs")
    args = parser.parse_args(argv)
    # SIGTERM (kill, a service manager) stops the server too, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        model = build.ensure_model()
        server = build.server_path()
        if not build.server_works(server):
            server = build.build_server(args.jobs)
    except build.Unsupported as exc:
        print(f"serve_llama: cannot build llama-server here: {exc}", file=sys.stderr)
        return build.EXIT_UNSUPPORTED
    url = f"http://127.0.0.1:{args.port}"
    log_path = build.cache_root() / f"llama-server-{args.port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            server_command(server, model, args.port, args.threads),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while not _healthy(url):
            if process.poll() is not None:
                print(
                    f"serve_llama: llama-server exited with {process.returncode} "
                    f"(log: {log_path}):\n{log_path.read_text()[-4000:]}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.1)
        print(
            f"llama-server is serving {model.name} on {url}/v1 (Ctrl-C stops it; log: "
            f"{log_path}). Run the demo on it with:\n\n    {demo_command(args.port)}\n",
            flush=True,
        )
        return process.wait() or 0
    except KeyboardInterrupt:
        print("serve_llama: stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


if __name__ == "__main__":
    sys.exit(main())
