"""The Ray backend: each host is a Ray actor that runs a trio loop and many agents.

The actor is a Ray *async* actor: Ray gives it an asyncio event loop, and trio runs on that
loop in guest mode (:func:`trio.lowlevel.start_guest_run`), so the agents on a host are
ordinary trio tasks under one nursery. This is the only module of the library that touches
asyncio, and only inside the actor's process. Ray's own actor restarts are off
(``max_restarts=0``): the trio_agents supervisor is the only place that decides what happens
after a failure.

On the caller's side a Ray call is awaited without a thread: the ``ObjectRef``'s
``concurrent.futures.Future`` wakes the trio task through the trio token.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import trio

from .._agent import Agent
from .._cancel import reraise_cancelled
from .._errors import InvalidArgumentError
from .._messages import ErrorInfo
from .._orchestrator import _raise_flat
from .._serde import dump, load
from ._core import HostLost, RemoteAgentError
from ._host import ModelFactories, build_agent, error_data, serve_request

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "trio_agents.distributed.ray needs Ray: pip install 'trio_agents[ray]'"
    ) from exc


# --------------------------------------------------------------------------- the host actor


class _TrioHost:
    """A host: agents as tasks of a trio loop running in guest mode on the actor's loop."""

    def __init__(self, name: str, models: ModelFactories) -> None:
        self.name = name
        self.models = dict(models)
        self.agents: dict[str, Agent] = {}
        self.runs: dict[str, tuple[trio.CancelScope, trio.Event]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Future[None] | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._run_started = trio.Event()

    async def _start(self) -> None:
        if self._ready is None:
            self._loop = asyncio.get_running_loop()
            self._ready = self._loop.create_future()
            trio.lowlevel.start_guest_run(
                self._main,
                run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
                done_callback=lambda outcome: None,
                host_uses_signal_set_wakeup_fd=True,
            )
        await self._ready

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            assert self._ready is not None
            self._ready.set_result(None)
            await trio.sleep_forever()

    async def _in_trio(self, fn: Callable[..., Any], *args: Any) -> Any:
        await self._start()
        assert self._loop is not None
        assert self._token is not None
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, value: Any) -> None:
            if not future.done():
                (future.set_result if ok else future.set_exception)(value)

        async def runner() -> None:
            try:
                value = await fn(*args)
            except Exception as exc:
                loop.call_soon_threadsafe(settle, False, exc)
            else:
                loop.call_soon_threadsafe(settle, True, value)

        assert self._nursery is not None
        self._token.run_sync_soon(self._nursery.start_soon, runner)
        return await future

    # The actor's methods (asyncio side).

    async def pid(self) -> int:
        await self._start()
        return os.getpid()

    async def load(self) -> int:
        return len(self.agents)

    async def spawn(self, agent_id: str, target: Any) -> Any:
        return await self._in_trio(self._spawn, agent_id, target)

    async def request(self, agent_id: str, payload: Any) -> Any:
        return await self._in_trio(self._request, agent_id, payload)

    async def cancel(self, agent_id: str) -> None:
        await self._in_trio(self._cancel, agent_id)

    async def kill(self, agent_id: str) -> bool:
        return bool(await self._in_trio(self._kill, agent_id))

    async def rss(self) -> int:
        return _rss()

    async def running(self) -> list[str]:
        return sorted(self.runs)

    async def wait_running(self, count: int) -> None:
        await self._in_trio(self._wait_running, count)

    async def wait_forever(self) -> None:
        await asyncio.Event().wait()

    # The trio side.

    async def _spawn(self, agent_id: str, target: Any) -> Any:
        await trio.lowlevel.checkpoint()
        if agent_id in self.agents:
            return {"result": False}  # idempotent: a spawn whose caller was cancelled
        try:
            self.agents[agent_id] = build_agent(target, self.models)
        except Exception as exc:
            return {"error": error_data(exc)}
        return {"result": True}

    async def _request(self, agent_id: str, payload: Any) -> Any:
        agent = self.agents.get(agent_id)
        if agent is None:
            info = ErrorInfo(type="InvalidArgumentError", message=f"no agent {agent_id!r}")
            return {"error": dump(info)}
        scope, ended = trio.CancelScope(), trio.Event()
        self.runs[agent_id] = (scope, ended)
        self._run_started.set()
        self._run_started = trio.Event()
        try:
            with scope:
                return await serve_request(agent, payload)
            info = ErrorInfo(type="AgentCancelled", message="run cancelled")
            return {"error": dump(info)}
        finally:
            if self.runs.get(agent_id, (None,))[0] is scope:
                del self.runs[agent_id]
            ended.set()

    async def _wait_running(self, count: int) -> None:
        while len(self.runs) < count:
            await self._run_started.wait()

    async def _cancel(self, agent_id: str) -> None:
        run = self.runs.get(agent_id)
        if run is None:
            await trio.lowlevel.checkpoint()
            return
        scope, ended = run
        scope.cancel(reason="cancelled by its caller")
        await ended.wait()

    async def _kill(self, agent_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        run = self.runs.pop(agent_id, None)
        if run is not None:
            run[0].cancel(reason="killed")
        return self.agents.pop(agent_id, None) is not None


def _rss() -> int:
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


_HostActor = ray.remote(_TrioHost)


# --------------------------------------------------------------------------- the caller's side


async def _wait(ref: Any) -> Any:
    """Await a Ray ``ObjectRef`` in trio, without a thread."""
    future = ref.future()
    if not future.done():
        token = trio.lowlevel.current_trio_token()
        event = trio.Event()

        def wake(_: Any) -> None:
            with suppress(trio.RunFinishedError):
                token.run_sync_soon(event.set)

        future.add_done_callback(wake)
        await event.wait()
    else:
        await trio.lowlevel.checkpoint()
    return future.result()


class RayBackend:
    """Hosts as Ray actors (one trio loop and many agents each); made by :meth:`open`.

    Call ``ray.init(...)`` first (or run on a Ray cluster). :meth:`host_pid` says which
    process runs a host.
    """

    def __init__(self, models: ModelFactories) -> None:
        self._models = models
        self._actors: dict[str, Any] = {}
        self._pids: dict[str, int] = {}
        self._lost: dict[str, trio.Event] = {}
        self._load: dict[str, int] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        hosts: Sequence[str] | Mapping[str, Mapping[str, Any]],
        *,
        models: ModelFactories | None = None,
    ) -> AsyncIterator[RayBackend]:
        """Start one actor per host and yield once they all run; kill them at the end.

        :param hosts: host names, or host names mapped to Ray actor options for that host
            (``num_cpus``, ``resources``, ``scheduling_strategy`` for node affinity or
            ``"SPREAD"``, ...). ``max_restarts`` is always 0.
        :param models: model ids an :class:`~trio_agents.AgentSpec` may name, mapped to
            zero-argument factories (they travel to every host by pickle).
        """
        if not ray.is_initialized():
            raise InvalidArgumentError("Ray is not initialised: call ray.init(...) first")
        options = (
            {name: dict(opts) for name, opts in hosts.items()}
            if isinstance(hosts, Mapping)
            else {name: {} for name in hosts}
            if not isinstance(hosts, str)
            else {}
        )
        if not options:
            raise InvalidArgumentError(
                f"hosts must be a non-empty sequence of names or a mapping, got {hosts!r}"
            )
        backend = cls(dict(models or {}))
        try:
            async with trio.open_nursery() as nursery:
                try:
                    for name, opts in options.items():
                        opts.update(max_restarts=0, max_task_retries=0, max_concurrency=10_000)
                        actor = _HostActor.options(**opts).remote(name, backend._models)
                        backend._actors[name] = actor
                        backend._lost[name] = trio.Event()
                        backend._load[name] = 0
                    for name, actor in backend._actors.items():
                        backend._pids[name] = await _wait(actor.pid.remote())
                        nursery.start_soon(backend._watch, name)
                    yield backend
                finally:
                    for actor in backend._actors.values():
                        ray.kill(actor, no_restart=True)
                    nursery.cancel_scope.cancel(reason="Ray backend closed")
        except BaseExceptionGroup as group:
            reraise_cancelled(group)
            _raise_flat(group)

    async def _watch(self, host: str) -> None:
        try:
            await _wait(self._actors[host].wait_forever.remote())
        except RayActorError:
            self._mark_lost(host)

    def _mark_lost(self, host: str) -> None:
        self._lost[host].set()

    def host_pid(self, host: str) -> int:
        """The process id of ``host``'s actor."""
        self._check(host)
        return self._pids[host]

    def _check(self, host: str) -> Any:
        if host not in self._actors:
            raise InvalidArgumentError(f"unknown host {host!r} (hosts: {sorted(self._actors)})")
        if self._lost[host].is_set():
            raise HostLost(host)
        return self._actors[host]

    async def _call(self, host: str, method: str, *args: Any) -> Any:
        actor = self._check(host)
        try:
            return await _wait(getattr(actor, method).remote(*args))
        except RayActorError:
            self._mark_lost(host)  # before anyone places a restart
            raise HostLost(host, f"host {host!r} was lost (its Ray actor died)") from None

    def hosts(self) -> Sequence[str]:
        """Every host this backend opened, lost or alive, in the order given."""
        return list(self._actors)

    async def running(self, host: str) -> list[str]:
        """The ids of the agents with a run in progress on ``host``, sorted (asked of the
        host itself; :class:`HostLost` if it is gone)."""
        return list(await self._call(host, "running"))

    async def wait_running(self, host: str, count: int) -> None:
        """Return once at least ``count`` runs are in progress on ``host`` (for tests and
        demos that must act while remote runs are under way)."""
        await self._call(host, "wait_running", count)

    def live_hosts(self) -> Sequence[str]:
        """The hosts whose actors are alive, as far as this process knows."""
        return [name for name, lost in self._lost.items() if not lost.is_set()]

    def host_load(self, host: str) -> int:
        """Agents this backend spawned on ``host`` and has not killed."""
        self._check(host)
        return self._load[host]

    async def spawn(self, host: str, agent_id: str, target: Any) -> None:
        """Build the agent in ``host``'s actor; its failure comes back as
        :class:`RemoteAgentError`."""
        reply = await self._call(host, "spawn", agent_id, target)
        if "error" in reply:
            info = load(reply["error"], ErrorInfo)
            raise RemoteAgentError.from_info(info, host=host, agent_id=agent_id)
        if reply["result"]:  # built now, not before
            self._load[host] += 1

    async def request(self, host: str, agent_id: str, payload: Any) -> Any:
        """Run one request on ``host``; :class:`HostLost` if its actor dies meanwhile."""
        return await self._call(host, "request", agent_id, payload)

    async def cancel(self, host: str, agent_id: str) -> None:
        """Cancel the agent's run in its actor's trio loop and wait for it to end."""
        await self._call(host, "cancel", agent_id)

    async def kill(self, host: str, agent_id: str) -> None:
        """Remove the agent from its host."""
        if await self._call(host, "kill", agent_id):
            self._load[host] -= 1

    async def wait_host_lost(self, host: str) -> None:
        """Return once ``host``'s actor has died."""
        self._check(host)
        await self._lost[host].wait()
