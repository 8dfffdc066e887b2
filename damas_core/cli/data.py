"""``damas copy``, ``damas export`` and ``damas import``: moving elements between stores.

They work on the stores themselves (no user, no permission check): elements travel
exactly as stored. See ``docs/moving-data.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import click

from damas_core.errors import DamasError
from damas_core.transfer import (
    DEFAULT_BATCH_SIZE,
    TransferReport,
    conflicts_text,
    copy_store,
    export_lines,
    import_elements,
    read_lines,
)

_batch_size = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Elements written per destination transaction.",
)
_overwrite = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace destination elements whose content differs (reported otherwise).",
)
_quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bar and no summary.")


def _open(url: str):
    from damas_core.registry import open_storage

    try:
        return open_storage(url)
    except DamasError as e:
        raise click.ClickException(f"cannot open {url}: {e}") from e


@contextmanager
def _progress(what: str, total: int | None, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (elements and rate), or nothing when stderr is
    not a terminal or ``--quiet`` is given."""
    if quiet or not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    class RateColumn(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[no-untyped-def]
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} elements/s" if speed else "", style="progress.data.speed")

    with Progress(
        TextColumn("{task.description}", markup=False, style="bold"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _finish(report: TransferReport, quiet: bool) -> None:
    if not quiet or not report.ok:
        click.echo(report.summary(), err=True)
    if report.conflicts:
        click.echo(
            "conflicts (different content at the destination, left as they are; "
            f"--overwrite replaces them): {conflicts_text(report.conflicts)}",
            err=True,
        )
    if not report.ok:
        raise SystemExit(1)


@click.command()
@click.argument("src_url")
@click.argument("dst_url")
@_batch_size
@_overwrite
@_quiet
def copy(src_url: str, dst_url: str, batch_size: int, overwrite: bool, quiet: bool) -> None:
    """Copy every element of the store SRC_URL into the store DST_URL.

    Elements are copied as stored (password hashes stay hashes). Elements already at
    the destination with the same content are skipped, so running the same copy again
    after an interruption resumes it. An element at the destination with different
    content is a conflict: reported and left alone, unless --overwrite.

    The copy ends with a count check (source count = number of source elements found
    at the destination with the same content) and exits with status 1 if it fails.

    \b
    Examples:
      damas copy tinydb:///srv/damas/db.json lmdb:///srv/damas/store
      damas copy --batch-size 5000 lmdb:///srv/damas/store mongodb://db1:27017/damas
    """
    from damas_core.query.ast import All

    src = _open(src_url)
    dst = _open(dst_url)
    try:
        with _progress("copy", src.count(All()), quiet) as advance:
            report = copy_store(
                src, dst, batch_size=batch_size, overwrite=overwrite, progress=advance
            )
    except DamasError as e:
        raise click.ClickException(str(e)) from e
    finally:
        src.close()
        dst.close()
    _finish(report, quiet)


@click.command()
@click.argument("url")
@click.argument("file", type=click.File("wb"), default="-")
@_quiet
def export(url: str, file: IO[bytes], quiet: bool) -> None:
    """Write every element of the store URL to FILE as JSON Lines (default: stdout).

    One JSON object per line, in _id order, exactly as stored.

    \b
    Examples:
      damas export lmdb:///srv/damas/store > backup.jsonl
      damas export tinydb:///srv/damas/db.json backup.jsonl
    """
    from damas_core.query.ast import All

    src = _open(url)
    try:
        with _progress("export", src.count(All()), quiet) as advance:
            written = export_lines(src, file, progress=advance)
        file.flush()
    except DamasError as e:
        raise click.ClickException(str(e)) from e
    finally:
        src.close()
    if not quiet:
        click.echo(f"{written} elements exported", err=True)


@click.command("import")
@click.argument("url")
@click.argument("file", type=click.File("rb"), default="-")
@_batch_size
@_overwrite
@_quiet
def import_(url: str, file: IO[bytes], batch_size: int, overwrite: bool, quiet: bool) -> None:
    """Store the JSON Lines of FILE (default: stdin) into the store URL.

    The whole input is validated first: if any line is not a JSON object with a
    non-empty string _id, or repeats an _id, the bad lines are listed by number and
    nothing is imported. Then it is stored like a copy: identical elements already
    there are skipped, different ones are conflicts unless --overwrite.

    \b
    Examples:
      damas import lmdb:///srv/damas/store backup.jsonl
      damas export tinydb:///old.json | damas import sqlite:///srv/damas/store.db
    """
    try:
        lines = list(file)
    except OSError as e:
        raise click.ClickException(f"cannot read the input: {e}") from e
    try:
        elements = read_lines(lines)  # refuse a bad input before opening the store
    except DamasError as e:
        raise click.ClickException(str(e)) from e
    del lines
    dst = _open(url)
    try:
        with _progress("import", len(elements), quiet) as advance:
            report = import_elements(
                elements, dst, batch_size=batch_size, overwrite=overwrite, progress=advance
            )
    except DamasError as e:
        raise click.ClickException(str(e)) from e
    finally:
        dst.close()
    _finish(report, quiet)


__all__ = ["copy", "export", "import_"]
