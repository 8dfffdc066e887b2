"""The sync engine: agents that scan volumes, publish files and copy them between sites.

- :mod:`.volumes`: volume elements, the global parameters, the tracked files;
- :mod:`.site`: the one place that touches a volume's files, and its one guard;
- :mod:`.tree`: walking a volume with its rules (:mod:`.find`: the listing by GNU find);
- :mod:`.scanner`: comparing the tree with the tracker (:mod:`.scan_writes`: its writes);
- :mod:`.planner`: what a site receives and emits next;
- :mod:`.copies`: a bucket's transfer and each copy's outcome (:mod:`.rsync`: the
  rsync transport); :mod:`.record`: what an outcome writes; :mod:`.state`: the per-site
  keys and the rules on them;
- :mod:`.agent`: :class:`Agent`, one per site (:mod:`.report`: what a cycle did);
- :mod:`.service`: an agent run for months (:mod:`.backoff`, :mod:`.credentials`,
  :mod:`.state_dir`, :mod:`.holder`, :mod:`.cycle_log`, :mod:`.exits`);
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
