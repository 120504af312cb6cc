"""10. Remote agents on Ray (opt-in: ``-s ray``; needs the ``ray`` extra).

A local Ray cluster is started on loopback the first time a sample needs it and kept for
the rest of the process. Both sides await Ray calls the same way (the ``ObjectRef``'s future
completed into trio, no thread per call).

* ``latency``: one client sends N requests in sequence to one remote agent (an echo agent
  whose model answers at once) through an ordinary handle; raw: N calls of an async Ray
  actor's method that returns its argument. Per request.
* ``throughput``: 16 remote agents on two hosts, 16 clients in parallel; raw: 16 clients
  of two echo actors.
  Per request.
* ``agents per host``: N agents spawned on one host (each built and sent one request, so it
  really exists); the host actor's RSS growth per agent is recorded beside the time. Raw: N
  plain objects made in one actor. Per agent.
"""

from __future__ import annotations

import os
from typing import Any

import trio

from trio_agents import Agent, AgentOrchestrator, ModelRequest

from .._core import BASELINE, FRAMEWORK, Case, Meter, Profile, Scenario, Target, Variant

FACTORY = "benchmarks.scenarios.ray_remote:echo_agent"
CLIENTS = 16


def echo_agent() -> Agent:
    """The remote agent of the benchmark: its model echoes at once (imported on the host)."""
    from trio_agents.testing import FunctionModel

    def answer(request: ModelRequest) -> str:
        return "pong"

    return Agent(FunctionModel(answer), name="echo")


class _Echo:
    """The raw side: a Ray async actor that returns what it is sent."""

    def __init__(self) -> None:
        self.objects: list[object] = []

    async def call(self, payload: Any) -> Any:
        return payload

    async def make(self, n: int) -> int:
        self.objects.extend(object() for _ in range(n))
        return len(self.objects)

    async def rss(self) -> int:
        return _rss()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _ensure_ray() -> Any:
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, path) if p)
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
        )
    return ray


def unavailable() -> str | None:
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (pip install 'trio_agents[ray]')"
    return None


async def framework_latency(meter: Meter, case: Case) -> None:
    _ensure_ray()
    from trio_agents.distributed import open_cluster
    from trio_agents.distributed.ray import RayBackend

    async with RayBackend.open(["h1"]) as backend, open_cluster(backend) as cluster:
        orchestrator = AgentOrchestrator()
        orchestrator.add_agent("echo", cluster.factory("echo", FACTORY))
        async with orchestrator.open() as system:
            handle = await system.spawn("echo")
            await handle.send_message("warm up")
            meter.begin()
            for _ in range(case.size):
                await handle.send_message("ping")
            meter.end(case.size)


async def raw_latency(meter: Meter, case: Case) -> None:
    ray = _ensure_ray()
    from trio_agents.distributed._ray import _wait

    actor = ray.remote(_Echo).remote()
    try:
        await _wait(actor.call.remote("warm up"))
        meter.begin()
        for _ in range(case.size):
            await _wait(actor.call.remote([{"type": "user", "content": "ping"}]))
        meter.end(case.size)
    finally:
        ray.kill(actor)


