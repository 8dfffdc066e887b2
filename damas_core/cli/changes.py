"""``damas changes``: the change feed on the command line, one JSON line per change.

Like the other operations it works against a server (``-s URL``) or on a store
(``--store URL``). Without ``--follow`` it prints every change after ``--since`` and
exits; with it, it long-polls for more until interrupted. A ``{"reset": true,
"last_seq": N}`` line means the position given is older than the feed holds: read
every element again, then follow from ``N``.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import orjson

from damas_core.cli.ops import Runner, _common
from damas_core.errors import DamasError
from damas_core.operations.changes import DEFAULT_LIMIT, MAX_LIMIT

#: Seconds one long-poll of ``--follow`` waits before asking again.
FOLLOW_WAIT = 30.0


def lines(answer: dict[str, Any]) -> list[bytes]:
    """The lines to print for one answer of ``changes``.

    >>> lines({"last_seq": 9, "changes": [], "reset": True})
    [b'{"reset":true,"last_seq":9}']
    >>> lines({"last_seq": 2, "changes": [{"seq": 2, "_id": "/a", "deleted": True}]})
    [b'{"seq":2,"_id":"/a","deleted":true}']
    """
    out = (
        [orjson.dumps({"reset": True, "last_seq": answer["last_seq"]})]
        if answer.get("reset")
        else []
    )
    out.extend(orjson.dumps(change) for change in answer["changes"])
    return out


@click.command(
    epilog="""\b
Examples:
  damas changes                         every change, then exit
  damas changes --since 1200            what changed after seq 1200
  damas changes --follow --elements     keep printing, with each element
  damas --store lmdb://./damas-data changes -f    on a store, no server"""
)
@click.option(
    "--since",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Print the changes after this seq (the seq of the last change you saw).",
)
@click.option("-f", "--follow", is_flag=True, help="Keep printing changes as they come.")
@click.option("--elements", is_flag=True, help="Add each change's current element.")
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Changes read per request.",
)
@_common
def changes(
    ctx: click.Context, since: int, follow: bool, elements: bool, limit: int, **options: Any
) -> None:
    """Print one JSON line per change after --since, in seq order."""
    runner = Runner(ctx, options)
    tracker = None
    out = sys.stdout.buffer
    try:
        tracker = runner.open()
        position = since
        while True:
            answer = tracker.changes(
                position, limit, elements=elements, wait=FOLLOW_WAIT if follow else 0.0
            )
            if not runner.quiet:
                for line in lines(answer):
                    out.write(line + b"\n")
                out.flush()
            caught_up = answer["last_seq"] == position and not answer["changes"]
            position = answer["last_seq"]
            if caught_up and not follow:
                break
    except DamasError as e:
        runner.fail(e)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        sys.stderr.close()
    finally:
        if tracker is not None:
            tracker.close()
    ctx.exit(0)


__all__ = ["FOLLOW_WAIT", "changes", "lines"]
