"""A terminal view of an agent tree: status, requests, tokens and cost per agent.

Needs the ``live`` extra (``pip install 'trio-agents[live]'``: ``rich``). The core never
imports this module.

:class:`TreeView` folds events into one row per agent path; :meth:`TreeView.render` draws the
rows as a ``rich`` tree. The same fold serves a running system (:func:`follow` an
:class:`~trio_agents.EventLog`) and a replayed JSON Lines log (``python -m trio_agents view
LOG.jsonl``), so both show the same final tree.
"""

from ._live import PROGRESS_AFTER, AgentRow, TreeView, follow, replay

__all__ = ["PROGRESS_AFTER", "AgentRow", "TreeView", "follow", "replay"]
