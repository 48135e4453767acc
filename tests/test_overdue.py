"""The overdue rule itself: planned or active, 30 minutes or more past its end."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, strategies as st

from watchfloor.ioc.model import OpStatus
from watchfloor.ioc.overdue import OVERDUE_AFTER, is_overdue, overdue_since

pytestmark = pytest.mark.calendar_free  # the rule is given its `now`

END = datetime(2026, 12, 1, 22, 15, tzinfo=UTC)


@given(st.sampled_from([s.value for s in OpStatus]), st.integers(-24 * 60, 24 * 60))
def test_overdue_is_live_and_thirty_minutes_past_its_end(status, minutes_after_end):
    now = END + timedelta(minutes=minutes_after_end)
    expected = status in ("planned", "active") and minutes_after_end >= 30
    assert is_overdue(status, END, now) is expected


def test_the_nudge_is_due_when_it_becomes_overdue():
    assert overdue_since(END) == END + OVERDUE_AFTER
    assert is_overdue("active", END, overdue_since(END))
    assert not is_overdue("active", END, overdue_since(END) - timedelta(seconds=1))
