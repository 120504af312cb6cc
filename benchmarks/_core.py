"""The measuring machinery: scenarios, cases, variants, the meter, and the interleaved loop.

Vocabulary:

* A **scenario** (``request-reply``, ``spawn``, ...) builds one or more **cases** for a size.
* A case has **variants**: the framework (``trio_agents``), its raw-trio **baseline** (``raw``)
  and sometimes other raw variants shown for context. Every variant is an ``async def
  fn(meter, case)`` run in a fresh :func:`trio.run`; it sets up, calls :meth:`Meter.begin`,
  does the measured work, calls :meth:`Meter.end` with the number of operations done.
* Samples are taken **interleaved**: round 1 runs every variant once (A B C), round 2 again
  (A B C), ... The ratio of two variants is the median of their per-round ratios, so drift of
  the machine during the run (other processes, thermal state) cancels out.
* Memory is measured in separate samples (tracemalloc slows everything down): by default in a
  fresh child process per sample, so that the RSS growth is real and not memory reused from
  the previous sample.
"""

from __future__ import annotations

import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import trio

FRAMEWORK = "trio_agents"
"""Key of the variant that goes through the library."""
BASELINE = "raw"
"""Key of the raw-trio variant that ratios are computed against."""

Mode = Literal["time", "memory"]
GcMode = Literal["on", "off", "freeze"]
"""The cyclic garbage collector in measured regions: as usual; disabled; or on, with every
object that exists when the region begins frozen (:func:`gc.freeze`), as an application
would do after building a large, long-lived tree."""
Profile = Literal["default", "quick", "smoke"]
PROFILES: tuple[Profile, ...] = ("default", "quick", "smoke")


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc``), or the peak elsewhere."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            resident_pages = int(file.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


