"""The code in README.md and the docs runs, and the README's demo command works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import trio_agents
import trio_agents.testing

ROOT = Path(__file__).resolve().parent.parent

_MARKDOWN_PYTHON = re.compile(r"^```python\n(?P<code>.*?)^```", re.MULTILINE | re.DOTALL)
_RST_PYTHON = re.compile(r"^\.\. code-block:: python\n\n(?P<code>(?:(?:   .*)?\n)+)", re.MULTILINE)


def _examples() -> list[tuple[str, str]]:
    found = []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for n, m in enumerate(_MARKDOWN_PYTHON.finditer(readme), 1):
        found.append((f"README.md#{n}", m["code"]))
    for rst in sorted((ROOT / "docs").glob("*.rst")):
        for n, m in enumerate(_RST_PYTHON.finditer(rst.read_text(encoding="utf-8")), 1):
            code = "\n".join(line[3:] for line in m["code"].splitlines())
            found.append((f"docs/{rst.name}#{n}", code))
    return found


_EXAMPLES = _examples()

# The examples use the agent API; until a checkout has it, they cannot run.
_needs_agent_api = pytest.mark.skipif(
    not (
        hasattr(trio_agents, "Agent")
        and hasattr(trio_agents, "tool")
        and hasattr(trio_agents.testing, "ScriptedModel")
    ),
    reason="trio_agents.Agent / tool are not exported yet",
)


def test_examples_were_found() -> None:
    names = [name for name, _ in _EXAMPLES]
    assert any(name.startswith("README.md") for name in names)
    assert any(name.startswith("docs/quickstart.rst") for name in names)


@_needs_agent_api
@pytest.mark.parametrize("code", [code for _, code in _EXAMPLES], ids=[n for n, _ in _EXAMPLES])
def test_example_runs(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Each example calls trio.run itself, so this test is synchronous.
    exec(compile(code, "<example>", "exec"), {"__name__": "__example__"})
    assert capsys.readouterr().out.strip()


@pytest.mark.skipif(
    not (ROOT / "trio_agents" / "__main__.py").exists(),
    reason="trio_agents/__main__.py (the demo) is not written yet",
)
def test_demo_command_runs() -> None:
    # The README's demo command, run with this interpreter: it needs no network and ends.
    done = subprocess.run(
        [sys.executable, "-m", "trio_agents", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def _readme_real_models() -> tuple[str, str]:
    """The README's install command for the real-model extras, and the snippet after it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Real models") :]
    install = re.search(r"^python3 -m pip install '\.\[(?P<extras>[^\]]+)\]'", section, re.M)
    snippet = _MARKDOWN_PYTHON.search(section)
    assert install is not None and snippet is not None
    return install["extras"], snippet["code"]


def test_readme_real_model_install_names_every_extra_its_snippet_needs() -> None:
    extras, code = _readme_real_models()
    needed = {provider for provider in ("openai", "anthropic") if f'"{provider}:' in code}
    if "cost_for(" in code:
        needed.add("prices")
    assert needed == {"openai", "anthropic", "prices"}
    assert needed <= set(extras.split(","))


def test_readme_real_model_snippet_explains_an_unknown_cost() -> None:
    # Without the prices extra the snippet must not print a bare 0.0: it prints the note.
    _, code = _readme_real_models()
    blocked = 'import sys\nsys.modules["genai_prices"] = None\n' + code
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("cost unknown: no price for 'openai:gpt-4o-mini'")
    assert "pip install 'trio-agents[prices]'" in last
    # With it, the same line is the cost.
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.splitlines()[-1]) > 0


def test_help_and_readme_use_the_same_model_ids() -> None:
    from trio_agents.__main__ import _parser

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    demo = next(
        action
        for action in _parser()._subparsers._group_actions[0].choices["demo"]._actions  # type: ignore[union-attr]
        if "--model" in action.option_strings
    )
    ids = re.findall(r"\b(?:openai|anthropic):[\w.-]+", demo.help or "")
    assert ids == ["openai:smollm2", "openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"]
    for model_id in ids:
        assert model_id in readme, model_id
    assert "python3 tools/serve_llama.py" in readme
    assert (ROOT / "tools" / "serve_llama.py").exists()


def test_quickstart_describes_every_demo_scenario() -> None:
    from trio_agents._demo import SCENARIOS

    text = (ROOT / "docs" / "quickstart.rst").read_text(encoding="utf-8")
    section = text[text.index("Run the demo") :]
    items = re.findall(r"^(\d)\. ", section, re.M)
    assert items == [str(n) for n in range(1, len(SCENARIOS) + 1)]
    for word in ("tools", "supervision", "delegat"):
        assert word in section
