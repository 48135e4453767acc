"""Times as a watch officer types them: a bare time of day is its occurrence nearest to now, an end before its
start is the next morning, a start in the past needs its date, and the hours clocks skip or repeat are said."""
from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from watchfloor.commands.errors import CommandError
from watchfloor.commands.values import parse_end, parse_start, parse_time
from watchfloor.ioc.zones import get_zone
from tests.conftest import Clock
from tests.helpers import ConsoleUser, make_parts

LA = get_zone("LALB").tz
ZONES = [get_zone(z).tz for z in ("LALB", "NY", "ANC", "HON", "GUAM", "SJ")]
NOWS = st.datetimes(datetime(2025, 1, 1), datetime(2030, 12, 31)).map(lambda d: d.replace(tzinfo=UTC))
HOURS, MINUTES = st.integers(0, 23), st.integers(0, 59)


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


def occurrences(at: time, tz, around: datetime) -> list[datetime]:
    """Every real occurrence (first one when repeated) of a wall time within two days of `around`."""
    day = around.astimezone(tz).date()
    out = []
    for d in range(-2, 3):
        naive = datetime.combine(day + timedelta(days=d), at)
        aware = naive.replace(tzinfo=tz)
        if aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive:
            out.append(aware.astimezone(UTC))
    return out


def shift_near(tz, now: datetime) -> timedelta:
    """How far the zone's clocks move within a day of now (a DST change makes one day 23 or 25 hours)."""
    return abs(now.astimezone(tz).utcoffset() - (now + timedelta(days=1)).astimezone(tz).utcoffset()) + abs(
        now.astimezone(tz).utcoffset() - (now - timedelta(days=1)).astimezone(tz).utcoffset())


@pytest.mark.calendar_free
@given(NOWS, st.sampled_from(ZONES), HOURS, MINUTES)
@settings(max_examples=400, deadline=None)
def test_a_bare_time_of_day_is_its_occurrence_nearest_to_now(now, tz, hh, mm):
    try:
        t = parse_time("eta", f"{hh:02d}:{mm:02d}", tz, now)
    except CommandError as e:  # only a wall time the clocks skip is refused
        assert e.field == "eta" and "does not exist" in e.line and "(clocks go forward)" in e.line
        assert shift_near(tz, now)
        return
    local = t.astimezone(tz)
    assert (local.hour, local.minute) == (hh, mm)
    # within 12 hours either way (half an hour more across the night clocks go back)
    assert abs(t - now) <= timedelta(hours=12) + shift_near(tz, now) / 2, (now, t)
    if not shift_near(tz, now):
        assert abs(t - now) <= timedelta(hours=12)
    assert all(abs(other - now) >= abs(t - now) for other in occurrences(time(hh, mm), tz, now))


@pytest.mark.calendar_free
@given(NOWS, st.sampled_from(ZONES), HOURS, MINUTES)
@settings(max_examples=400, deadline=None)
def test_an_end_time_of_day_is_the_first_after_the_start_wrapping_past_midnight(start, tz, hh, mm):
    try:
        end = parse_end(f"{hh:02d}:{mm:02d}", start, tz, start)
    except CommandError as e:
        assert e.field == "end" and "does not exist" in e.line
        return
    s, e = start.astimezone(tz), end.astimezone(tz)
    assert (e.hour, e.minute) == (hh, mm)
    if time(hh, mm) < s.time().replace(tzinfo=None):
        assert e.date() == s.date() + timedelta(days=1)           # before the start: the next day
    else:
        assert e.date() == s.date()
    assert timedelta(0) <= end - start < timedelta(hours=25)


@pytest.mark.calendar_free
@given(NOWS, HOURS, MINUTES)
@settings(max_examples=300, deadline=None)
def test_a_bare_start_is_never_taken_in_the_past_beyond_ten_minutes(now, hh, mm):
    try:
        start = parse_start(f"{hh:02d}:{mm:02d}", LA, now)
    except CommandError as e:
        assert e.field == "start" and "\n" not in e.line
        return
    assert start >= now - timedelta(minutes=10)


@pytest.mark.parametrize("said_at,raw,expected", [
    (utc(2026, 12, 2, 5, 30), "07:00", utc(2026, 12, 2, 15, 0)),   # 21:30 PST: tomorrow morning, not this one
    (utc(2026, 12, 1, 15, 0), "14:00", utc(2026, 12, 1, 22, 0)),   # 07:00 PST: this afternoon
    (utc(2026, 12, 1, 11, 0), "14:30", utc(2026, 12, 1, 22, 30)),  # 03:00 PST: this afternoon, 11.5 h ahead
    (utc(2026, 12, 1, 11, 0), "02:55", utc(2026, 12, 1, 10, 55)),  # 03:00 PST: five minutes ago is "now"
])
def test_bare_starts_a_watch_officer_would_mean(said_at, raw, expected):
    assert parse_start(raw, LA, said_at) == expected


@pytest.mark.calendar_free
def test_a_bare_start_in_the_past_is_refused_with_how_to_write_it():
    with pytest.raises(CommandError) as e:
        parse_start("02:00", LA, utc(2026, 12, 1, 11, 0))  # said at 03:00 PST
    assert e.value.line == ("start: 02:00 PST was 1 h ago; to log a start in the past give its date, "
                            "start=2026-12-01T02:00; for the coming one, start=2026-12-02T02:00")


