"""The benchmark runner: trio_agents beside the same operations in raw trio, in one run.

Run it with ``python -m benchmarks`` (or ``nox -s bench``); ``--help`` lists the options and
the scenarios. From Python::

    from benchmarks import Config, run, render
    report = run(Config(profile="quick", scenarios=("spawn",)))
    print(render(report))

The report is a JSON-ready dict holding the machine, the versions and every sample;
:func:`write_json` / :func:`read_json` store it, :func:`compare` sets two side by side.
The docs page "Performance" explains the scenarios and shows a run's table.
"""

from __future__ import annotations

from ._cli import main
from ._core import BASELINE, FRAMEWORK, Case, Meter, Scenario, Target, Variant
from ._report import compare, read_json, render, write_json
from ._runner import Config, plan, run
from .scenarios import SCENARIOS

__all__ = [
    "BASELINE",
    "FRAMEWORK",
    "SCENARIOS",
    "Case",
    "Config",
    "Meter",
    "Scenario",
    "Target",
    "Variant",
    "compare",
    "main",
    "plan",
    "read_json",
    "render",
    "run",
    "write_json",
]