async def framework_throughput(meter: Meter, case: Case) -> None:
    _ensure_ray()
    from trio_agents.distributed import open_cluster
    from trio_agents.distributed.ray import RayBackend

    per_client = max(1, case.size // CLIENTS)
    async with RayBackend.open(["h1", "h2"]) as backend, open_cluster(backend) as cluster:
        orchestrator = AgentOrchestrator()
        names = [f"echo{i}" for i in range(CLIENTS)]
        for name in names:
            orchestrator.add_agent(name, cluster.factory(name, FACTORY))
        async with orchestrator.open() as system:
            handles = [await system.spawn(name) for name in names]
            for handle in handles:
                await handle.send_message("warm up")

            async def client(handle: Any) -> None:
                for _ in range(per_client):
                    await handle.send_message("ping")

            meter.begin()
            async with trio.open_nursery() as nursery:
                for handle in handles:
                    nursery.start_soon(client, handle)
            meter.end(per_client * CLIENTS)


async def raw_throughput(meter: Meter, case: Case) -> None:
    ray = _ensure_ray()
    from trio_agents.distributed._ray import _wait

    per_client = max(1, case.size // CLIENTS)
    # Two actors, as the framework has two hosts; each serves half of the clients.
    actors = [ray.remote(_Echo).remote() for _ in range(2)]
    try:
        for actor in actors:
            await _wait(actor.call.remote("warm up"))

        async def client(actor: Any) -> None:
            for _ in range(per_client):
                await _wait(actor.call.remote([{"type": "user", "content": "ping"}]))

        meter.begin()
        async with trio.open_nursery() as nursery:
            for i in range(CLIENTS):
                nursery.start_soon(client, actors[i % 2])
        meter.end(per_client * CLIENTS)
    finally:
        for actor in actors:
            ray.kill(actor)


async def framework_agents(meter: Meter, case: Case) -> None:
    _ensure_ray()
    from trio_agents.distributed import open_cluster
    from trio_agents.distributed._ray import _wait
    from trio_agents.distributed.ray import RayBackend

    async with RayBackend.open(["h1"]) as backend, open_cluster(backend) as cluster:
        actor = backend._actors["h1"]
        agents = [cluster.factory(f"a{i}", FACTORY)() for i in range(case.size)]
        await agents[0].run("warm up")  # the host's imports happen outside the region
        rss0 = await _wait(actor.rss.remote())
        meter.begin()
        for agent in agents[1:]:
            await agent.run("hello")
        meter.end(max(1, case.size - 1))
        rss1 = await _wait(actor.rss.remote())
        meter.extra["host_rss_per_agent"] = (rss1 - rss0) / max(1, case.size - 1)
        meter.extra["agents_on_host"] = float(backend.host_load("h1"))


async def raw_agents(meter: Meter, case: Case) -> None:
    ray = _ensure_ray()
    from trio_agents.distributed._ray import _wait

    actor = ray.remote(_Echo).remote()
    try:
        await _wait(actor.make.remote(1))
        meter.begin()
        for _ in range(case.size - 1):
            await _wait(actor.make.remote(1))
        meter.end(max(1, case.size - 1))
    finally:
        ray.kill(actor)


def build(size: int, profile: Profile) -> list[Case]:
    ratio = Target(metric="time", limit=1.5, against=BASELINE, text="<= 1.5x a raw Ray call")
    note = "real processes on loopback; a cluster start is not measured"
    return [
        Case(
            scenario="ray",
            number="10",
            name=f"remote request/reply latency, {size} sequential requests",
            size=size,
            per="request",
            variants=(
                Variant(FRAMEWORK, "trio_agents on Ray", framework_latency),
                Variant(BASELINE, "raw Ray actor call", raw_latency),
            ),
            targets=(ratio,),
            note=note,
        ),
        Case(
            scenario="ray",
            number="10",
            name=f"remote throughput, {CLIENTS} agents on 2 hosts, {size} requests",
            size=size,
            per="request",
            variants=(
                Variant(FRAMEWORK, "trio_agents on Ray", framework_throughput),
                Variant(BASELINE, "raw Ray actor calls", raw_throughput),
            ),
            targets=(ratio,),
            note=note,
        ),
        Case(
            scenario="ray",
            number="10",
            name=f"{size} agents on one host (spawn and first request)",
            size=size,
            per="agent",
            variants=(
                Variant(FRAMEWORK, "trio_agents on Ray", framework_agents),
                Variant(BASELINE, "raw Ray: an object per call", raw_agents),
            ),
            note=note + "; extra host_rss_per_agent: the host actor's RSS growth per agent",
        ),
    ]


SCENARIO = Scenario(
    key="ray",
    number="10",
    title="remote agents on Ray (opt-in): latency, throughput, agents per host",
    sizes={"default": (200, 1_000), "quick": (200,), "smoke": (16,)},
    size_meaning="requests, or agents per host",
    build=build,
    unavailable=unavailable,
)
