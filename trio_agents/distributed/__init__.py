"""Supervised agents across machines, with the semantics of one process.

A remote agent is registered like a local one, with a factory from
:meth:`RemoteCluster.factory`; it is reached through an ordinary
:class:`~trio_agents.AgentHandle` and supervised by the same policies. See the docs page
"Distributed agents". The Ray backend needs the ``ray`` extra.
"""

from ._core import (
    Backend,
    HostLost,
    Placement,
    RemoteAgent,
    RemoteAgentError,
    RemoteCluster,
    RemoteFactory,
    Spread,
    open_cluster,
)
from ._fake import FakeBackend

__all__ = [
    "Backend",
    "FakeBackend",
    "HostLost",
    "Placement",
    "RemoteAgent",
    "RemoteAgentError",
    "RemoteCluster",
    "RemoteFactory",
    "Spread",
    "open_cluster",
]
