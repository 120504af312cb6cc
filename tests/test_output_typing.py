"""The output type reaches type checkers: mypy --strict on tests/typecheck/output_types.py."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_output_types_check_with_mypy() -> None:
    api = pytest.importorskip("mypy.api")
    path = Path(__file__).parent / "typecheck" / "output_types.py"
    out, err, status = api.run(["--strict", "--no-incremental", str(path)])
    assert status == 0, out + err
