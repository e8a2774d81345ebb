"""All human output: messages and progress go to stderr, data to stdout.
Progress bars appear only when stderr is a terminal (never in tests, pipes, CI or --json)."""

from __future__ import annotations

import os

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def info(message: str) -> None:
    err.print(message, markup=False)


def warn(message: str) -> None:
    err.print(f"Warning: {message}", markup=False, style="yellow")


def error(message: str, hint: str | None = None) -> None:
    err.print(f"Error: {message}", markup=False, style="bold red")
    if hint:
        err.print(f"Hint: {hint}", markup=False)


_quiet = {"on": False}


def quiet(on: bool = True) -> None:
    """No progress at all (`--json`: a program reads the output)."""
    _quiet["on"] = on


def interactive() -> bool:
    """Progress is drawn only for a person: stderr a terminal, not quiet, not in CI."""
    return err.is_terminal and not _quiet["on"] and not os.environ.get("CI")


class _Rate(ProgressColumn):
    """rows done of expected, the rate and an estimate; for a stage without an expected
    total, nothing (its bar pulses and the elapsed time runs)."""

    def render(self, task) -> Text:
        if task.total is None:
            return Text("")
        speed = task.finished_speed or task.speed
        left = task.time_remaining
        if task.fields.get("unit") == "bytes":  # a drop's size is known before its rows
            mb = 1024 * 1024
            parts = [f"{task.completed / mb:,.1f}/{task.total / mb:,.1f} MB"]
            if speed:
                parts.append(f"{speed / mb:,.1f} MB/s")
        else:
            parts = [f"{task.completed:,.0f}/{task.total:,.0f} rows"]
            if speed:
                parts.append(f"{speed:,.0f} rows/s")
        if left is not None and task.completed < task.total:
            parts.append(f"eta {int(left) // 60}:{int(left) % 60:02d}")
        return Text("  ".join(parts))


class Bars:
    """The progress of a run's stages on a terminal (rich): a stage whose rows are known in
    advance shows rows done of expected, the rate and an estimate; any other stage an
    indeterminate bar with its elapsed time. A no-op when not interactive()."""

    def __init__(self, prefix: str):
        self.prefix, self.tasks, self.expected, self.units = prefix, {}, {}, {}
        self.live = Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), _Rate(),
            console=err, transient=True) if interactive() else None

    def expect(self, name: str, rows: int, unit: str = "rows") -> None:
        """The rows (or bytes) stage `name` will handle in all (across its entries)."""
        self.expected[name] = self.expected.get(name, 0) + rows
        self.units[name] = unit
        if name in self.tasks and self.live:
            self.live.update(self.tasks[name], total=self.expected[name], unit=unit)

    def enter(self, name: str):
        if self.live is None:
            return None
        if not self.tasks:
            self.live.start()
        if name not in self.tasks:
            self.tasks[name] = self.live.add_task(f"{self.prefix}: {name}",
                                                  total=self.expected.get(name),
                                                  unit=self.units.get(name, "rows"))
        return self.tasks[name]

    def advance(self, task, n: int) -> None:
        if self.live is not None and task is not None and n:
            self.live.advance(task, n)

    def leave(self, name: str) -> None:
        """A stage without an expected total, or one that is done, leaves the screen."""
        task = self.tasks.get(name)
        if self.live is None or task is None:
            return
        t = next(x for x in self.live.tasks if x.id == task)
        if t.total is None or t.completed >= t.total:
            self.live.remove_task(task)
            del self.tasks[name]

    def close(self) -> None:
        if self.live is not None and self.live.live.is_started:
            self.live.stop()


def table(title: str | None, columns: list[str], rows: list[list[object]]) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)
