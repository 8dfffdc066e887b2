"""Progress bars on a terminal (rich), nothing elsewhere."""

from __future__ import annotations

from typing import Any


class Progress:
    """A rich progress bar on a terminal, nothing otherwise (``total`` ``None``: work
    of unknown size, shown by what :meth:`describe` says)."""

    def __init__(self, enabled: bool, total: int | None, what: str) -> None:
        self.enabled = enabled and (total is None or total > 0)
        self.total = total
        self.what = what
        self._progress: Any = None

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.progress import Progress, TextColumn

            # the description is text, never read as rich markup
            plain = TextColumn("{task.description}", markup=False, style="progress.description")
            self._progress = Progress(plain, *Progress.get_default_columns()[1:], transient=True)
            self._progress.start()
            self._task = self._progress.add_task(self.what, total=self.total)
        return self

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


__all__ = ["Progress"]
