"""Run the selected cases interleaved and collect a JSON-ready report."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from ._core import (
    BASELINE,
    FRAMEWORK,
    Case,
    GcMode,
    Profile,
    Scenario,
    Stats,
    Target,
    Variant,
    paired_ratio,
    run_memory_sample,
    run_sample,
)
from .scenarios import OPT_IN, SCENARIOS

FORMAT = "trio_agents-benchmarks/1"
"""The ``format`` field of the JSON report."""


@attrs.frozen(kw_only=True)
class Config:
    """What to run and how often."""

    scenarios: tuple[str, ...] = ()
    """Scenario keys or numbers; empty runs them all."""
    sizes: Mapping[str, tuple[int, ...]] = attrs.field(factory=dict)
    """Sizes per scenario key, replacing the profile's."""
    profile: Profile = "default"
    """``default``, ``quick`` (small sizes, fewer operations) or ``smoke`` (the smallest)."""
    repeats: int = 5
    """Measured rounds per case (each round runs every variant once)."""
    warmup: int = 1
    """Rounds run first and discarded."""
    seed: int = 0
    """Seeds every sample's random choices and trio's scheduler."""
    isolate_memory: bool = True
    """Take memory samples in a fresh child process (real RSS growth)."""
    memory_repeats: int = 1
    """Memory samples per variant of a case with memory metrics."""
    gc: GcMode = "on"
    """The garbage collector inside measured regions: ``on``, ``off``, or ``freeze`` (the
    objects that exist when a region begins are frozen first)."""

    def __attrs_post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        if self.memory_repeats < 0:
            raise ValueError(f"memory_repeats must be >= 0, got {self.memory_repeats}")


