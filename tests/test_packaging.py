"""The declared dependency floors, the nox session that tests them, and CI's script."""

from __future__ import annotations

import ast
import os
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Below these the library does not work: trio < 0.31 has no CancelScope.cancel(reason=),
# cattrs < 25.2 no cols.homogenous_tuple_structure_factory, and cattrs 25.2 needs attrs 24.3;
# typing-extensions gives Agent[T] its TypeVar default, and 4.16 is what the test extra's
# dependencies (pydantic, anyio) need beside it, so the floors session can install it.
# At exactly these the whole suite passes (nox -s floors).
KNOWN_FLOORS = {
    "trio": (0, 31),
    "attrs": (24, 3),
    "cattrs": (25, 2),
    "typing-extensions": (4, 16),
}


def _runtime_floors() -> dict[str, tuple[int, ...]]:
    """``runtime_floors()`` from noxfile.py, run without nox installed."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    [function] = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name == "runtime_floors"
    ]
    namespace: dict[str, object] = {"re": re, "tomllib": tomllib, "open": open}
    module = ast.Module(body=[function], type_ignores=[])
    exec(compile(module, "noxfile.py", "exec"), namespace)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        pins = namespace["runtime_floors"]()  # type: ignore[operator]
    finally:
        os.chdir(cwd)
    floors = {}
    for pin in pins:
        name, version = pin.split("==")
        floors[name] = tuple(int(part) for part in version.split("."))
    return floors


def test_declared_floors_are_the_ones_that_work_and_nox_pins_them() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert len(data["project"]["dependencies"]) == len(KNOWN_FLOORS)
    assert _runtime_floors() == KNOWN_FLOORS
    assert any(
        req.startswith("pytest-timeout") for req in data["project"]["optional-dependencies"]["test"]
    )


def test_ci_runs_the_readme_command_first_then_floors_and_requires_e2e() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme_command = "python3 -m pip install nox && python3 -m nox -s tests"
    assert f"```console\n{readme_command}\n```" in readme
    commands = [
        line
        for line in script.splitlines()
        if line.startswith("python3 -m") or line.startswith("TRIO_AGENTS_E2E_REQUIRED")
    ]
    assert commands[0] == f"{readme_command} || status=$?"
    assert commands[1] == "python3 -m nox -s floors || status=$?"
    assert commands[-1] == "TRIO_AGENTS_E2E_REQUIRED=1 python3 -m nox -s e2e || status=$?"
    assert "apt-get update && apt-get install -y build-essential cmake" in script
