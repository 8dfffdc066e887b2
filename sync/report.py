"""What one cycle of an agent did: :class:`Report`, and the outcomes of a transfer
added to it (:func:`summarize`).

>>> Report(site="paris", published=["/a"]).as_dict()["published"]
['/a']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .record import CONFLICT, COPIED, FAILED, LEFT, Outcome, left_reason


@dataclass
class Report:
    """What one cycle did. Lists hold file ids; ``failed`` maps ids to rsync exit codes."""

    site: str = ""
    scanned: int = 0
    published: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    trashed: list[str] = field(default_factory=list)  # copies moved to .damas-trash
    folded: list[str] = field(default_factory=list)  # per-file elements folded into packages
    moved: list[tuple[str, str]] = field(default_factory=list)  # renames applied: (old, new)
    received: list[str] = field(default_factory=list)
    emitted: list[str] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # unsafe ids never handed to rsync
    rsync_calls: int = 0
    files_read: int = 0  # file elements the view read from the change feed this cycle
    scan_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(outcomes: list[Outcome], kind: str, report: Report) -> None:
    """Add ``outcomes`` to the report: copies, failures, waits and conflicts."""
    copied = report.received if kind == "reception" else report.emitted
    for o in outcomes:
        if o.status == COPIED:
            copied.append(o.file_id)
        elif o.status == FAILED:
            report.failed[o.file_id] = o.code
        elif o.status == LEFT:
            report.waiting[o.file_id] = left_reason(o.target)
        elif o.status == CONFLICT:
            report.conflicts.append(o.file_id)


__all__ = ["Report", "summarize"]