@pytest.mark.calendar_free
def test_a_dated_start_in_the_past_is_taken_and_said():
    notes: list[str] = []
    assert parse_start("2026-12-01T01:30", LA, utc(2026, 12, 1, 11, 0), notes) == utc(2026, 12, 1, 9, 30)
    assert notes == ["start: Tue 01 Dec 01:30 PST is in the past (1 h 30 min ago); taken as given"]


@pytest.mark.calendar_free
def test_the_hour_clocks_repeat_is_taken_at_its_first_occurrence_and_said():
    notes: list[str] = []
    at_2000_pdt = utc(2026, 11, 1, 3, 0)  # Sat 31 Oct 20:00 PDT; clocks go back at 02:00 PDT on Sun 01 Nov
    assert parse_time("eta", "01:30", LA, at_2000_pdt, notes) == utc(2026, 11, 1, 8, 30)  # 01:30 PDT
    assert notes == ["eta: 01:30 happens twice on Sun 01 Nov (clocks go back): took the first, 01:30 PDT; "
                     "for 01:30 PST write eta=2026-11-01T01:30-08:00"]
    assert parse_time("eta", "2026-11-01T01:30-08:00", LA, at_2000_pdt) == utc(2026, 11, 1, 9, 30)


@pytest.mark.calendar_free
def test_the_hour_clocks_skip_is_refused_in_one_line():
    with pytest.raises(CommandError) as e:
        parse_start("02:30", LA, utc(2026, 3, 8, 7, 0))  # Sat 07 Mar 23:00 PST; 02:00 becomes 03:00
    assert e.value.line == "start: 2026-03-08 02:30 does not exist in America/Los_Angeles (clocks go forward)"


# Through the engine, with its clock set: what the officer reads back.

def room(db_url, now: datetime, **kw):
    parts = make_parts(db_url, Clock(now))
    return ConsoleUser(parts, "LALB", "alice", "CBP", **kw)


def test_an_overnight_operation_is_logged_and_shown_across_midnight(sqlite_url):
    alice = room(sqlite_url, utc(2026, 12, 2, 2, 0))  # Tue 01 Dec 18:00 PST
    reply = alice.say("!op log patrol at=33.74,-118.27 start=22:00 end=06:00")
    assert reply.startswith("OP-1 logged: OP-1 CBP patrol · 33.7400,-118.2700 ±500 m · "
                            "Tue 01 Dec 22:00 PST – Wed 02 Dec 06:00 PST"), reply
    assert "⚠" not in reply
    # moving the end of a running overnight plan works the same way
    assert "Tue 01 Dec 22:00 PST – Wed 02 Dec 07:30 PST" in alice.say("!op update OP-1 end=07:30")


def test_seven_said_at_half_past_nine_at_night_is_tomorrow_morning(sqlite_url):
    alice = room(sqlite_url, utc(2026, 12, 2, 5, 30))  # Tue 01 Dec 21:30 PST
    reply = alice.say("!op log boarding at=33.74,-118.27 start=07:00 end=2h")
    assert "Wed 02 Dec 07:00 PST – 09:00 PST" in reply and "⚠" not in reply, reply


def test_a_past_start_needs_its_date_and_the_reply_says_it_is_in_the_past(sqlite_url):
    alice = room(sqlite_url, utc(2026, 12, 1, 11, 0))  # Tue 01 Dec 03:00 PST
    refused = alice.say("!op log boarding at=33.74,-118.27 start=02:00 end=2h")
    assert refused == ("⚠ start: 02:00 PST was 1 h ago; to log a start in the past give its date, "
                       "start=2026-12-01T02:00; for the coming one, start=2026-12-02T02:00")
    assert "No operations" in alice.say("!op list all") or "OP-" not in alice.say("!op list all")
    taken = alice.say("!op log boarding at=33.74,-118.27 start=2026-12-01T02:00 end=2h")
    assert taken.splitlines()[0].startswith("OP-1 logged:") and "Tue 01 Dec 02:00 PST – 04:00 PST" in taken
    assert "⚠ start: Tue 01 Dec 02:00 PST is in the past (1 h ago); taken as given" in taken.splitlines(), taken


def test_a_nomination_in_the_repeated_hour_says_which_one_it_took(sqlite_url):
    alice = room(sqlite_url, utc(2026, 11, 1, 3, 0))  # Sat 31 Oct 20:00 PDT
    reply = alice.say("!target nominate IMO9074729 eta=01:30 priority=high")
    assert "TGT-1 nominated" in reply and "ETA Sun 01 Nov 01:30 PDT" in reply, reply
    assert ("⚠ eta: 01:30 happens twice on Sun 01 Nov (clocks go back): took the first, 01:30 PDT; "
            "for 01:30 PST write eta=2026-11-01T01:30-08:00") in reply.splitlines(), reply
    later = alice.say("!target update TGT-1 eta=2026-11-01T01:30-08:00")
    assert "ETA Sun 01 Nov 01:30 PST" in later and "happens twice" not in later, later
