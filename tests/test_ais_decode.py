"""AIS sentences to reports: multi-part messages reassembled, times from tag blocks, bad lines counted."""
from __future__ import annotations

import pytest

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from pyais import encode_dict
from pyais.util import checksum, compute_checksum

from watchfloor.ioc.ais import (
    CHECKSUM, IGNORED, MALFORMED, OK, PART, UNKNOWN_TYPE, Decoder, PositionReport, StaticReport,
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


def test_a_second_part_without_its_first_makes_nothing_and_is_counted_an_orphan():
    d = Decoder()
    _, second = encode_dict(STATIC)
    assert d.feed(second, T0) == (PART, [])  # its first part may still come (parts arrive out of order)
    assert d.finish() == 1 and d.orphaned == 1  # it never did


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


# --- the field's forms (issue 23): every test below failed on the decoder before it read them -----------------

def checked(body: str, start: str = "!") -> str:
    """A sentence with its right checksum (pyais's `checksum` XORs the bytes given; `compute_checksum` would drop
    the first one, expecting the `!`)."""
    return f"{start}{body}*{checksum(body.encode()):02X}"


def tag_block(body: str) -> str:
    return f"\\{body}*{checksum(body.encode()):02X}\\"


def position(mmsi: int = 366123456, **fields) -> str:
    (line,) = encode_dict({"type": 1, "mmsi": mmsi, "lat": 33.5, "lon": -118.25, "speed": 12.5, "course": 45.0,
                           "heading": 44, **fields})
    return line


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# The Coast Guard's NAIS form, as noaadata's test_area_notice.py (schwehr/noaadata) parses it: station r003669976,
# time stamp 1166058609. The checksum covers the sentence alone.
NAIS = ("!AIVDM,1,1,,B,3018lEU000rA?L@>sp;8L5<>0000,0*26,x367022,s32171,d-079,T08.48347459,r003669976,"
        "1166058609")


def test_the_nais_form_is_read_and_takes_its_trailing_receive_time():
    outcome, (report,) = Decoder().feed(NAIS, T0)
    assert outcome == OK and isinstance(report, PositionReport)
    assert report.at == at(1166058609)
    assert (report.mmsi, round(report.lat, 4), round(report.lon, 4)) == ("001193046", 26.1018, -80.1197)
    # libais's own NAIS lines: the minimal form, a base station's `b…`, and the two-number form whose first
    # number is the receive time (the receiver's own t050056.00 agrees; libais's io.py asserts 1325394060)
    assert Decoder().feed("!SAVDM,1,1,,B,K8VSqb9LdU28WP8<,0*17,rMySat,1218999946", T0)[1][0].at == at(1218999946)
    line = ("!AIVDM,1,1,,A,15N1u<PP1FJuvSRHOE6QIwwh0HQ6,0*30,d-080,S2118,t050056.00,T56.4837741,r003669946,"
            "1325394060,1325394001")
    assert Decoder().feed(line, T0)[1][0].at == at(1325394060)
    # the checksum is still checked, on the sentence alone
    assert Decoder().feed(NAIS.replace("0*26", "0*27"), T0) == (CHECKSUM, [])


def test_a_nais_message_in_two_parts_keeps_its_station_and_time():
    """libais uscg_test.py testOneMultiLineMessage: EVER SAFETY bound for Los Angeles, 1429278777."""
    d = Decoder()
    first = ("!SAVDM,2,1,2,A,55@=M<02=rO7<Dm7B20EHE:1<4HEAV2222222217JQHQ:57c0Rk3lp0CQiC1,0*47,d-62,S2149,"
             "t135257.00,T57.311866,D11MN-LA-CATBS1,1429278777")
    second = "!SAVDM,2,2,2,A,Dp888888880,2*08,d-62,S2149,t135257.00,T57.311866,D11MN-LA-CATBS1,1429278777"
    assert d.feed(first, T0)[0] == PART
    outcome, (report,) = d.feed(second, T0)
    assert outcome == OK and report.at == at(1429278777)
    assert (report.mmsi, report.imo, report.name, report.call_sign, report.destination, report.ship_type) == (
        "352542000", "9300465", "EVER SAFETY", "3EMQ4", "LOS ANGELES", 71)
    assert report.eta == datetime(2015, 4, 15, 11, 0, tzinfo=UTC)


def test_gatehouse_lines_time_the_sentences_after_them():
    """pyais's timestamped.ais: a `$PGHP,1,2008,5,9,0,0,0,10,...` line, then the sentences it times."""
    d = Decoder()
    assert d.feed("$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17", T0) == (IGNORED, [])
    first = d.feed("!AIVDM,1,1,,B,15NBj>PP1gG>1PVKTDTUJOv00<0M,0*09", T0)[1][0]
    again = d.feed("!AIVDM,1,1,,A,16:=?;0P00`SstvFnFbeGH6L088h,0*44", T0)[1][0]
    assert first.at == again.at == datetime(2008, 5, 9, 0, 0, 0, 10_000, tzinfo=UTC)
    assert d.feed(checked("PGHP,1,2009,5,9,0,0,0,10,338,2,,1,09", "$"), T0) == (IGNORED, [])
    assert d.feed("!AIVDM,1,1,,A,16`l:v8P0W8Vw>fDVB0t8OvJ0H;9,0*0A", T0)[1][0].at.year == 2009
    # A Gatehouse line with a wrong checksum times nothing. The file's own 2009 line is one: a hand-edited copy
    # of the 2008 line that kept its checksum (17; its own is 16). pyais, which checks no Gatehouse checksum,
    # reads 2009 from it; we do not.
    assert d.feed("$PGHP,1,2009,5,9,0,0,0,10,338,2,,1,09*17", T0) == (CHECKSUM, [])
    d.feed("$PGHP,1,2008,5,9,0,0,0,10,338,2,,1,09*17", T0)
    assert d.feed("$PGHP,1,2010,5,9,0,0,0,10,338,2,,1,09*17", T0) == (CHECKSUM, [])
    assert d.feed("!AIVDM,1,1,,A,16`l:v8P0W8Vw>fDVB0t8OvJ0H;9,0*0A", T0)[1][0].at.year == 2008


def test_a_tag_block_group_gives_its_first_parts_time_to_every_part():
    """libais nmea_queue_test.py TAG_BLOCK: group 27300's second part carries no `c:`; the type 5 must not be
    dropped as an orphan (its second part taking the wall clock, years after the first)."""
    d = Decoder()
    first = ("\\g:1-2-27300,n:636994,s:b003669710,c:1428621738*5F\\!SAVDM,2,1,2,B,55Mw@A7J1adAL@?;7WPl58F0U<h4pB22"
             "2222220t1PN5553fN4g?`4iSp5Rc,0*26")
    second = "\\g:2-2-27300,n:636995*15\\!SAVDM,2,2,2,B,iP`88888880,2*5E"
    received_later = datetime(2026, 12, 1, tzinfo=UTC)
    assert d.feed(first, received_later)[0] == PART
    outcome, (report,) = d.feed(second, received_later)
    assert outcome == OK and isinstance(report, StaticReport) and report.at == at(1428621738)
    assert (report.mmsi, report.name) == ("366989380", "MARE ISLAND")


def test_any_talker_is_read():
    """libais uscg_test.py SINGLE_LINE_MESSAGES: base stations (`BS`, `AB`), satellites (`SA`), own ship (`VDO`)."""
    lines = ["!ABVDM,1,1,,A,35NJ5OPP@9qPECnA:O?QDI`8015Q,0*0F,b003669955,1429041003",
             "!BSVDM,1,1,,A,23?v;T002:G2hUFKhOP:JpHD0D0@,0*2A,b003669974,1428969792",
             "!ANVDM,1,1,,B,15N6CB0000r86SRFAS:<E@SH08Il,0*43,r08ACERDC,1429287223",
             "!SAVDM,1,1,7,B,18158j001ErSVGdE>>1Unlcp0l1n,0*44,d-105,S2235,t000059.00,T59.605270,D05MN-NC-MAMBS1,"
             "1428796799"]
    for line in lines:
        outcome, reports = Decoder().feed(line, T0)
        assert outcome == OK and isinstance(reports[0], PositionReport), line
    bare = position().replace("!AIVDM", "!XYVDO", 1)  # a talker nobody listed: still AIS
    bare = checked(bare[1:bare.rindex("*")])
    assert Decoder().feed(bare, T0)[0] == OK


def test_type_27_long_range_positions_are_positions():
    """libais nmea_queue_test.py: K8VSqb9LdU28WP8< is MMSI 577305000 at 29.145, -90.20667, SOG 0, COG 131."""
    outcome, (report,) = Decoder().feed("!SAVDM,1,1,,B,K8VSqb9LdU28WP8<,0*17", T0)
    assert outcome == OK and isinstance(report, PositionReport)
    assert (report.mmsi, round(report.lat, 5), round(report.lon, 5), report.sog, report.cog) == (
        "577305000", 29.145, -90.20667, 0.0, 131.0)
    # 63 kn and 511 degrees are its "not available"
    (na,) = encode_dict({"type": 27, "mmsi": 338000001, "lat": 33.5, "lon": -118.25, "speed": 63, "course": 511})
    report = Decoder().feed(na, T0)[1][0]
    assert (report.sog, report.cog) == (None, None)


def test_parts_arriving_out_of_order_are_reassembled():
    d = Decoder()
    first, second = encode_dict(STATIC, sentence_type="VDM")
    assert d.feed(second, T0) == (PART, [])
    outcome, (report,) = d.feed(first, T0 + timedelta(seconds=1))
    assert outcome == OK and report.name == "EVER GIVEN"
    assert report.at == T0 + timedelta(seconds=1)  # the first part's time


def test_a_duplicate_part_or_a_part_beyond_the_count_makes_no_message():
    d = Decoder()
    first, second = encode_dict(STATIC, sentence_type="VDM")
    assert d.feed(first, T0) == (PART, [])
    assert d.feed(first, T0) == (PART, [])  # part 1 again: the first copy's message lost its part 2
    assert d.orphaned == 1
    assert d.feed(second, T0)[0] == OK  # one message, from one part 1 and one part 2
    assert d.feed(second, T0) == (PART, [])  # a part 2 alone: no message
    body = second[1:second.rindex("*")].replace("!AIVDM,2,2,", "AIVDM,2,3,").replace("AIVDM,2,2,", "AIVDM,2,3,")
    assert d.feed(checked(body), T0)[0] == MALFORMED  # part 3 of 2
    assert d.finish() == 1


def test_an_empty_payload_is_counted_empty():
    """pyais's nmea_data_sample.txt (MarineTraffic) holds `!AIVDM,1,1,,B,,0*25`."""
    assert Decoder().feed("!AIVDM,1,1,,B,,0*25", T0) == ("empty", [])


def test_comments_and_blank_lines_are_skipped_not_malformed():
    d = Decoder()
    for line in ("# taken from https://www.aishub.net/ais-dispatcher", "", "   ", "#"):
        assert d.feed(line, T0) == ("skipped", [])


@pytest.mark.parametrize("fields, expected", [
    ({"lat": 91.0}, None), ({"lon": 181.0}, None), ({"lat": 91.0, "lon": 181.0}, None),
])
def test_position_not_available_is_not_a_position(fields, expected):
    outcome, reports = Decoder().feed(position(**fields), T0)
    assert reports == [] and outcome == IGNORED


def test_speed_course_and_heading_not_available_are_not_readings():
    report = Decoder().feed(position(speed=102.3), T0)[1][0]
    assert report.sog is None and report.cog == 45.0
    report = Decoder().feed(position(course=360.0), T0)[1][0]
    assert report.cog is None and report.sog == 12.5
    report = Decoder().feed(position(heading=511), T0)[1][0]
    assert report.heading is None
    (class_b,) = encode_dict({"type": 18, "mmsi": 338000001, "lat": 33.5, "lon": -118.25, "speed": 102.3,
                              "course": 360.0, "heading": 511})
    report = Decoder().feed(class_b, T0)[1][0]
    assert (report.sog, report.cog, report.heading) == (None, None, None)


@pytest.mark.parametrize("eta", [
    {"month": 0, "day": 2, "hour": 14, "minute": 30},
    {"month": 12, "day": 0, "hour": 14, "minute": 30},
    {"month": 12, "day": 2, "hour": 24, "minute": 30},
    {"month": 12, "day": 2, "hour": 14, "minute": 60},
    {"month": 12, "day": 2, "hour": 24, "minute": 60},
])
def test_an_eta_not_available_is_no_eta(eta):
    d = Decoder()
    first, second = encode_dict({**STATIC, **eta}, sentence_type="VDM")
    d.feed(first, T0)
    report = d.feed(second, T0)[1][0]
    assert report.name == "EVER GIVEN" and report.eta is None


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc", "", "1e400"])
def test_a_tag_time_nobody_can_read_is_malformed_never_a_crash(value):
    assert Decoder().feed(tag_block(f"c:{value}") + position(), T0) == (MALFORMED, [])
    assert Decoder().feed(f"{value or 'x'} " + position(), T0)[0] == MALFORMED


def test_tag_times_in_milliseconds_and_microseconds_are_read_as_such():
    d = Decoder()
    assert d.feed(tag_block("c:1796140800123") + position(), T0)[1][0].at == at(1796140800.123)
    assert d.feed(tag_block("c:1796140800123456") + position(), T0)[1][0].at == at(1796140800.123456)
    assert d.feed("1796140800123 " + position(), T0)[1][0].at == at(1796140800.123)


def test_an_overlong_line_is_malformed():
    line = tag_block("s:" + "x" * 1100) + position()
    assert Decoder().feed(line, T0) == (MALFORMED, [])
    assert Decoder().feed(tag_block("s:" + "x" * 900) + position(), T0)[0] == OK


# --- the time rules, as properties ------------------------------------------------------------------------------

SECONDS = st.integers(min_value=1_000_000_000, max_value=2_000_000_000)


@settings(deadline=None)  # a loaded machine is no failure
@given(tag=st.none() | SECONDS, nais=st.none() | SECONDS, gatehouse=st.none() | SECONDS, lead=st.none() | SECONDS)
def test_a_sentence_takes_its_time_from_the_first_source_it_has(tag, nais, gatehouse, lead):
    """Tag block, then NAIS trailer, then the last Gatehouse line, then a leading timestamp, then receipt."""
    d = Decoder()
    if gatehouse is not None:
        g = at(gatehouse)
        d.feed(checked(f"PGHP,1,{g.year},{g.month},{g.day},{g.hour},{g.minute},{g.second},0,338,2,,1,09", "$"), T0)
    line = position()
    if nais is not None:
        line += f",s22613,d-125,T48.04022115,r003669946,{nais}"
    if tag is not None:
        line = tag_block(f"s:r003669946,c:{tag}") + line
    if lead is not None:
        line = f"{lead} {line}"
    expected = next((t for t in (tag, nais, gatehouse, lead) if t is not None), None)
    outcome, (report,) = d.feed(line, T0)
    assert outcome == OK
    assert report.at == (at(expected) if expected is not None else T0)


@settings(deadline=None)  # a loaded machine is no failure
@given(first=SECONDS, parts=st.integers(min_value=2, max_value=4), later=st.lists(SECONDS, min_size=3, max_size=3),
       order=st.permutations(range(4)))
def test_every_part_of_a_group_takes_its_first_parts_time(first, parts, later, order):
    """Whatever times the later parts carry, or none, and whatever order the parts come in."""
    payload = "55Mw@A7J1adAL@?;7WPl58F0U<h4pB222222220t1PN5553fN4g?`4iSp5RciP`88888880"
    size = -(-len(payload) // parts)
    lines = []
    for k in range(1, parts + 1):
        chunk = payload[(k - 1) * size:k * size]
        fill = 2 if k == parts else 0
        tag = f"g:{k}-{parts}-42,s:b003669710,c:{first}" if k == 1 else \
            (f"g:{k}-{parts}-42,c:{later[k - 2]}" if later[k - 2] % 2 else f"g:{k}-{parts}-42")
        lines.append(tag_block(tag) + checked(f"SAVDM,{parts},{k},3,B,{chunk},{fill}"))
    d = Decoder()
    results = [d.feed(lines[i], T0) for i in [0] + [i for i in order if 0 < i < parts]]
    *held, (outcome, reports) = results
    assert all(r == (PART, []) for r in held)
    assert outcome == OK and [r.at for r in reports] == [at(first)]


@settings(deadline=None)  # a loaded machine is no failure
@given(times=st.lists(st.none() | SECONDS, min_size=1, max_size=12))
def test_a_line_without_a_time_of_its_own_is_never_stamped_before_the_last_timed_one(times):
    """A recording's clock: `recorded_at` is the last time a line carried, whatever came between."""
    d = Decoder()
    last = None
    for t in times:
        line = position() if t is None else tag_block(f"c:{t}") + position()
        report = d.feed(line, d.recorded_at or T0)[1][0]
        last = t if t is not None else last
        assert report.at == (at(last) if last is not None else T0)
        assert d.recorded_at == (at(last) if last is not None else None)
