"""A run's private staging directory: `<data_dir>/staging/run_NNNNNN-<token>`.

- Unique whatever the warehouse: every warehouse numbers its runs from 1, so the run id
  alone would let two loads into two warehouses from one working directory share files.
  The random token (mkdtemp: created exclusively, mode 0700) keeps them apart.
- Locked while in use: the run holds an flock on `.lock` inside it. The lock dies with the
  process, even on kill -9, so a directory whose lock can be taken is left over and may be
  removed (by the next run, or by `retail-etl clean`).
- Private: 0700, so the names and emails staged inside are not readable by other users.
- A directory is made under a dot-name, locked, then renamed: a sweep never sees an
  unlocked directory that is still being born.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

LOCK = ".lock"
KEPT = ".kept"  # written when keep_staging keeps a run's staging on purpose


@dataclass
class Leftover:
    path: Path
    bytes: int
    kept: bool  # kept on purpose (keep_staging), not left by a killed run


class Staging:
    """The staging directory of one run; `close()` unlocks it and removes it (or keeps it)."""

    def __init__(self, root: Path, run_id: int):
        root.mkdir(parents=True, exist_ok=True)
        _private(root)
        born = Path(tempfile.mkdtemp(prefix=".new-", dir=root))  # exclusive, 0700
        self._lock = os.open(born / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = root / f"run_{run_id:06d}-{born.name.removeprefix('.new-')}"
        born.rename(self.path)

    def close(self, keep: bool = False) -> None:
        if self._lock is None:
            return
        if keep:
            (self.path / KEPT).touch()
        else:
            shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock)  # (also releases the flock)
        self._lock = None


def leftovers(root: Path, include_kept: bool = True) -> list[Leftover]:
    """Staging directories no live run holds (left by killed runs, or kept on purpose)."""
    if not root.is_dir():
        return []
    found = []
    for path in sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("run_")):
        if not _unused(path):
            continue
        kept = (path / KEPT).exists()
        if kept and not include_kept:
            continue
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        found.append(Leftover(path, size, kept))
    return found


def sweep(root: Path, include_kept: bool = False) -> list[Leftover]:
    """Remove the staging that no live run holds; kept staging only if asked."""
    gone = leftovers(root, include_kept)
    for left in gone:
        shutil.rmtree(left.path, ignore_errors=True)
    return gone


def _unused(path: Path) -> bool:
    """No process holds the directory's lock (a directory without one is from an older
    version, or half removed: unused)."""
    try:
        fd = os.open(path / LOCK, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _private(path: Path) -> None:
    try:
        path.chmod(0o700)
    except PermissionError:  # a shared staging root owned by someone else: its runs are 0700
        pass


def parquet_rows(path: Path) -> int:
    """Rows of a staged Parquet file, from its metadata."""
    import polars as pl

    return pl.scan_parquet(path).select(pl.len()).collect().item()


def group_up_to(sizes: list[tuple], max_rows: int) -> list[list]:
    """[(item, rows)] in order -> consecutive groups of at most max_rows rows (an item
    bigger than that is a group of its own)."""
    groups: list[list] = []
    total = 0
    for item, n in sizes:
        if not groups or total + n > max_rows:
            groups.append([])
            total = 0
        groups[-1].append(item)
        total += n
    return groups
