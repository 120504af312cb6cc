"""3. Supervision trees: cancel from the root, and a leaf's failure escalating to the root.

Two shapes: a tree of depth 4 (about 10k agents at the default size: branching 10 gives
10 + 100 + 1,000 + 10,000 = 11,110), and a chain (each agent the only child of the previous
one, 300 deep by default). Building is not measured.

* cancel: the time from the root's cancellation (leaving the ``async with`` block) until the
  block has exited, every agent finalized.
* escalate: the time from the moment a leaf's model raises until the failure has left the
  root's ``async with`` block (as :class:`~trio_agents.ChildFailed`); no supervisor policy,
  so every level escalates, and the whole tree is torn down on the way.

trio_agents: registered with ``add_child`` and spawned parents first; each agent is a task
serving its channel and owning a nursery for its children.

raw: the same shape as bare tasks, each owning a channel and a nursery holding its children.
"raw trio" turns the nursery's exception group into one error at each boundary (what a
supervisor does, linear in depth); "raw, nested groups" lets the groups nest, which is
quadratic in depth.
"""

from __future__ import annotations

import gc
from typing import Any

import trio

from trio_agents import (
    Agent,
    AgentOrchestrator,
    AuthenticationError,
    ChildFailed,
    RetryPolicy,
)
from trio_agents.testing import FunctionModel

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant
from ._common import CHANNEL_BUFFER, RawRequest


class Shape:
    """Parents before children: ``parents[i]`` is ``None`` for a top-level node."""

    def __init__(self, kind: str, size: int) -> None:
        self.kind = kind
        self.parents: list[int | None] = []
        if kind == "chain":
            self.depth = size
            self.parents = [None, *range(size - 1)]
            self.branching = 1
        else:
            self.depth = 4
            self.branching = max(2, round(size ** (1 / 4)))
            level: list[int | None] = [None]
            for _ in range(self.depth):
                nxt: list[int | None] = []
                for parent in level:
                    for _ in range(self.branching):
                        nxt.append(len(self.parents))
                        self.parents.append(parent)
                level = nxt
        self.children: list[list[int]] = [[] for _ in self.parents]
        for index, parent in enumerate(self.parents):
            if parent is not None:
                self.children[parent].append(index)
        self.leaves = [i for i, kids in enumerate(self.children) if not kids]

    def __len__(self) -> int:
        return len(self.parents)


class LeafFailure(Exception):
    """The raw variants' leaf failure."""


def _pick_leaf(shape: Shape, meter: Meter) -> int:
    return shape.leaves[meter.rng.randrange(len(shape.leaves))]


# --------------------------------------------------------------------------- trio_agents


async def _framework(meter: Meter, case: Case, *, escalate: bool) -> None:
    shape: Shape = case.params["shape"]
    names = [f"n{i}" for i in range(len(shape))]

    def fail(request: Any) -> str:
        meter.begin(collect=False)
        raise AuthenticationError("the leaf failed")

    model = FunctionModel(fail)

    def factory() -> Agent:
        return Agent(model, name="node", retry=RetryPolicy(max_attempts=1))

    orchestrator = AgentOrchestrator(rng=meter.rng)  # no policy: every failure escalates
    for index, parent in enumerate(shape.parents):
        if parent is None:
            orchestrator.add_agent(names[index], factory)
        else:
            orchestrator.add_child(names[index], names[parent], factory)
    try:
        async with orchestrator.open() as system:
            for name in names:
                await system.spawn(name)
            if escalate:
                leaf = system.handle(names[_pick_leaf(shape, meter)])
                gc.collect()
                leaf.send_message_nowait("fail")
                await trio.sleep_forever()
            meter.begin()
    except ChildFailed:
        if not escalate:
            raise
    meter.end(len(shape))


async def framework_cancel(meter: Meter, case: Case) -> None:
    await _framework(meter, case, escalate=False)


async def framework_escalate(meter: Meter, case: Case) -> None:
    await _framework(meter, case, escalate=True)


# --------------------------------------------------------------------------- raw trio


