"""The Ray backend of :mod:`trio_agents.distributed` (extra ``ray``).

Importing this module without Ray installed raises :exc:`ImportError` naming the extra.
"""

from ._ray import RayBackend

__all__ = ["RayBackend"]
