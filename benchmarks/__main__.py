"""``python -m benchmarks`` (``nox -s bench``): see ``python -m benchmarks --help``."""

from __future__ import annotations

from ._cli import main

raise SystemExit(main())
