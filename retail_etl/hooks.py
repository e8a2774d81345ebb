"""Fault-injection hooks for the tests that prove a failed or killed run leaves the
warehouse as it was: named points in the run where the environment can make it fail or
pause (RETAIL_ETL_FAIL_AT, RETAIL_ETL_PAUSE_AT). Without those variables they do nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path


class InjectedFailure(Exception):
    """Raised by a test hook to prove a failed run leaves the warehouse as it was."""


def checkpoint(name: str) -> None:
    """Test hooks: RETAIL_ETL_FAIL_AT=<name> raises here, RETAIL_ETL_PAUSE_AT=<name> touches
    RETAIL_ETL_PAUSE_FILE and sleeps until that file is removed (at most 600 s), so a test
    can kill the process mid-run, or break something and let it go on."""
    if os.environ.get("RETAIL_ETL_FAIL_AT") == name:
        raise InjectedFailure(f"failure injected at {name}")
    if os.environ.get("RETAIL_ETL_PAUSE_AT") == name:
        pause = Path(os.environ["RETAIL_ETL_PAUSE_FILE"])
        pause.touch()
        deadline = time.monotonic() + 600
        while pause.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
