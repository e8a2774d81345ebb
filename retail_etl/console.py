"""All human output: messages and progress go to stderr, data to stdout.
Progress bars appear only when stderr is a terminal (never in tests or pipes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

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


@contextlib.contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on a TTY; a plain line otherwise (nothing at all when quiet)."""
    if err.is_terminal:
        with err.status(message):
            yield
    else:
        yield


def table(title: str | None, columns: list[str], rows: list[list[object]]) -> None:
    t = Table(title=title, show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if v is None else str(v) for v in r))
    out.print(t)
