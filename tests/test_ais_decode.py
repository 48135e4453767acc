"""AIS sentences to reports: multi-part messages reassembled, times from tag blocks, bad lines counted."""
from __future__ import annotations

import pytest

from datetime import UTC, datetime

from pyais import encode_dict
from pyais.util import compute_checksum

from watchfloor.ioc.ais import (
    CHECKSUM, IGNORED, MALFORMED, OK, ORPHAN, PART, UNKNOWN_TYPE, Decoder, PositionReport, StaticReport,
)

pytestmark = pytest.mark.calendar_free  # every decode is given its receive time

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
STATIC = {"type": 5, "mmsi": 366123456, "imo": 9074729, "callsign": "WDC1234", "shipname": "EVER GIVEN",
          "ship_type": 70, "destination": "USLAX", "month": 12, "day": 2, "hour": 14, "minute": 30}


def tag(unix: int) -> str:
    body = f"c:{unix}"
    return f"\\{body}*{compute_checksum(body):02X}\\"


def test_position_types_decode_to_positions():
    d = Decoder()
    for t in (1, 2, 3, 18, 19):
        msg = {"type": t, "mmsi": 366000000 + t, "lat": 33.5, "lon": -118.25, "speed": 12.5, "course": 45.0}
        if t == 19:
            msg["shipname"] = "SMALL"
        (line,) = encode_dict(msg, talker_id="AI", sentence_type="VDM")
        outcome, reports = d.feed(line, T0)
        pos = reports[0]
        assert outcome == OK and isinstance(pos, PositionReport)
        assert (pos.mmsi, round(pos.lat, 4), round(pos.lon, 4), pos.sog, pos.cog) == (
            f"{366000000 + t}", 33.5, -118.25, 12.5, 45.0)


def test_two_part_static_message_is_reassembled_with_its_eta():
    d = Decoder()
    first, second = encode_dict(STATIC, sentence_type="VDM")
    assert d.feed(first, T0) == (PART, [])
    outcome, (report,) = d.feed(second, T0)
    assert outcome == OK and isinstance(report, StaticReport)
    assert (report.imo, report.name, report.call_sign, report.destination) == (
        "9074729", "EVER GIVEN", "WDC1234", "USLAX")
    assert report.eta == datetime(2026, 12, 2, 14, 30, tzinfo=UTC)


def test_a_second_part_without_its_first_is_dropped():
    d = Decoder()
    _, second = encode_dict(STATIC)
    assert d.feed(second, T0) == (ORPHAN, [])


def test_type_24_parts_give_name_then_call_sign():
    d = Decoder()
    (a,) = encode_dict({"type": 24, "mmsi": 338000001, "partno": 0, "shipname": "SEA HAWK"})
    (b,) = encode_dict({"type": 24, "mmsi": 338000001, "partno": 1, "callsign": "WXY9", "ship_type": 37})
    assert d.feed(a, T0)[1][0].name == "SEA HAWK"
    assert d.feed(b, T0)[1][0].call_sign == "WXY9"


def test_bad_lines_have_an_outcome_and_no_report():
    d = Decoder()
    (good,) = encode_dict({"type": 1, "mmsi": 366123456, "lat": 1.0, "lon": 2.0, "speed": 3.0, "course": 4.0})
    bad_checksum = good[:-2] + ("00" if good[-2:] != "00" else "11")
    assert d.feed(bad_checksum, T0) == (CHECKSUM, [])
    for junk in ("garbage", "", "!AIVDM,1,1", "!AIVDM,x,y,,A,zz,0*00", "\x00\xff binary"):
        outcome, reports = d.feed(junk, T0)
        assert outcome != OK and reports == []
    assert d.feed("$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47", T0)[0] != OK
    assert d.feed(good[: len(good) // 2], T0)[0] in (MALFORMED, CHECKSUM)
    assert d.feed(good, T0)[0] == OK


def test_each_line_keeps_its_own_time():
    d = Decoder()
    (line,) = encode_dict({"type": 1, "mmsi": 366123456, "lat": 1.0, "lon": 2.0, "speed": 3.0, "course": 4.0})
    assert d.feed(tag(1796140800) + line, T0)[1][0].at == datetime.fromtimestamp(1796140800, UTC)
    assert d.feed("2026-12-01T10:00:00Z " + line, T0)[1][0].at == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert d.feed("1796140860.5 " + line, T0)[1][0].at == datetime.fromtimestamp(1796140860.5, UTC)
    assert d.feed(line, T0)[1][0].at == T0


def test_types_with_no_vessel_data_are_ignored_and_unknown_ones_told_apart():
    d = Decoder()
    (base_station,) = encode_dict({"type": 4, "mmsi": 3669999, "lon": -118.2, "lat": 33.7})
    assert d.feed(base_station, T0) == (IGNORED, [])
    # type 63 does not exist: a payload whose first six bits say so, with a valid checksum
    body = "!AIVDM,1,1,,A,w0000000000,0"
    assert d.feed(f"{body}*{compute_checksum(body):02X}", T0) == (UNKNOWN_TYPE, [])
