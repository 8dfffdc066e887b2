"""damas-core: an embeddable file tracker.

>>> import damas_core
>>> t = damas_core.open("memory://")
>>> t.publish({"_id": "/shots/a.exr", "comment": "first take", "origin": "paris"})["origin"]
'paris'
>>> t.search("origin:paris")
['/shots/a.exr']
"""

from damas_core import errors
from damas_core.tracker import Session, Tracker, open

__version__ = "0.1.0"
__all__ = ["Session", "Tracker", "__version__", "errors", "open"]
