"""The sync engine: agents that scan volumes, publish files and copy them between sites.

- :mod:`.volumes`: volume elements, the global parameters, the tracked files;
- :mod:`.tree`: walking a volume with its rules (:mod:`.find`: the listing by GNU find);
- :mod:`.scanner`: comparing the tree with the tracker;
- :mod:`.planner`: what a site receives and emits next;
- :mod:`.rsync`: the rsync transport;
- :mod:`.agent`: :class:`Agent`, one per site;
- :mod:`.service`: an agent run for months (back-off, credentials, one agent per volume);
- :mod:`.status`: the files x sites matrix (:func:`status`); :mod:`.row_cache`: its rows
  kept between pages;
- :mod:`.conflicts`: listing and resolving conflicts.

>>> import damas_core
>>> from damas_core import sync
>>> t = damas_core.open("memory://")
>>> sync.volumes(t)
[]
"""

from __future__ import annotations

from .agent import Agent, Report
from .conflicts import conflicts, resolve
from .status import status
from .volumes import create_volume, global_parameters, update_volume, volumes

__all__ = [
    "Agent",
    "Report",
    "conflicts",
    "create_volume",
    "global_parameters",
    "resolve",
    "status",
    "update_volume",
    "volumes",
]