class Meter:
    """Handed to every variant: marks the measured region and records what it cost.

    In ``time`` mode, :meth:`begin` collects garbage (unless told not to) and starts the clock;
    :meth:`end` records the elapsed seconds divided by ``ops``. In ``memory`` mode, both collect
    garbage and read the RSS and (when tracing) the traced memory; :meth:`end` records the
    growth in bytes divided by ``ops``.
    """

    def __init__(
        self,
        mode: Mode,
        rng: random.Random,
        *,
        collector: GcMode = "on",
        on_end: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        self.mode = mode
        self.on_end = on_end
        """Called with the results at :meth:`end` (the memory child exits from there)."""
        self.collector = collector
        """What the cyclic garbage collector does inside the measured region."""
        self.rng = rng
        """Seeded per (run seed, case, round): the same in every variant of a round."""
        self.results: dict[str, float] = {}
        self.extra: dict[str, float] = {}
        """Side observations a variant wants recorded with the sample (not compared)."""
        self._t0: float | None = None
        self._rss0 = 0
        self._traced0 = 0
        self._ended = False

    def begin(self, *, collect: bool = True) -> None:
        """Start the measured region (``collect=False``: skip the garbage collection, for a
        region that starts inside a callback where a pause would distort the timing)."""
        if self._t0 is not None:
            raise RuntimeError("Meter.begin() called twice in one sample")
        if self.mode == "memory":
            gc.collect()
            self._rss0 = rss_bytes()
            self._traced0 = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
        elif collect:
            gc.collect()
        if self.collector == "off":
            gc.disable()
        elif self.collector == "freeze":
            gc.freeze()
        self._t0 = time.perf_counter()

    def end(self, ops: int = 1) -> None:
        """End the measured region, which did ``ops`` operations."""
        now = time.perf_counter()
        if self._t0 is None:
            raise RuntimeError("Meter.end() called before Meter.begin()")
        if self._ended:
            raise RuntimeError("Meter.end() called twice in one sample")
        if ops < 1:
            raise ValueError(f"ops must be >= 1, got {ops}")
        self._ended = True
        if self.collector == "off":
            gc.enable()
        elif self.collector == "freeze":
            gc.unfreeze()
        if self.mode == "time":
            self.results["time"] = (now - self._t0) / ops
            return
        gc.collect()
        self.results["rss"] = (rss_bytes() - self._rss0) / ops
        if tracemalloc.is_tracing():
            self.results["tracemalloc"] = (tracemalloc.get_traced_memory()[0] - self._traced0) / ops
        if self.on_end is not None:
            self.on_end(self.results)

    def check(self) -> None:
        if not self._ended:
            raise RuntimeError("the variant returned without calling Meter.begin() and end()")


VariantFn = Callable[[Meter, "Case"], Awaitable[None]]


@attrs.frozen
class Variant:
    """One way of doing a case's work."""

    key: str
    """``trio_agents``, ``raw`` or another raw variant's key."""
    label: str
    """Shown in the table."""
    fn: VariantFn = attrs.field(repr=False, eq=False)
    """``async def fn(meter, case)``."""


@attrs.frozen(kw_only=True)
class Target:
    """A goal for the framework variant, reported (never asserted)."""

    metric: str
    """``time``, ``tracemalloc`` or ``rss``."""
    limit: float
    """The largest acceptable value of the ratio."""
    against: str
    """A variant key (paired ratio of medians per round), or ``"ideal"``."""
    text: str
    """How the table states it, e.g. ``"<= 1.5x raw"``."""
    ideal: float | None = None
    """With ``against="ideal"``: the ideal value in the metric's unit (seconds or bytes)."""
    subject: str = FRAMEWORK
    """The variant the target is about."""


@attrs.frozen(kw_only=True)
class Case:
    """One measured situation: a scenario at one size, with its variants and targets."""

    scenario: str
    """The scenario's key."""
    number: str
    """The scenario's number in the issue (``"1"`` .. ``"8"``)."""
    name: str
    """Distinguishes the cases of one scenario and size, e.g. ``"100 clients"``."""
    size: int
    """The size the case was built for."""
    variants: tuple[Variant, ...]
    """The framework first, then the baseline, then other raw variants."""
    per: str
    """What one operation is, for the unit column: ``"request"``, ``"agent"``, ``"run"``."""
    time_unit: Literal["us", "ms", "s"] = "us"
    """How times are shown."""
    targets: tuple[Target, ...] = ()
    """Reported goals."""
    memory: bool = False
    """Whether memory samples are taken too."""
    traced_memory: bool = True
    """Whether memory samples include a tracemalloc run (slow and memory-hungry at 100k
    agents, and the same per agent at every size)."""
    max_repeats: int | None = None
    """Cap on the repeats (for the largest sizes)."""
    max_warmup: int | None = None
    """Cap on the warm-up rounds."""
    params: Mapping[str, Any] = attrs.field(factory=dict)
    """Extra knobs for the variants (requests per sample, latency, ...)."""
    note: str = ""
    """One line printed under the table."""

    @property
    def key(self) -> str:
        """Unique within a run: ``"spawn/10000 agents"``."""
        return f"{self.scenario}/{self.name}"

    def variant(self, key: str) -> Variant:
        for variant in self.variants:
            if variant.key == key:
                return variant
        raise KeyError(key)


CaseBuilder = Callable[[int, Profile], Sequence[Case]]


@attrs.frozen(kw_only=True)
class Scenario:
    """A named family of cases."""

    key: str
    """CLI name: ``request-reply``, ``spawn``, ``tree``, ..."""
    number: str
    """The number in the issue."""
    title: str
    """One line for ``--list``."""
    sizes: Mapping[Profile, tuple[int, ...]]
    """Sizes per profile."""
    size_meaning: str
    """What the size counts, for ``--list``."""
    build: CaseBuilder = attrs.field(repr=False, eq=False)
    """``build(size, profile)`` -> the cases."""
    unavailable: Callable[[], str | None] = attrs.field(default=lambda: None, repr=False, eq=False)
    """Returns why the scenario cannot run (a module missing), or ``None``."""


# --------------------------------------------------------------------------- samples


def _sample_rng(seed: int, case: Case, round_index: int) -> random.Random:
    return random.Random(f"{seed}:{case.key}:{round_index}")


def _seed_trio(rng: random.Random) -> None:
    # trio shuffles runnable tasks with a module-level Random (trio._core._run._r); seeding
    # it makes the scheduling order of a sample reproducible. Private, hence guarded.
    core = getattr(getattr(trio, "_core", None), "_run", None)
    scheduler_rng = getattr(core, "_r", None)
    if isinstance(scheduler_rng, random.Random):
        scheduler_rng.seed(rng.getrandbits(64))


def run_sample(
    case: Case,
    variant: Variant,
    *,
    mode: Mode,
    seed: int,
    round_index: int,
    collector: GcMode = "on",
    on_end: Callable[[dict[str, float]], None] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Run one variant once in a fresh :func:`trio.run`; returns (metrics, extra)."""
    rng = _sample_rng(seed, case, round_index)
    _seed_trio(rng)
    meter = Meter(mode, rng, collector=collector, on_end=on_end)
    try:
        trio.run(variant.fn, meter, case)
    finally:
        gc.enable()
        gc.unfreeze()
    meter.check()
    return meter.results, meter.extra


def run_memory_sample(
    scenario: Scenario,
    case: Case,
    variant: Variant,
    *,
    profile: Profile,
    seed: int,
    round_index: int,
    isolate: bool,
) -> dict[str, float]:
    """One memory sample: RSS growth without tracing, then traced growth, per operation.

    ``isolate=True`` runs it in a fresh child process (``python -m benchmarks._memory``), the
    only way the RSS growth is not hidden by memory freed by earlier samples.
    """
    if not isolate:
        return memory_sample_here(case, variant, seed=seed, round_index=round_index)
    request = {
        "scenario": scenario.key,
        "size": case.size,
        "profile": profile,
        "case": case.name,
        "variant": variant.key,
        "seed": seed,
        "round": round_index,
    }
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"memory sample of {case.key} [{variant.key}] failed "
            f"(exit {completed.returncode}):\n{completed.stderr}"
        )
    result: dict[str, float] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def memory_sample_here(
    case: Case,
    variant: Variant,
    *,
    seed: int,
    round_index: int,
    on_end: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """A memory sample in this process: RSS growth first, then (unless the case says
    ``traced_memory=False``) a run under tracemalloc.

    ``on_end`` is called with the results as soon as the last measured region ends, before
    the agents are torn down (slow at 100k, and slower still under tracemalloc).
    """
    results: dict[str, float] = {}

    def rss_end(measured: dict[str, float]) -> None:
        results["rss"] = measured["rss"]
        if not case.traced_memory and on_end is not None:
            on_end(results)

    def traced_end(measured: dict[str, float]) -> None:
        results["tracemalloc"] = measured["tracemalloc"]
        if on_end is not None:
            on_end(results)

    run_sample(case, variant, mode="memory", seed=seed, round_index=round_index, on_end=rss_end)
    if not case.traced_memory:
        return results
    tracemalloc.start()
    try:
        run_sample(
            case, variant, mode="memory", seed=seed, round_index=round_index, on_end=traced_end
        )
    finally:
        tracemalloc.stop()
    return results


# --------------------------------------------------------------------------- statistics


@attrs.frozen(kw_only=True)
class Stats:
    """Median, min and max of some samples."""

    n: int
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        return cls(
            n=len(samples),
            median=statistics.median(samples),
            min=min(samples),
            max=max(samples),
        )


def paired_ratio(subject: Sequence[float], against: Sequence[float]) -> float | None:
    """Median of the per-round ratios ``subject[i] / against[i]`` (rounds both have)."""
    ratios = [a / b for a, b in zip(subject, against, strict=False) if b > 0]
    if not ratios:
        return None
    return statistics.median(ratios)
