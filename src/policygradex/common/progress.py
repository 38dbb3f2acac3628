"""Progress on stderr that a user sees whether or not stderr is a terminal.

On a terminal: rich's live bars and spinners. Otherwise (a log file, a pipe, CI, nohup), live bars print nothing
until they finish, so an 11-minute stage looked dead; there, :class:`LineProgress` prints one plain line each time
a bar crosses another tenth of its total or every ``every`` seconds, and :func:`status` prints a line when a step
starts and when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class LineProgress:
    """The subset of rich.progress.Progress used here (add_task, update, advance), printed as plain lines."""

    def __init__(self, console: Console, every: float = 15.0) -> None:
        self.console, self.every = console, every
        self.tasks: list[dict[str, Any]] = []

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks:
            if task["completed"] != task["printed"] and exc[0] is None:
                self._print(task)

    def add_task(self, description: str, total: int, **fields: Any) -> int:
        self.tasks.append({"description": description, "total": total, "completed": 0, "fields": fields,
                           "printed": None, "t0": time.perf_counter(), "last": time.perf_counter()})
        return len(self.tasks) - 1

    def update(self, task_id: int, completed: float | None = None, advance: float | None = None, **fields: Any) -> None:
        task = self.tasks[task_id]
        if completed is not None:
            task["completed"] = completed
        if advance is not None:
            task["completed"] += advance
        task["fields"].update(fields)
        total = max(1, task["total"])
        tenth = int(10 * task["completed"] / total)
        last_tenth = -1 if task["printed"] is None else int(10 * task["printed"] / total)
        if tenth > last_tenth or time.perf_counter() - task["last"] >= self.every:
            self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _print(self, task: dict[str, Any]) -> None:
        info = task["fields"].get("info", "")
        elapsed = time.perf_counter() - task["t0"]
        self.console.print(f"{task['description']}: {task['completed']:g}/{task['total']} {info} "
                           f"({elapsed:.0f}s elapsed)".replace("  ", " "), highlight=False)
        task["printed"], task["last"] = task["completed"], time.perf_counter()


def make_progress(console: Console) -> Progress | LineProgress:
    """Live bars on a terminal, plain lines elsewhere."""
    if not console.is_terminal:
        return LineProgress(console)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=console, transient=False)


@contextmanager
def status(console: Console, text: str) -> Iterator[None]:
    """A spinner on a terminal; elsewhere a line when the step starts and one when it ends."""
    if console.is_terminal:
        with console.status(text):
            yield
        return
    console.print(f"{text} ...", highlight=False)
    t0 = time.perf_counter()
    yield
    console.print(f"{text}: done in {time.perf_counter() - t0:.1f}s", highlight=False)
