"""An in-process :class:`~trio_agents.distributed.Backend`: hosts are task groups in this
trio loop. Everything still travels as JSON data, so it checks the same contract as a real
cluster, deterministically and on trio's virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._agent import Agent
from .._cancel import reraise_cancelled
from .._errors import InvalidArgumentError
from .._messages import ErrorInfo
from .._orchestrator import _raise_flat
from .._serde import load
from ._core import HostLost, RemoteAgentError
from ._host import ModelFactories, build_agent, error_data, serve_request


class _Run:
    __slots__ = ("done", "reply", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.reply: Any = None


class _FakeHost:
    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True
        self.lost = trio.Event()
        self.scope = trio.CancelScope()
        self.nursery: trio.Nursery | None = None
        self.agents: dict[str, Agent] = {}
        self.runs: dict[str, _Run] = {}

    async def serve(self, task_status: trio.TaskStatus[None]) -> None:
        with self.scope:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                task_status.started()
                await trio.sleep_forever()


class FakeBackend:
    """In-process hosts for tests and examples; made by :meth:`open`.

    :meth:`kill_host` simulates a host process dying: its agents are gone and every pending
    call on it raises :class:`HostLost`. :attr:`cancels` and :attr:`kills` record what reached
    the hosts, for tests to check.
    """

    def __init__(self, nursery: trio.Nursery, models: ModelFactories) -> None:
        self._nursery = nursery
        self._models = models
        self._hosts: dict[str, _FakeHost] = {}
        self.cancels: list[str] = []
        """Agent ids whose run a cancel reached, in order."""
        self.kills: list[str] = []
        """Agent ids killed on their host, in order."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls, hosts: Sequence[str], *, models: ModelFactories | None = None
    ) -> AsyncIterator[FakeBackend]:
        """Start the named hosts; ``models`` maps the model ids an
        :class:`~trio_agents.AgentSpec` may name to factories (every host has them all)."""
        if isinstance(hosts, str) or not hosts or len(set(hosts)) != len(hosts):
            raise InvalidArgumentError(
                f"hosts must be a non-empty sequence of distinct names, got {hosts!r}"
            )
        try:
            async with trio.open_nursery() as nursery:
                backend = cls(nursery, dict(models or {}))
                for name in hosts:
                    host = _FakeHost(name)
                    backend._hosts[name] = host
                    await nursery.start(host.serve)
                try:
                    yield backend
                finally:
                    nursery.cancel_scope.cancel(reason="fake backend closed")
        except BaseExceptionGroup as group:
            reraise_cancelled(group)
            _raise_flat(group)

    def kill_host(self, host: str) -> None:
        """Simulate the death of ``host``'s process (its agents and runs are gone)."""
        target = self._host(host)
        if not target.alive:
            return
        target.alive = False
        target.scope.cancel(reason=f"host {host!r} killed")
        for run in target.runs.values():
            run.done.set()  # reply stays None: lost
        target.runs.clear()
        target.agents.clear()
        target.lost.set()

    def _host(self, host: str) -> _FakeHost:
        try:
            return self._hosts[host]
        except KeyError:
            raise InvalidArgumentError(
                f"unknown host {host!r} (hosts: {sorted(self._hosts)})"
            ) from None

    def _alive(self, host: str) -> _FakeHost:
        target = self._host(host)
        if not target.alive:
            raise HostLost(host)
        return target

    def hosts(self) -> Sequence[str]:
        """Every host, killed or alive, in the order they were opened."""
        return list(self._hosts)

    async def running(self, host: str) -> list[str]:
        """The ids of the agents with a run in progress on ``host``, sorted."""
        await trio.lowlevel.checkpoint()
        return sorted(self._alive(host).runs)

    def hosted(self, host: str, agent_id: str) -> Agent:
        """The agent itself, as it lives on ``host`` (in-process hosts only: for tests that
        look at what travelled)."""
        agent = self._alive(host).agents.get(agent_id)
        if agent is None:
            raise InvalidArgumentError(
                f"no agent {agent_id!r} on host {host!r} (there: {sorted(self._host(host).agents)})"
            )
        return agent

    def live_hosts(self) -> Sequence[str]:
        """The hosts not killed, in the order they were opened."""
        return [name for name, host in self._hosts.items() if host.alive]

    def host_load(self, host: str) -> int:
        """Agents living on ``host``."""
        return len(self._host(host).agents)

    async def spawn(self, host: str, agent_id: str, target: Any) -> None:
        """Build the agent on ``host``; a broken target raises :class:`RemoteAgentError`."""
        await trio.lowlevel.checkpoint()
        where = self._alive(host)
        if agent_id in where.agents:
            return  # idempotent: a spawn whose caller was cancelled may have happened
        try:
            agent = build_agent(target, self._models)
        except Exception as exc:
            info = load(error_data(exc), ErrorInfo)
            raise RemoteAgentError.from_info(info, host=host, agent_id=agent_id) from None
        where.agents[agent_id] = agent

    async def request(self, host: str, agent_id: str, payload: Any) -> Any:
        """Run one request in ``host``'s tasks; wait for the reply."""
        where = self._alive(host)
        agent = where.agents.get(agent_id)
        if agent is None:
            raise InvalidArgumentError(f"no agent {agent_id!r} on host {host!r}")
        run = _Run()
        where.runs[agent_id] = run
        assert where.nursery is not None
        where.nursery.start_soon(self._run, where, agent_id, agent, payload, run)
        await run.done.wait()
        if run.reply is None:
            raise HostLost(host, f"host {host!r} was lost during a request to {agent_id!r}")
        return run.reply

    async def _run(
        self, host: _FakeHost, agent_id: str, agent: Agent, payload: Any, run: _Run
    ) -> None:
        try:
            with run.scope:
                run.reply = await serve_request(agent, payload)
            if run.scope.cancelled_caught:
                run.reply = {
                    "error": {
                        "type": "AgentCancelled",
                        "message": "run cancelled",
                        "retryable": False,
                        "retry_after": None,
                    }
                }
        finally:
            if host.runs.get(agent_id) is run:
                del host.runs[agent_id]
            run.done.set()

    async def cancel(self, host: str, agent_id: str) -> None:
        """Cancel the agent's current run on ``host`` and wait for it to end."""
        where = self._alive(host)
        run = where.runs.get(agent_id)
        if run is None:
            await trio.lowlevel.checkpoint()
            return
        self.cancels.append(agent_id)
        run.scope.cancel(reason="cancelled by its caller")
        await run.done.wait()
        if not where.alive:
            raise HostLost(host)

    async def kill(self, host: str, agent_id: str) -> None:
        """Remove the agent from ``host``; a run in progress is abandoned."""
        await trio.lowlevel.checkpoint()
        where = self._alive(host)
        if where.agents.pop(agent_id, None) is not None:
            self.kills.append(agent_id)
        run = where.runs.pop(agent_id, None)
        if run is not None:
            run.scope.cancel(reason="killed")

    async def wait_host_lost(self, host: str) -> None:
        """Return once ``host`` is killed."""
        await self._host(host).lost.wait()
