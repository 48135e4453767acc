"""Progress of a long CLI command on a terminal (rich): rows, rate and time left. Nothing when output is piped,
so scripts and logs see only the command's result."""
from __future__ import annotations

import sys
from typing import TextIO


class TerminalProgress:
    """A callable `(phase, done, total)`, one bar per phase; a no-op unless `stream` is a terminal."""

    def __init__(self, stream: TextIO | None = None, unit: str = "rows"):
        self.stream = stream or sys.stderr
        self.unit = unit
        self.enabled = self.stream.isatty()
        self._progress = None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> TerminalProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                                       TimeRemainingColumn)
            from rich.text import Text

            unit = self.unit

            class Rate(ProgressColumn):
                def render(self, task) -> Text:
                    return Text(f"{task.speed:,.0f} {unit}/s" if task.speed else "")

            self._progress = Progress(TextColumn("{task.description:<20}"), BarColumn(), MofNCompleteColumn(),
                                      Rate(), TimeRemainingColumn(), console=Console(file=self.stream),
                                      refresh_per_second=4)
            self._progress.start()
        return self

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(task, completed=done, total=total)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