def _flatten(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first leaf that is not Cancelled (else the first leaf)."""
    stack: list[BaseException] = [group]
    first: BaseException | None = None
    while stack:
        exc = stack.pop()
        if isinstance(exc, BaseExceptionGroup):
            stack.extend(reversed(exc.exceptions))
            continue
        if not isinstance(exc, trio.Cancelled):
            return exc
        if first is None:
            first = exc
    assert first is not None
    return first


async def _serve_until_failure(recv: trio.MemoryReceiveChannel[RawRequest], meter: Meter) -> None:
    while True:
        request = await recv.receive()
        meter.begin(collect=False)
        error = LeafFailure("the leaf failed")
        request.fail(error)
        raise error


async def _node(
    shape: Shape,
    index: int,
    meter: Meter,
    sends: list[Any],
    flat: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    send, recv = trio.open_memory_channel[RawRequest](CHANNEL_BUFFER)
    sends[index] = send
    try:
        async with trio.open_nursery() as nursery:
            for child in shape.children[index]:
                await nursery.start(_node, shape, child, meter, sends, flat)
            task_status.started()
            await _serve_until_failure(recv, meter)
    except BaseExceptionGroup as group:
        if not flat:
            raise
        raise _flatten(group) from None


async def _raw(meter: Meter, case: Case, *, escalate: bool, flat: bool) -> None:
    shape: Shape = case.params["shape"]
    sends: list[Any] = [None] * len(shape)
    try:
        async with trio.open_nursery() as root:
            for index, parent in enumerate(shape.parents):
                if parent is None:
                    await root.start(_node, shape, index, meter, sends, flat)
            if escalate:
                gc.collect()
                sends[_pick_leaf(shape, meter)].send_nowait(RawRequest("fail"))
                await trio.sleep_forever()
            meter.begin()
            root.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if not escalate or not group.subgroup(LeafFailure):
            raise
    meter.end(len(shape))


async def raw_cancel(meter: Meter, case: Case) -> None:
    await _raw(meter, case, escalate=False, flat=True)


async def raw_cancel_nested(meter: Meter, case: Case) -> None:
    await _raw(meter, case, escalate=False, flat=False)


async def raw_escalate(meter: Meter, case: Case) -> None:
    await _raw(meter, case, escalate=True, flat=True)


async def raw_escalate_nested(meter: Meter, case: Case) -> None:
    await _raw(meter, case, escalate=True, flat=False)


# --------------------------------------------------------------------------- cases


def _cases(kind: str, size: int) -> list[Case]:
    shape = Shape(kind, size)
    per = "node" if kind == "tree" else "level"
    if kind == "tree":
        label = f"{len(shape)} agents (depth 4, branching {shape.branching})"
    else:
        label = f"{len(shape)} deep"
    big = len(shape) > 2_000
    cases = []
    for what, fw, flat, nested in (
        ("cancel", framework_cancel, raw_cancel, raw_cancel_nested),
        ("escalate", framework_escalate, raw_escalate, raw_escalate_nested),
    ):
        targets: tuple[Target, ...] = ()
        if what == "cancel":
            targets = (Target(metric="time", limit=2.0, against=BASELINE, text="<= 2x raw"),)
        cases.append(
            Case(
                scenario=kind,
                number="3",
                name=f"{label}: {what}",
                size=size,
                per=per,
                variants=(
                    Variant(FRAMEWORK, "trio_agents", fw),
                    Variant(BASELINE, "raw trio (one error per boundary)", flat),
                    Variant("raw-nested", "raw, nested groups", nested),
                ),
                targets=targets,
                max_repeats=3 if big else None,
                max_warmup=0 if big else None,
                params={"shape": shape},
                note=f"{kind}: times are per {per}: the whole cancellation (or escalation) "
                f"divided by the {'agents' if kind == 'tree' else 'depth'}",
            )
        )
    return cases


def build_tree(size: int, profile: Profile) -> list[Case]:
    return _cases("tree", size)


def build_chain(size: int, profile: Profile) -> list[Case]:
    return _cases("chain", size)


TREE = Scenario(
    key="tree",
    number="3",
    title="supervision tree of depth 4: cancel from the root; a leaf's escalated failure",
    sizes={"default": (10_000,), "quick": (1_000,), "smoke": (16,)},
    size_meaning="agents (approximately: branching = round(size ** 0.25))",
    build=build_tree,
)

CHAIN = Scenario(
    key="chain",
    number="3",
    title="supervision chain: cancel from the root; the deepest agent's escalated failure",
    sizes={"default": (300,), "quick": (100,), "smoke": (5,)},
    size_meaning="depth",
    build=build_chain,
)
