"""Issue 21: a long load shows, on a terminal, rows done of expected, the rate and an
estimate per stage; nothing on a pipe, in CI or with --json."""

from __future__ import annotations

import io

from rich.console import Console

from retail_etl import console
from tests.helpers import load, write_drop


def _sales(n: int) -> list[list]:
    return [[f"O-{i}", 1, "2024-01-15T10:00:00Z", "", "", "P-1", 1, "1.00", "", ""]
            for i in range(n)]


def test_a_terminal_sees_rows_of_expected_per_stage(settings, tmp_path, monkeypatch):
    screen = io.StringIO()
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setitem(console._quiet, "on", False)  # whatever a --json test left
    monkeypatch.setattr(console, "err", Console(file=screen, force_terminal=True, width=160,
                                                 color_system=None))
    seen = []
    real = console.Bars.advance

    def spy(self, task, n):  # what the bars were told, as the screen is redrawn in place
        real(self, task, n)
        seen.append({t.description: (t.completed, t.total) for t in self.live.tasks})

    monkeypatch.setattr(console.Bars, "advance", spy)
    write_drop(tmp_path / "d", sales=_sales(300))
    load(settings, tmp_path / "d")
    drop = sum(f.stat().st_size for f in (tmp_path / "d").iterdir())
    assert any(s.get("run 1: extract") == (drop, drop) for s in seen), seen  # bytes
    assert any(s.get("run 1: validate") == (300, 300) for s in seen), seen
    assert any(s.get("run 1: lookup") == (300, 300) for s in seen), seen
    assert any(s.get("run 1: copy") == (300, 300) for s in seen), seen


def test_no_progress_off_a_terminal_or_when_quiet(settings, tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(console, "err", Console(file=io.StringIO(), force_terminal=True))
    console.quiet(True)
    try:
        assert console.Bars("run 1").live is None
    finally:
        console.quiet(False)
    monkeypatch.setenv("CI", "true")
    assert console.Bars("run 1").live is None
    monkeypatch.delenv("CI")
    monkeypatch.setattr(console, "err", Console(file=io.StringIO()))  # a pipe
    assert console.Bars("run 1").live is None
