"""What a cycle says: one INFO line, then a WARNING per failed file (rsync's code and
what it means), per refused file and per scan error.

>>> from .agent import Report
>>> summary("paris", Report(site="paris", scanned=3, published=["/a"]), 1.5)
'paris: cycle in 1.50 s: scanned 3, published 1, modified 0, deleted 0, received 0, emitted 0, failed 0, conflicts 0'
"""

from __future__ import annotations

import logging

from .agent import Report

log = logging.getLogger("damas_core.sync.service")

#: rsync's exit codes, as its manual names them
RSYNC_CODES = {
    1: "syntax or usage error",
    2: "protocol incompatibility",
    3: "errors selecting input/output files or directories",
    5: "error starting client-server protocol",
    10: "error in socket I/O",
    11: "error in file I/O",
    12: "error in rsync protocol data stream",
    20: "received SIGUSR1 or SIGINT",
    23: "partial transfer: a file was not found or could not be read",
    24: "partial transfer: a source file vanished",
    30: "timeout in data send/receive",
    35: "timeout waiting for daemon connection",
    255: "ssh failed",
}
#: failed files logged one by one per cycle; beyond, one line says how many more
MAX_FAILURE_LINES = 100


def summary(site: str, report: Report, seconds: float) -> str:
    """The one line a cycle logs at INFO."""
    return (
        f"{site}: cycle in {seconds:.2f} s: scanned {report.scanned}, "
        f"published {len(report.published)}, modified {len(report.modified)}, "
        f"deleted {len(report.deleted)}, received {len(report.received)}, "
        f"emitted {len(report.emitted)}, failed {len(report.failed)}, "
        f"conflicts {len(report.conflicts)}"
    )


def log_report(report: Report, seconds: float) -> None:
    """Log a cycle: :func:`summary` at INFO, then :func:`log_failures`."""
    log.info("%s", summary(report.site, report, seconds))
    log_failures(report)


def log_failures(report: Report) -> None:
    """Log each failed file (rsync's code and its meaning), refused file and scan
    error of a cycle at WARNING (the first :data:`MAX_FAILURE_LINES` failed files,
    then how many more)."""
    for n, (file_id, code) in enumerate(sorted(report.failed.items())):
        if n == MAX_FAILURE_LINES:
            log.warning(
                "%s: %d more files failed (damas sync status --state error lists them)",
                report.site,
                len(report.failed) - n,
            )
            break
        meaning = RSYNC_CODES.get(code, "see rsync's manual")
        log.warning("%s: %s failed: rsync exit %d (%s)", report.site, file_id, code, meaning)
    for file_id, reason in sorted(report.refused.items()):
        log.warning("%s: %s refused: %s", report.site, file_id, reason)
    for problem in report.scan_errors:
        log.warning("%s: scan: %s", report.site, problem)


__all__ = ["MAX_FAILURE_LINES", "RSYNC_CODES", "log_failures", "log_report", "summary"]
