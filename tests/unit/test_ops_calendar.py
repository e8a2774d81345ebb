"""The operations calendar: which backup the day calls for, which months are old enough to
archive (no database)."""

from datetime import UTC, datetime

import pytest

from retail_etl.ops.archive import cutoff
from retail_etl.ops.backup import pick_type

SUNDAY = 6


def _full(at: datetime) -> dict:
    return {"type": "full", "database": {"repo-key": 1}, "timestamp": {"stop": int(at.timestamp())}}


@pytest.mark.parametrize("now, fulls, want", [
    (datetime(2026, 12, 2, 1, 30, tzinfo=UTC), [], "full"),  # none yet: a full, any day
    (datetime(2026, 12, 2, 1, 30, tzinfo=UTC), [datetime(2026, 11, 29, 1, 30, tzinfo=UTC)], "incr"),
    (datetime(2026, 12, 6, 1, 30, tzinfo=UTC), [datetime(2026, 11, 29, 1, 30, tzinfo=UTC)], "full"),  # Sunday
    (datetime(2026, 12, 6, 9, 0, tzinfo=UTC), [datetime(2026, 12, 6, 1, 30, tzinfo=UTC)], "incr"),  # Sunday's done
    (datetime(2026, 12, 5, 1, 30, tzinfo=UTC), [datetime(2026, 11, 27, 1, 30, tzinfo=UTC)], "full"),  # 8 days
])
def test_the_calendar_picks_full_weekly_and_incr_otherwise(now, fulls, want):
    assert pick_type([_full(f) for f in fulls], now, SUNDAY) == want


def test_repo2_fulls_do_not_count_for_repo1():
    other = _full(datetime(2026, 12, 1, tzinfo=UTC)) | {"database": {"repo-key": 2}}
    assert pick_type([other], datetime(2026, 12, 2, tzinfo=UTC), SUNDAY) == "full"


@pytest.mark.parametrize("now, months, first_kept", [
    (datetime(2026, 12, 7, tzinfo=UTC), 24, 202412),
    (datetime(2026, 1, 31, tzinfo=UTC), 1, 202512),
    (datetime(2026, 1, 1, tzinfo=UTC), 13, 202412),
    (datetime(2026, 3, 15, tzinfo=UTC), 2, 202601),
])
def test_archive_keeps_the_last_n_whole_months(now, months, first_kept):
    assert cutoff(now, months) == first_kept
