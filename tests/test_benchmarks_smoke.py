"""The benchmark runner never rots: every scenario runs at its smallest size, through the
runner's Python API and its command line. Nothing here asserts a time."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks/` lives beside the package, not inside it
    sys.path.insert(0, str(ROOT))

from benchmarks import SCENARIOS, Config, compare, main, plan, read_json, render, run  # noqa: E402
from benchmarks._core import run_memory_sample  # noqa: E402

Report = dict[str, Any]
SMOKE = Config(profile="smoke", repeats=1, warmup=0, isolate_memory=False)


@pytest.fixture(scope="module")
def report() -> Report:
    return run(SMOKE)


def test_every_scenario_runs_or_says_why_not(report: Report) -> None:
    ran = {case["scenario"] for case in report["cases"]}
    skipped = {item["scenario"]: item["reason"] for item in report["skipped"]}
    assert ran | set(skipped) == {scenario.key for scenario in SCENARIOS}
    assert not ran & set(skipped)
    assert all(reason for reason in skipped.values())
    # Both modules exist in this tree, so nothing may be skipped silently.
    assert not skipped


def test_every_variant_has_a_sample_per_round(report: Report) -> None:
    cases, _ = plan(SMOKE)
    assert len(report["cases"]) == len(cases)
    for case in report["cases"]:
        variants = case["metrics"]["time"]["variants"]
        assert list(variants) == [v["key"] for v in case["variants"]]
        for values in variants.values():
            assert values["n"] == 1
            assert values["samples"][0] > 0
        assert variants["raw"]["ratio_to_raw"] == pytest.approx(1.0)
        for target in case["targets"]:
            if target["value"] is None:
                # In-process RSS growth of a handful of agents rounds to nothing.
                assert target["metric"] == "rss"
                assert target["met"] is None
            else:
                assert target["met"] is (target["value"] <= target["limit"])
    spawn = next(case for case in report["cases"] if case["scenario"] == "spawn")
    traced = spawn["metrics"]["tracemalloc"]["variants"]
    # An agent is never free: the traced growth per agent is real on both sides.
    assert traced["trio_agents"]["median"] > 1000
    assert traced["raw"]["median"] > 1000


def test_report_is_json_and_renders(report: Report, tmp_path: Path) -> None:
    text = render(report)
    for case in report["cases"]:
        assert case["case"] in text
    assert "targets:" in text
    path = tmp_path / "run.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    again = read_json(path)
    assert again["software"]["trio"] == report["software"]["trio"]
    compared = compare(again, report)
    assert "+0.0%" in compared


def test_memory_sample_in_a_child_process() -> None:
    cases, _ = plan(Config(profile="smoke", scenarios=("spawn",)))
    scenario, case = cases[0]
    result = run_memory_sample(
        scenario,
        case,
        case.variant("trio_agents"),
        profile="smoke",
        seed=0,
        round_index=0,
        isolate=True,
    )
    assert set(result) == {"rss", "tracemalloc"}
    assert result["tracemalloc"] > 1000


def test_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.json"
    args = ["--smoke", "-s", "8", "-s", "restart", "-r", "1", "-w", "0", "--no-progress"]
    assert main([*args, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "agent-run" in printed
    assert "restart" in printed
    assert "request-reply" not in printed
    assert main(["--show", str(out), "--compare", str(out)]) == 0
    assert "compared with the run of" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--scenario", "no-such-scenario"])
    with pytest.raises(SystemExit):
        main(["--size", "spawn=0"])
