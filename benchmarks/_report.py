"""Turn a report (the JSON-ready dict from :func:`benchmarks.run`) into text, and compare two."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ._core import BASELINE, FRAMEWORK
from ._runner import FORMAT

_TIME_SCALE = {"us": 1e6, "ms": 1e3, "s": 1.0}
_TIME_LABEL = {"us": "µs", "ms": "ms", "s": "s"}
_METRIC_ORDER = ("time", "tracemalloc", "rss")


def write_json(report: dict[str, Any], path: str | Path) -> Path:
    """Write a report as JSON (every sample included); returns the path."""
    target = Path(path)
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return target


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a report written by :func:`write_json`."""
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a benchmark report of format {FORMAT!r}")
    return data


def _unit(case: dict[str, Any], metric: str) -> tuple[float, str]:
    per = case["per"]
    if metric == "time":
        unit = case["time_unit"]
        return _TIME_SCALE[unit], f"{_TIME_LABEL[unit]}/{per}"
    label = "KiB/" + per + (" (tracemalloc)" if metric == "tracemalloc" else " (RSS)")
    return 1 / 1024, label


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.{digits}f}"


def _table(rows: Sequence[Sequence[str]], right: Iterable[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    align_right = set(right)
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in align_right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _target_text(target: dict[str, Any]) -> str:
    value = target["value"]
    if value is None:
        return f"{target['text']}: not measured"
    verdict = "met" if target["met"] else "MISSED"
    return f"{target['text']}: {verdict} ({value:.2f})"


def render(report: dict[str, Any]) -> str:
    """The results table, the targets, and notes on the machine and the noise."""
    machine = report["machine"]
    software = report["software"]
    config = report["config"]
    load = report.get("load_average") or {}
    lines = [
        f"trio_agents benchmarks, {report['created']} ({report['duration_s']:.0f} s)",
        f"machine: {machine['cpu']}, {machine['cpu_count']} CPUs, "
        f"{(machine['memory_bytes'] or 0) / 2**30:.0f} GiB, {machine['platform']}",
        f"software: Python {software['python']} ({software['python_implementation']}), "
        f"trio {software['trio']}, trio_agents {software['trio_agents']} "
        f"(commit {software['git_commit']})",
        f"profile {config['profile']}, {config['repeats']} rounds after {config['warmup']} "
        f"warm-up (A B A B ...), seed {config['seed']}, "
        f"gc {config.get('gc', 'on')}, load average "
        f"{_load(load.get('start'))} -> {_load(load.get('end'))}",
        "",
    ]
    header = ["#", "case", "variant", "n", "median", "min", "max", "unit", "x raw", "target"]
    rows: list[list[str]] = [header]
    for case in report["cases"]:
        title = f"{case['scenario']} {case['case']}"
        labels = {v["key"]: v["label"] for v in case["variants"]}
        first = True
        for metric in _METRIC_ORDER:
            if metric not in case["metrics"]:
                continue
            scale, unit = _unit(case, metric)
            for key, values in case["metrics"][metric]["variants"].items():
                targets = [
                    _target_text(t)
                    for t in case["targets"]
                    if t["metric"] == metric and t["subject"] == key
                ]
                ratio = values["ratio_to_raw"]
                rows.append(
                    [
                        case["number"] if first else "",
                        title if first else "",
                        labels.get(key, key),
                        str(values["n"]),
                        _num(values["median"] * scale),
                        _num(values["min"] * scale),
                        _num(values["max"] * scale),
                        unit,
                        _num(ratio) if ratio is not None else "-",
                        "; ".join(targets),
                    ]
                )
                first = False
    lines.extend(_table(rows, right=(3, 4, 5, 6, 8)))
    lines.append("")
    lines.extend(_summary(report))
    return "\n".join(lines)


def _load(value: list[float] | None) -> str:
    return "?" if not value else "/".join(f"{x:.2f}" for x in value)


def _summary(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    targets = [(c, t) for c in report["cases"] for t in c["targets"]]
    met = [t for _, t in targets if t["met"]]
    missed = [(c, t) for c, t in targets if t["met"] is False]
    if targets:
        lines.append(f"targets: {len(met)} of {len(targets)} met")
        for case, target in missed:
            lines.append(
                f"  missed: {case['number']} {case['scenario']} {case['case']}: "
                f"{_target_text(target)}"
            )
    spreads = []
    for case in report["cases"]:
        time_metric = case["metrics"].get("time")
        if not time_metric:
            continue
        for values in time_metric["variants"].values():
            if values["n"] > 1 and values["median"] > 0:
                spreads.append((values["max"] - values["min"]) / values["median"])
    if spreads:
        lines.append(
            f"noise: (max - min) / median of the time samples is {statistics.median(spreads):.0%} "
            f"at the median, {max(spreads):.0%} at worst; ratios are medians of per-round ratios"
        )
    notes = []
    for case in report["cases"]:
        if case["note"] and case["note"] not in notes:
            notes.append(case["note"])
    for note in notes:
        lines.append(f"note: {note}")
    for skipped in report.get("skipped", []):
        lines.append(f"skipped: {skipped['number']} {skipped['scenario']}: {skipped['reason']}")
    return lines


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Medians of ``new`` beside those of ``old``, for every case, variant and metric in both."""
    index: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for case in old["cases"]:
        for metric, data in case["metrics"].items():
            for key, values in data["variants"].items():
                index[(case["scenario"], case["case"], metric, key)] = values
    rows = [
        ["#", "case", "variant", "metric", "unit", "old", "new", "change", "old x raw", "x raw"]
    ]
    for case in new["cases"]:
        labels = {v["key"]: v["label"] for v in case["variants"]}
        for metric in _METRIC_ORDER:
            if metric not in case["metrics"]:
                continue
            scale, unit = _unit(case, metric)
            for key, values in case["metrics"][metric]["variants"].items():
                before = index.get((case["scenario"], case["case"], metric, key))
                if before is None:
                    continue
                change = (
                    f"{values['median'] / before['median'] - 1:+.1%}"
                    if before["median"] > 0
                    else "-"
                )
                rows.append(
                    [
                        case["number"],
                        f"{case['scenario']} {case['case']}",
                        labels.get(key, key),
                        metric,
                        unit,
                        _num(before["median"] * scale),
                        _num(values["median"] * scale),
                        change,
                        _num(before.get("ratio_to_raw")),
                        _num(values.get("ratio_to_raw")),
                    ]
                )
    head = (
        f"compared with the run of {old['created']} "
        f"(commit {old['software'].get('git_commit')}, {old['machine']['cpu']}):"
    )
    if len(rows) == 1:
        return head + "\n  no case in common"
    return "\n".join([head, *_table(rows, right=(5, 6, 7, 8, 9))])


__all__ = ["BASELINE", "FRAMEWORK", "compare", "read_json", "render", "write_json"]
