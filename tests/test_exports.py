"""The public surface: every exported name exists once, is documented, and is in the docs.

In the style of trio's ``_tests/test_exports.py`` and anyio's ``tests/test_all_attributes.py``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import trio_agents
import trio_agents.distributed
import trio_agents.distributed.ray
import trio_agents.interop
import trio_agents.live
import trio_agents.mcp
import trio_agents.models
import trio_agents.otel
import trio_agents.patterns
import trio_agents.testing
import trio_agents.testing.strategies

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "trio_agents"
DOCS_DIR = ROOT / "docs"

PUBLIC_MODULES = [
    trio_agents,
    trio_agents.mcp,
    trio_agents.distributed,
    trio_agents.distributed.ray,
    trio_agents.interop,
    trio_agents.models,
    trio_agents.otel,
    trio_agents.live,
    trio_agents.testing,
    trio_agents.testing.strategies,
    trio_agents.patterns,
]

# ``.. autoclass:: Name``, ``.. py:type:: Name``, ``.. currentmodule:: trio_agents`` ...
_DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(?:py:)?(?P<kind>[a-z]+)::\s*(?P<target>[A-Za-z_][\w.]*)",
    re.MULTILINE,
)
_MODULE_KINDS = {"module", "currentmodule", "automodule"}
_OPTIONS = re.compile(r"(?:\n[ \t]+:[\w-]+:.*)*")


def documented_names() -> set[str]:
    """Fully qualified names that have a description (autodoc or py: directive) in docs/.

    ``.. automodule:: M`` with ``:members:`` documents every name in ``M.__all__``.
    """
    found: set[str] = set()
    for rst in sorted(DOCS_DIR.rglob("*.rst")):
        if "_build" in rst.parts:
            continue
        text = rst.read_text(encoding="utf-8")
        current = ""
        for match in _DIRECTIVE.finditer(text):
            kind, target = match["kind"], match["target"]
            if kind in _MODULE_KINDS:
                current = target
                if kind != "currentmodule":
                    found.add(target)
                options = _OPTIONS.match(text, match.end())
                if kind == "automodule" and options and ":members:" in options.group():
                    module = importlib.import_module(target)
                    found.update(f"{target}.{name}" for name in getattr(module, "__all__", ()))
            elif target.startswith("trio_agents.") or not current:
                found.add(target)
            else:
                found.add(f"{current}.{target}")
    return found


def _params() -> list[tuple[types.ModuleType, str]]:
    return [(module, name) for module in PUBLIC_MODULES for name in module.__all__]


def _ids() -> list[str]:
    return [f"{module.__name__}.{name}" for module, name in _params()]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_has_no_duplicates(module: types.ModuleType) -> None:
    names = list(module.__all__)
    assert all(isinstance(name, str) for name in names)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert not duplicates, f"{module.__name__}.__all__ lists these more than once: {duplicates}"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_public_names_are_in_all(module: types.ModuleType) -> None:
    # A public (no underscore) name that the package defines but leaves out of __all__ is
    # either a mistake or should be private.
    exported = set(module.__all__)
    missing = sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and str(getattr(obj, "__module__", "")).startswith("trio_agents")
        and name not in exported
    )
    assert not missing, f"add to {module.__name__}.__all__ or make private: {missing}"


@pytest.mark.parametrize(("module", "name"), _params(), ids=_ids())
def test_exported_name_exists(module: types.ModuleType, name: str) -> None:
    assert hasattr(module, name), f"{module.__name__}.__all__ lists {name!r} but it is not there"


@pytest.mark.parametrize(("module", "name"), _params(), ids=_ids())
def test_exported_name_has_docstring(module: types.ModuleType, name: str) -> None:
    obj = getattr(module, name)
    if not (inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj)):
        # Type aliases and other data carry no docstring at run time; the docs describe them.
        return
    # The object's own docstring: a class must not get away with its base class's.
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    assert (doc or "").strip(), f"{module.__name__}.{name} has no docstring"


@pytest.mark.parametrize(("module", "name"), _params(), ids=_ids())
def test_exported_name_is_in_docs_reference(module: types.ModuleType, name: str) -> None:
    qualified = f"{module.__name__}.{name}"
    assert qualified in documented_names(), (
        f"{qualified} is public but docs/ has no entry for it: add e.g. "
        f"'.. autoclass:: {name}' (or autofunction, autoexception, py:type for an alias) "
        f"under '.. currentmodule:: {module.__name__}' in docs/reference.rst"
    )


def test_docs_reference_names_are_public() -> None:
    # The reverse: the docs do not describe names that are gone or private.
    public = {f"{module.__name__}.{name}" for module, name in _params()}
    public |= {module.__name__ for module in PUBLIC_MODULES}
    stale = sorted(
        name
        for name in documented_names()
        if name.startswith("trio_agents")
        and name not in public
        # members (``Agent.run``) are documented under their class
        and not any(name.startswith(f"{owner}.") for owner in public)
    )
    assert not stale, f"docs/ describe names that are not exported: {stale}"


def _source_files() -> list[Path]:
    files = sorted(PACKAGE_DIR.rglob("*.py"))
    assert files, f"no source files under {PACKAGE_DIR}"
    return files


@pytest.mark.parametrize("path", _source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_asyncio_import(path: Path) -> None:
    if path == PACKAGE_DIR / "distributed" / "_ray.py":
        pytest.skip("the Ray host actor runs trio in guest mode on Ray's asyncio loop")
    if path.parent == PACKAGE_DIR / "interop":
        pytest.skip("trio_agents.interop runs asyncio agents on trio-asyncio")
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offending = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in {"import_module", "__import__"}
        ):
            names = [str(node.args[0].value)]
        else:
            continue
        offending += [f"line {node.lineno}: {n}" for n in names if n.split(".")[0] == "asyncio"]
    assert not offending, f"{path.relative_to(ROOT)} imports asyncio: {offending}"


def test_importing_the_package_does_not_load_asyncio() -> None:
    # trio, attrs and cattrs do not import asyncio, so neither may we (providers load lazily).
    code = "import sys, trio_agents; print('asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_the_distributed_core_does_not_load_asyncio() -> None:
    # Only the Ray backend's host actor touches asyncio, and only when it is imported.
    code = "import sys, trio_agents.distributed; print('asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
