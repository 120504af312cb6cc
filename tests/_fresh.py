"""Run a test in a fresh interpreter: ``@in_fresh_interpreter`` on a synchronous test.

The supervision machine's mutation tests use it. Run after a hundred other tests in the same
process, the machine misses two one_for_all ordering mutants and one restart-limit mutant that
it catches in a fresh interpreter every time (seen on every hash seed tried); until the cause is
understood, each mutation test gets a process of its own, as a user's test run would give it.
"""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

_F = TypeVar("_F", bound=Callable[..., Any])
_INNER = "TRIO_AGENTS_FRESH_TEST"


def in_fresh_interpreter(test: _F) -> _F:
    """Run ``test`` through pytest in a subprocess (itself, once there); fail with its output."""

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if os.environ.get(_INNER) == test.__name__:
            return test(*args, **kwargs)
        node = f"{inspect.getfile(test)}::{test.__name__}"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", node],
            env={**os.environ, _INNER: test.__name__},
            capture_output=True,
            text=True,
            timeout=280,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"{node} failed in a fresh interpreter:\n{result.stdout[-4000:]}")
        return None

    return pytest.mark.timeout(300)(wrapper)  # type: ignore[no-any-return]
