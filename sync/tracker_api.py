"""What the sync engine asks of a tracker: the operations it calls, as a Protocol.

The embedded :class:`damas_core.tracker.Tracker` (and its sessions) and the HTTP
:class:`damas_core.client.Client` both satisfy :class:`TrackerAPI`; the engine calls
nothing else on them, so either may be handed to an agent.

>>> import damas_core
>>> isinstance(damas_core.open("memory://"), TrackerAPI)
True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TrackerAPI(Protocol):
    """The tracker operations the sync engine uses (see docs/guide.md, "Operations", for each rule)."""

    def read(self, ids: Any) -> Any: ...

    def create(self, elements: Any) -> Any: ...

    def update(self, elements: Any, *, expect: Any = None) -> Any: ...

    def delete(self, ids: Any) -> Any: ...

    def publish(self, elements: Any, *, with_history: bool = False) -> Any: ...

    def comment(self, elements: Any) -> Any: ...

    def search_elements(
        self, query: Any, sort: Any = None, skip: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]: ...

    def changes(
        self, since: int = 0, limit: int = 1000, *, elements: bool = False, wait: float = 0.0
    ) -> dict[str, Any]: ...


__all__ = ["TrackerAPI"]
