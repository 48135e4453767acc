"""Typed values: times in the zone's time zone, durations, radii, positions, vessel ids; zone-local display."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchfloor.commands.errors import CommandError
from watchfloor.commands.values import parse_duration, parse_end, parse_position, parse_radius, parse_time, parse_vessel_field
from watchfloor.ioc.vessels import imo_check_ok
from watchfloor.ioc.zones import get_zone
from watchfloor.templates import localtime
from tests.helpers import ConsoleUser, make_parts

LA = get_zone("LALB").tz
NOW = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 07:00 PST


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


@pytest.mark.parametrize("raw,expected", [
    ("2026-12-01T14:00", utc(2026, 12, 1, 22, 0)),          # zone local, PST = UTC-8
    ("2026-07-01T14:00", utc(2026, 7, 1, 21, 0)),           # PDT = UTC-7
    ("2026-12-01 14:00", utc(2026, 12, 1, 22, 0)),
    ("2026-12-01T22:00Z", utc(2026, 12, 1, 22, 0)),
    ("2026-12-01T14:00-05:00", utc(2026, 12, 1, 19, 0)),
    ("14:00", utc(2026, 12, 1, 22, 0)),                     # zone local, nearest to now (7 h ahead)
    ("0930", utc(2026, 12, 1, 17, 30)),
    ("+2h", NOW + timedelta(hours=2)),
    ("+30m", NOW + timedelta(minutes=30)),
    ("now", NOW),
])
@pytest.mark.calendar_free
def test_times(raw, expected):
    assert parse_time("start", raw, LA, NOW) == expected


@pytest.mark.parametrize("raw,reason", [
    ("2026-03-08T02:30", "start: 2026-03-08 02:30 does not exist in America/Los_Angeles (clocks go forward)"),
    ("tomorrow", "start: 'tomorrow' is not a time"),
    ("25:00", "start: '25:00' is not a time"),
    ("1999-01-01T00:00", "start: year must be between 2000 and 2100"),
    ("+0h", "start: duration must be longer than zero"),
    ("", "start: is empty"),
])
@pytest.mark.calendar_free
def test_bad_times_name_the_field(raw, reason):
    with pytest.raises(CommandError) as e:
        parse_time("start", raw, LA, NOW)
    assert e.value.line.startswith(reason)


@pytest.mark.calendar_free
def test_spring_forward_gap_is_refused_but_the_hour_after_is_fine():
    assert parse_time("start", "2026-03-08T03:00", LA, NOW) == utc(2026, 3, 8, 10, 0)
    with pytest.raises(CommandError):
        parse_time("start", "2026-03-08T02:00", LA, NOW)
    # New York's gap is at the same wall time on the same day; Honolulu has none
    with pytest.raises(CommandError):
        parse_time("start", "2026-03-08T02:30", get_zone("NY").tz, NOW)
    assert parse_time("start", "2026-03-08T02:30", get_zone("HON").tz, NOW) == utc(2026, 3, 8, 12, 30)


@pytest.mark.calendar_free
@pytest.mark.parametrize("raw,delta", [("2h", timedelta(hours=2)), ("90m", timedelta(minutes=90)),
                                       ("1h30m", timedelta(minutes=90)), ("45min", timedelta(minutes=45)),
                                       ("1d", timedelta(days=1))])
def test_end_durations_count_from_start(raw, delta):
    start = utc(2026, 12, 1, 22, 0)
    assert parse_end(raw, start, LA, NOW) == start + delta
    assert parse_duration("end", raw) == delta


@pytest.mark.calendar_free
def test_end_as_a_time():
    assert parse_end("2026-12-01T17:00", utc(2026, 12, 1, 22), LA, NOW) == utc(2026, 12, 2, 1, 0)
    assert parse_end("17:00", utc(2026, 12, 1, 22), LA, NOW) == utc(2026, 12, 2, 1, 0)
    with pytest.raises(CommandError) as e:
        parse_end("2 hours", utc(2026, 12, 1, 22), LA, NOW)
    assert e.value.field == "end"


@pytest.mark.parametrize("raw,meters", [("500m", 500), ("2km", 2000), ("1nm", 1852), ("1.5NM", 2778),
                                        ("750", 750), ("0.5km", 500), ("200km", 200_000)])
def test_radius_units(raw, meters):
    assert parse_radius(raw, 200_000) == pytest.approx(meters)


@pytest.mark.parametrize("raw,reason", [("0", "must be greater than zero"), ("201km", "must be at most 200 km"),
                                        ("-1km", "is not a distance"), ("2 miles", "is not a distance"),
                                        ("km", "is not a distance")])
def test_bad_radius(raw, reason):
    with pytest.raises(CommandError) as e:
        parse_radius(raw, 200_000)
    assert e.value.field == "radius" and reason in e.value.reason


def test_positions():
    assert parse_position("33.74,-118.27") == (33.74, -118.27)
    assert parse_position(" -90 , 180 ") == (-90.0, 180.0)
    for raw, reason in [("95,0", "latitude 95 is out of range (-90 to 90)"),
                        ("0,-181", "longitude -181 is out of range (-180 to 180)"),
                        ("nan,0", "must be finite numbers"), ("33.74", "must be LAT,LON"),
                        ("a,b", "must be LAT,LON"), ("1,2,3", "must be LAT,LON")]:
        with pytest.raises(CommandError) as e:
            parse_position(raw)
        assert e.value.line.startswith(f"at: {reason}"), raw


@given(st.floats(-90, 90), st.floats(-180, 180))
def test_every_valid_position_parses_back(lat, lon):
    assert parse_position(f"{lat!r},{lon!r}") == (lat, lon)


def test_vessels():
    assert parse_vessel_field("IMO9074729", False).key == "imo:9074729"
    assert parse_vessel_field("imo 9074729", False).key == "imo:9074729"
    assert parse_vessel_field("366123456", False).key == "mmsi:366123456"
    assert parse_vessel_field("EVER GIVEN", True).key == "name:EVER GIVEN"
    assert parse_vessel_field("366123456", True).kind == "name"   # quoted: a name, even if digits
    assert parse_vessel_field("Maersk1", False).kind == "name"
    for raw, line in [("12345", "vessel: MMSI must be 9 digits"), ("3661234567", "vessel: MMSI must be 9 digits"),
                      ("IMO9074728", "vessel: IMO9074728 has a wrong check digit"),
                      ("IMO123", "vessel: IMO number must be IMO followed by 7 digits")]:
        with pytest.raises(CommandError) as e:
            parse_vessel_field(raw, False)
        assert e.value.line == line


def test_bare_seven_digits_with_a_valid_check_digit_are_taken_for_an_imo_number_and_say_how_to_write_it():
    with pytest.raises(CommandError) as e:
        parse_vessel_field("9074729", False)
    assert e.value.line == "vessel: 9074729 looks like an IMO number; write it IMO9074729"
    for raw in ("9074728", "1234568", "12345678"):   # wrong check digit, or not 7 digits: still an MMSI
        with pytest.raises(CommandError) as e:
            parse_vessel_field(raw, False)
        assert e.value.line == "vessel: MMSI must be 9 digits", raw


def test_a_bare_imo_number_in_a_nomination_is_refused_with_the_way_to_write_it(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    assert alice.say("!target nominate 9074729 priority=high") == (
        "⚠ vessel: 9074729 looks like an IMO number; write it IMO9074729")
    assert "No targets." in alice.say("!target list")
    assert "TGT-1 nominated" in alice.say("!target nominate IMO9074729 priority=high")


@given(st.text("0123456789", min_size=6, max_size=6))
def test_for_any_six_digits_exactly_one_check_digit_is_valid(six):
    valid = [d for d in "0123456789" if imo_check_ok(six + d)]
    assert len(valid) == 1
    assert parse_vessel_field(f"IMO{six}{valid[0]}", False).key == f"imo:{six}{valid[0]}"


@pytest.mark.parametrize("zone,when,abbr", [
    ("LALB", utc(2026, 12, 1, 22), "14:00 PST"), ("LALB", utc(2026, 7, 1, 21), "14:00 PDT"),
    ("NY", utc(2026, 7, 1, 18), "14:00 EDT"), ("NY", utc(2026, 12, 1, 19), "14:00 EST"),
    ("GUAM", utc(2026, 12, 1, 4), "14:00 ChST"), ("HON", utc(2026, 12, 2, 0), "14:00 HST"),
    ("SJ", utc(2026, 12, 1, 18), "14:00 AST"),
])
def test_zone_local_display_with_abbreviation(zone, when, abbr):
    assert localtime(when, get_zone(zone).tz).endswith(abbr)


def test_alaska_shows_akst_in_a_reply(sqlite_url, clock):
    code = "ANC"
    parts = make_parts(sqlite_url, clock)
    u = ConsoleUser(parts, code, "kai", "USCG")
    z = get_zone(code)
    reply = u.say(f"!op log patrol at={z.lat},{z.lon} start=2026-12-01T14:00 end=1h")
    assert "14:00 AKST – 15:00 AKST" in reply, reply


def test_guam_reply_in_chst(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock)
    reply = ConsoleUser(parts, "GUAM", "ana", "USCG").say(
        "!op log patrol at=13.44,144.65 start=2026-12-02T09:00 end=90m")
    assert "09:00 ChST – 10:30 ChST" in reply, reply