def select(config: Config) -> list[Scenario]:
    """The scenarios a config names, in the issue's order."""
    if not config.scenarios:
        return list(SCENARIOS)
    chosen: list[Scenario] = []
    every = SCENARIOS + OPT_IN  # the opt-in ones only when named
    for wanted in config.scenarios:
        matches = [s for s in every if wanted in (s.key, s.number)]
        if not matches:
            known = ", ".join(f"{s.number}/{s.key}" for s in every)
            raise ValueError(f"unknown scenario {wanted!r}; choose from: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen, key=every.index)


def sizes_for(scenario: Scenario, config: Config) -> tuple[int, ...]:
    if scenario.key in config.sizes:
        return config.sizes[scenario.key]
    return scenario.sizes[config.profile]


def plan(config: Config) -> tuple[list[tuple[Scenario, Case]], list[dict[str, str]]]:
    """The cases to run, and the scenarios skipped (with why)."""
    cases: list[tuple[Scenario, Case]] = []
    skipped: list[dict[str, str]] = []
    for scenario in select(config):
        reason = scenario.unavailable()
        if reason is not None:
            skipped.append({"scenario": scenario.key, "number": scenario.number, "reason": reason})
            continue
        for size in sizes_for(scenario, config):
            for case in scenario.build(size, config.profile):
                keys = [v.key for v in case.variants]
                if keys[:2] != [FRAMEWORK, BASELINE] or len(set(keys)) != len(keys):
                    raise ValueError(f"{case.key}: variants must start with framework, raw")
                cases.append((scenario, case))
    return cases, skipped


def _rounds(case: Case, config: Config) -> tuple[int, int]:
    repeats = config.repeats if case.max_repeats is None else min(config.repeats, case.max_repeats)
    warmup = config.warmup if case.max_warmup is None else min(config.warmup, case.max_warmup)
    return warmup, repeats


class Progress:
    """One status line on a terminal (rewritten in place), else one line per case."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.started = time.monotonic()
        self._width = 0

    def case(self, index: int, count: int, case: Case) -> None:
        if self.stream is not None and not self.tty:
            print(f"[{index}/{count}] {case.number} {case.key}", file=self.stream, flush=True)

    def sample(self, case: Case, variant: Variant, what: str) -> None:
        if not self.tty or self.stream is None:
            return
        elapsed = time.monotonic() - self.started
        eta = ""
        if self.done:
            remaining = elapsed / self.done * (self.total - self.done)
            eta = f", ~{remaining:.0f} s left"
        line = (
            f"[{self.done}/{self.total} samples, {elapsed:.0f} s{eta}] "
            f"{case.number} {case.key} · {variant.label} · {what}"
        )
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def tick(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.tty and self.stream is not None:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def count_samples(cases: Sequence[tuple[Scenario, Case]], config: Config) -> int:
    total = 0
    for _, case in cases:
        warmup, repeats = _rounds(case, config)
        total += (warmup + repeats) * len(case.variants)
        if case.memory:
            total += config.memory_repeats * len(case.variants)
    return total


def run(config: Config, *, progress: TextIO | None = None) -> dict[str, Any]:
    """Run the benchmarks; returns the report (see :func:`benchmarks.write_json`).

    ``progress``: where to show progress (``sys.stderr``), or ``None`` for silence.
    """
    cases, skipped = plan(config)
    meter = Progress(count_samples(cases, config), progress)
    load_start = _loadavg()
    started = time.perf_counter()
    results = []
    for index, (scenario, case) in enumerate(cases, 1):
        meter.case(index, len(cases), case)
        results.append(_run_case(scenario, case, config, meter))
    meter.finish()
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 3),
        "machine": machine_info(),
        "software": software_info(),
        "load_average": {"start": load_start, "end": _loadavg()},
        "config": {
            "scenarios": list(config.scenarios),
            "sizes": {k: list(v) for k, v in config.sizes.items()},
            "profile": config.profile,
            "repeats": config.repeats,
            "warmup": config.warmup,
            "seed": config.seed,
            "isolate_memory": config.isolate_memory,
            "memory_repeats": config.memory_repeats,
            "gc": config.gc,
        },
        "skipped": skipped,
        "cases": results,
    }


def _run_case(scenario: Scenario, case: Case, config: Config, progress: Progress) -> dict[str, Any]:
    started = time.perf_counter()
    warmup, repeats = _rounds(case, config)
    samples: dict[str, dict[str, list[float]]] = {"time": {v.key: [] for v in case.variants}}
    extras: dict[str, list[dict[str, float]]] = {v.key: [] for v in case.variants}
    for round_index in range(warmup + repeats):
        measured = round_index >= warmup
        what = f"round {round_index - warmup + 1}/{repeats}" if measured else "warm-up"
        for variant in case.variants:  # interleaved: A B A B ...
            progress.sample(case, variant, what)
            metrics, extra = run_sample(
                case,
                variant,
                mode="time",
                seed=config.seed,
                round_index=round_index,
                collector=config.gc,
            )
            progress.tick()
            if measured:
                samples["time"][variant.key].append(metrics["time"])
                if extra:
                    extras[variant.key].append(extra)
    if case.memory:
        samples["tracemalloc"] = {v.key: [] for v in case.variants}
        samples["rss"] = {v.key: [] for v in case.variants}
        for round_index in range(config.memory_repeats):
            for variant in case.variants:
                progress.sample(case, variant, f"memory {round_index + 1}/{config.memory_repeats}")
                metrics = run_memory_sample(
                    scenario,
                    case,
                    variant,
                    profile=config.profile,
                    seed=config.seed,
                    round_index=round_index,
                    isolate=config.isolate_memory,
                )
                progress.tick()
                for name, value in metrics.items():
                    samples[name][variant.key].append(value)
    report = case_report(case, samples, extras)
    report["duration_s"] = round(time.perf_counter() - started, 3)
    return report


def case_report(
    case: Case,
    samples: Mapping[str, Mapping[str, list[float]]],
    extras: Mapping[str, list[dict[str, float]]],
) -> dict[str, Any]:
    """The JSON form of one case: every sample, the statistics, the ratios, the targets."""
    metrics: dict[str, Any] = {}
    for name, per_variant in samples.items():
        if not any(per_variant.values()):
            continue
        variants: dict[str, Any] = {}
        for key, values in per_variant.items():
            if not values:
                continue
            stats = Stats.of(values)
            ratio = (
                paired_ratio(values, per_variant[BASELINE]) if per_variant.get(BASELINE) else None
            )
            variants[key] = {
                "samples": values,
                "n": stats.n,
                "median": stats.median,
                "min": stats.min,
                "max": stats.max,
                "ratio_to_raw": ratio,
            }
        metrics[name] = {"unit": "s" if name == "time" else "B", "variants": variants}
    targets = []
    for target in case.targets:
        if not any(samples.get(target.metric, {}).values()):
            continue  # not measured in this run (tracemalloc at 100k)
        value = _target_value(target, samples)
        targets.append(
            {
                "text": target.text,
                "metric": target.metric,
                "subject": target.subject,
                "against": target.against,
                "limit": target.limit,
                "value": value,
                "met": None if value is None else value <= target.limit,
            }
        )
    return {
        "scenario": case.scenario,
        "number": case.number,
        "case": case.name,
        "size": case.size,
        "per": case.per,
        "time_unit": case.time_unit,
        "variants": [{"key": v.key, "label": v.label} for v in case.variants],
        "params": {k: v for k, v in case.params.items() if isinstance(v, int | float | str)},
        "metrics": metrics,
        "targets": targets,
        "extra": {k: v for k, v in extras.items() if v},
        "note": case.note,
    }


def _target_value(target: Target, samples: Mapping[str, Mapping[str, list[float]]]) -> float | None:
    per_variant = samples.get(target.metric)
    if not per_variant or not per_variant.get(target.subject):
        return None
    subject = per_variant[target.subject]
    if target.against == "ideal":
        assert target.ideal is not None
        return statistics.median(subject) / target.ideal
    against = per_variant.get(target.against)
    if not against:
        return None
    return paired_ratio(subject, against)


# --------------------------------------------------------------------------- environment


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or "unknown"


def _memory_total() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            for line in file:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):  # pragma: no cover
        pass
    return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_total(),
        "hostname": platform.node(),
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def software_info() -> dict[str, Any]:
    """Interpreter and library versions."""
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_build": " ".join(platform.python_build()),
        "trio": trio.__version__,
        "trio_agents": _version("trio-agents"),
        "attrs": _version("attrs"),
        "cattrs": _version("cattrs"),
        "git_commit": _git_commit(),
    }
