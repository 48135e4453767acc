"""The AIS hot path: tracks in memory, batched writes, one approach notice per entry, restart from storage."""
from __future__ import annotations

import pytest

import json
import re
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyais import encode_dict
from pyais.util import compute_checksum
from sqlmodel import select
from typer.testing import CliRunner

from tests.helpers import ConsoleUser, make_parts
from watchfloor.bot.cli import app
from watchfloor.commands.ais_ingest import AisIngest
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OutboxRow
from watchfloor.storage.vessel_tables import VesselPositionRow, VesselRow

LALB = get_zone("LALB")
JOINT = "matrix:!joint:localhost"
MMSI = 366123456


def _parts(url, clock=None):
    return make_parts(url, clock=clock, zone=[{"code": "LALB", "joint_rooms": [JOINT], "approach_nm": 30}],
                      agency=[{"code": "CBP", "members": ["console:alice"], "clearance": ["UNCLASS", "FOUO", "LES"]}])


def _pos(lat: float, at: datetime, mmsi: int = MMSI, speed: float = 12.0, course: float = 0.0) -> str:
    (line,) = encode_dict({"type": 1, "mmsi": mmsi, "lat": lat, "lon": LALB.lon, "speed": speed, "course": course})
    body = f"c:{int(at.timestamp())}"
    return f"\\{body}*{compute_checksum(body):02X}\\{line}"


def _notices(parts, room=None):
    with parts.db.session() as s:
        q = select(OutboxRow).where(OutboxRow.kind == "notice")
        if room:
            q = q.where(OutboxRow.room == room)
        return [json.loads(r.payload)["text"] for r in s.exec(q.order_by(OutboxRow.id)).all()]


def test_one_notice_per_entry_and_a_restart_resumes(sqlite_url, clock):
    parts = _parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    assert alice.say(f"!target nominate {MMSI} priority=high").startswith("TGT-1")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    t = clock.now
    # Sailing north toward LALB: 60 nm out, then into the 30 nm approach, then sitting inside for a while.
    for i, lat in enumerate([LALB.lat - 1.0, LALB.lat - 0.8, LALB.lat - 0.45, LALB.lat - 0.4, LALB.lat - 0.3]):
        feed.feed(_pos(lat, t + timedelta(minutes=10 * i)), t)
        if i == 0:
            feed.flush(t)  # the open target is known from here on
    for k in range(20):
        feed.feed(_pos(LALB.lat - 0.3, t + timedelta(minutes=60 + k), speed=0.1), t)
    assert feed.flush(t)["notices"] == 1
    texts = _notices(parts, JOINT)
    assert len(texts) == 1
    assert texts[0].startswith("⚓ TGT-1 MMSI 366123456 entered the LALB approach, 27 nm out, ETA ")
    assert "(AIS)" in texts[0] and "PST" in texts[0]
    # A restarted feed resumes from storage: the vessel is still inside, so no second notice.
    again = AisIngest(parts.db, parts.directory)
    assert again.resume() == 1
    again.feed(_pos(LALB.lat - 0.3, t + timedelta(hours=2)), t)
    assert again.flush(t)["notices"] == 0
    # Leaving and coming back is a new entry.
    again.feed(_pos(LALB.lat - 1.0, t + timedelta(hours=3)), t)
    again.feed(_pos(LALB.lat - 0.3, t + timedelta(hours=4)), t)
    again.flush(t)
    assert len(_notices(parts, JOINT)) == 2
    with parts.db.session() as s:
        row = s.get(VesselRow, str(MMSI))
        assert round(row.lat, 3) == round(LALB.lat - 0.3, 3)
        assert len(s.exec(select(VesselPositionRow)).all()) == 28


def test_a_marked_target_is_not_announced_in_an_uncleared_room(sqlite_url, clock):
    parts = _parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(f"!target nominate {MMSI} priority=high mark=LES")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    feed.feed(_pos(LALB.lat - 1.0, clock.now), clock.now)
    feed.flush(clock.now)
    feed.feed(_pos(LALB.lat - 0.2, clock.now + timedelta(minutes=5)), clock.now)
    assert feed.flush(clock.now)["notices"] == 1
    assert _notices(parts, JOINT) == []  # the joint room is cleared for UNCLASS only
    with parts.db.session() as s:
        console = s.exec(select(OutboxRow).where(OutboxRow.kind == "notice", OutboxRow.room == "console:LALB")).one()
    variants = json.loads(console.payload)["by_clearance"]
    assert "TGT-1" in variants["FOUO,LES,UNCLASS"]["text"] and "[LES]" in variants["FOUO,LES,UNCLASS"]["text"]
    assert variants["UNCLASS"]["text"] == "" and variants["FOUO,UNCLASS"]["text"] == ""


def test_import_ais_reads_nmea_logs_and_the_archive_csv(tmp_path, sqlite_url):
    t = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    lines = [_pos(LALB.lat - 2 + i * 0.1, t + timedelta(minutes=i)) for i in range(5)]
    lines += ["2026-12-01T10:10:00Z " + s for s in encode_dict(
        {"type": 5, "mmsi": MMSI, "imo": 9074729, "shipname": "EVER GIVEN", "destination": "USLAX"})]
    lines += ["garbage", lines[0][:-2] + "00"]
    nmea = tmp_path / "feed.nmea"
    nmea.write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["import", "ais", str(nmea), "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    assert "read 9 records" in out.output and "5 positions, 1 vessel tracked" in out.output
    assert "dropped 2 (checksum 1, malformed 1)" in out.output
    archive = tmp_path / "AIS_2026_12_01.csv"
    archive.write_text("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign,VesselType,Status\n"
                       "538001234,2026-12-01T10:00:00,33.10,-118.30,11.5,10.0,511,PACIFIC DAWN,IMO9074729,V7AB3,70,0\n"
                       "538001234,2026-12-01T10:05:00,33.12,-118.29,11.6,10.0,9,PACIFIC DAWN,IMO9074729,V7AB3,70,0\n")
    out = CliRunner().invoke(app, ["import", "ais", str(archive), "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    parts = _parts(sqlite_url)
    with parts.db.session() as s:
        ever = s.get(VesselRow, str(MMSI))
        dawn = s.get(VesselRow, "538001234")
        assert (ever.name, ever.imo, ever.destination) == ("EVER GIVEN", "9074729", "USLAX")
        assert ever.position_at.astimezone(UTC) == t + timedelta(minutes=4)  # the record's own time
        assert (dawn.name, dawn.call_sign, round(dawn.lat, 2), dawn.heading) == ("PACIFIC DAWN", "V7AB3", 33.12, 9)


def test_a_gap_opens_when_the_ship_speeds_up_and_closes_when_it_turns_away(sqlite_url, clock):
    parts = _parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(f"!target nominate {MMSI} priority=high eta=+48h")
    assert "CF-" not in alice.say("!conflicts")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    far = LALB.lat - 200 / 60  # 200 nm south

    def report(speed, course):
        clock.advance(minutes=1)
        feed.feed(_pos(far, clock.now, speed=speed, course=course), clock.now)
        feed.flush(clock.now)

    report(5, 0)  # 40 h out at 5 kn: outside the 24 h window
    assert "CF-" not in alice.say("!conflicts")
    report(12, 0)  # 17 h out at 12 kn: nobody covers it
    listing = alice.say("!conflicts")
    assert "CF-1 gap" in listing
    assert "(AIS, 200 nm at 12 kn)" in listing  # the listing shows the ETA that opened the gap, not the typed one
    # The briefing's conflict section, like its arrivals, gives the gap's ETA with its source.
    assert "(AIS, 200 nm at 12 kn) · nominated by CBP — nobody is covering it" in alice.say("!brief now")
    from watchfloor.commands.conflicts_scan import scan_and_list

    assert "(AIS, 200 nm at 12 kn) not covered" in scan_and_list(parts.engine, "LALB")[0]  # `conflicts scan`
    report(12, 180)  # turned away: no AIS ETA, the typed 48 h counts again
    assert "CF-1" not in alice.say("!conflicts")
    with parts.db.session() as s:
        alerts = [json.loads(r.payload)["text"] for r in s.exec(
            select(OutboxRow).where(OutboxRow.kind == "alert").order_by(OutboxRow.id)).all()]
    raised = next(a for a in alerts if "CF-1" in a and "the AIS feed" in a)
    assert "(AIS, 200 nm at 12 kn)" in raised  # the alert says which ETA opened the gap, and its source


@pytest.mark.calendar_free
def test_tracks_answer_to_a_name_only_when_one_track_has_it():
    from datetime import UTC, datetime

    from watchfloor.ioc.reports import StaticReport
    from watchfloor.ioc.tracks import Tracks

    at = datetime(2026, 12, 1, tzinfo=UTC)
    tracks = Tracks()
    tracks.apply(StaticReport("366000001", at, name="EVER GIVEN"))
    assert tracks.mmsi_of("name:ever-given") == "366000001"
    tracks.apply(StaticReport("366000002", at, name="EVER GIVEN"))
    assert tracks.mmsi_of("name:EVER GIVEN") is None  # two ships of that name: neither
    tracks.apply(StaticReport("366000002", at, name="EVER GREEN"))  # renamed: the name is one ship's again
    assert tracks.mmsi_of("name:EVER GIVEN") == "366000001"
    assert tracks.mmsi_of("name:EVER GREEN") == "366000002"


# --- time: a report from the future, order of arrival ----------------------------------------------------------

def _outcomes(feed) -> dict[str, int]:
    """What the feed counted (the figures `watchfloor_ais_sentences_total{outcome}` and the import summary get)."""
    seen: dict[str, int] = {}
    feed.on_outcome = lambda outcome, n: seen.__setitem__(outcome, seen.get(outcome, 0) + n)
    return seen


def test_a_report_stamped_in_the_future_is_dropped_and_counted_and_never_freezes_the_track(sqlite_url, clock):
    """A receiver whose clock says 2100: its report neither becomes the latest position (an older report never
    replaces a newer one, so it would stay forever), nor counts as fresh, nor gives an ETA that beats the typed one."""
    parts = _parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say(f"!target nominate {MMSI} priority=high eta=+48h")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    counted = _outcomes(feed)
    year_2100 = datetime(2100, 1, 1, tzinfo=UTC)
    # 14 nm out at 12 kn: were it believed, a fresh AIS ETA (in 2100) would beat the typed one for 74 years.
    first = feed.feed(_pos(LALB.lat - 14 / 60, year_2100), clock.now)
    feed.flush(clock.now)
    assert "(typed)" in alice.say("!target show TGT-1") and "CF-" not in alice.say("!conflicts")
    clock.advance(minutes=1)
    feed.feed(_pos(LALB.lat - 200 / 60, clock.now, speed=5), clock.now)  # the ship's real report: 200 nm out
    feed.flush(clock.now)
    with parts.db.session() as s:
        row = s.get(VesselRow, str(MMSI))
        assert row.position_at.astimezone(UTC) == clock.now and round(row.lat, 2) == round(LALB.lat - 200 / 60, 2)
    assert "(AIS, 200 nm at 5 kn)" in alice.say("!target show TGT-1")
    assert first == "future" and counted.get("future") == 1 and counted.get("ok") == 1


def test_a_track_stored_with_a_future_time_is_not_frozen_by_it(sqlite_url, clock):
    """A database written before future stamps were refused: the stored time from 2100 does not hold the track."""
    parts = _parts(sqlite_url, clock)
    with parts.db.session() as s:
        s.add(VesselRow(mmsi=str(MMSI), name="EVER GIVEN", lat=LALB.lat, lon=LALB.lon, sog=12.0, cog=0.0,
                        position_at=datetime(2100, 1, 1, tzinfo=UTC), static_at=datetime(2100, 1, 1, tzinfo=UTC),
                        updated_at=clock.now))
        s.commit()
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    feed.feed(_pos(LALB.lat - 1.0, clock.now), clock.now)
    for line in encode_dict({"type": 5, "mmsi": MMSI, "imo": 9074729, "shipname": "EVER GREEN"}):
        feed.feed(line, clock.now)
    feed.flush(clock.now)
    with parts.db.session() as s:
        row = s.get(VesselRow, str(MMSI))
        assert row.position_at.astimezone(UTC) == clock.now and round(row.lat, 2) == round(LALB.lat - 1.0, 2)
        assert (row.name, row.imo) == ("EVER GREEN", "9074729")


def test_import_ais_drops_an_archive_row_from_the_future_and_says_so(tmp_path, sqlite_url):
    now = datetime.now(UTC).replace(microsecond=0)
    rows = [(now - timedelta(minutes=10), 33.10), (now + timedelta(days=365 * 73), 33.50)]  # the second: 2099-ish
    archive = tmp_path / "AIS_archive.csv"
    archive.write_text("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign,VesselType,Status\n" + "".join(
        f"538001234,{at.replace(tzinfo=None).isoformat()},{lat},-118.30,11.5,10.0,511,PACIFIC DAWN,,,70,0\n"
        for at, lat in rows))
    out = CliRunner().invoke(app, ["import", "ais", str(archive), "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    assert "dropped 1 (future 1)" in out.output and re.search(r"\b1 positions?\b", out.output)
    parts = _parts(sqlite_url)
    with parts.db.session() as s:
        row = s.get(VesselRow, "538001234")
        assert row.position_at.astimezone(UTC) == rows[0][0] and round(row.lat, 2) == 33.10


def _static(at: datetime, mmsi: int = MMSI, imo: int = 9074729, name: str = "EVER GIVEN") -> list[str]:
    body = f"c:{int(at.timestamp())}"
    tag = f"\\{body}*{compute_checksum(body):02X}\\"
    return [tag + s for s in encode_dict({"type": 5, "mmsi": mmsi, "imo": imo, "shipname": name,
                                          "destination": "USLAX"})]


def _nominated_by_imo_and_heard_outside(url, clock):
    """A target nominated by IMO9074729 in LALB, and its ship (by MMSI only) heard 60 nm out a minute later."""
    parts = _parts(url, clock)
    ConsoleUser(parts, "LALB", "alice", "CBP").say("!target nominate IMO9074729 priority=high")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    t = clock.now
    feed.feed(_pos(LALB.lat - 1.0, t + timedelta(minutes=1)), t)
    return parts, feed, t


def test_identity_learnt_after_the_positions_the_target_follows_and_its_unannounced_entry_is_posted(sqlite_url,
                                                                                                    clock):
    """Nominated by IMO; the ship's positions (by MMSI) come first, its type 5 (the IMO) later: by then it is
    already inside the approach area, an entry nobody was told of. The notice goes out then, once."""
    parts, feed, t = _nominated_by_imo_and_heard_outside(sqlite_url, clock)
    feed.flush(t)
    feed.feed(_pos(LALB.lat - 0.4, t + timedelta(minutes=10)), t)  # into the 30 nm approach, nobody knows whose
    feed.flush(t)
    assert _notices(parts, JOINT) == []
    for line in _static(t + timedelta(minutes=12)):
        feed.feed(line, t)
    feed.flush(t)
    texts = _notices(parts, JOINT)
    assert len(texts) == 1 and texts[0].startswith("⚓ TGT-1 EVER GIVEN entered the LALB approach, 24 nm out")
    for k in range(3):  # sitting inside: no second notice for the same entry
        feed.feed(_pos(LALB.lat - 0.35, t + timedelta(minutes=20 + k)), t)
        feed.flush(t)
    assert len(_notices(parts, JOINT)) == 1


def test_a_crossing_right_after_the_target_is_linked_is_announced(sqlite_url, clock):
    """The ship's IMO is learnt and written, and the very next position is the crossing."""
    parts, feed, t = _nominated_by_imo_and_heard_outside(sqlite_url, clock)
    for line in _static(t + timedelta(minutes=2)):
        feed.feed(line, t)
    feed.flush(t)
    feed.feed(_pos(LALB.lat - 0.4, t + timedelta(minutes=10)), t)
    feed.flush(t)
    assert [x.split(",")[0] for x in _notices(parts, JOINT)] == ["⚓ TGT-1 EVER GIVEN entered the LALB approach"]


@pytest.mark.parametrize("zone_followed", [False, True], ids=["first target in the zone", "zone already followed"])
def test_a_vessel_already_inside_when_it_became_a_target_is_not_announced_until_it_enters_again(sqlite_url, clock,
                                                                                               zone_followed):
    """It entered before anyone targeted it: no notice when it is nominated, nor at its next reports; leaving and
    coming back in is an entry. (With another target open in the zone its entry time is known, and is before the
    nomination; without, the zone's area was not followed and the time is unknown: neither is announced.)"""
    parts = _parts(sqlite_url, clock)
    if zone_followed:
        ConsoleUser(parts, "LALB", "bob", "CBP").say("!target nominate 366999999 priority=low")
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    t = clock.now
    feed.feed(_pos(LALB.lat - 1.0, t), t)
    feed.feed(_pos(LALB.lat - 0.4, t + timedelta(minutes=5)), t)  # entered, untargeted
    feed.flush(t)
    clock.advance(minutes=10)
    ConsoleUser(parts, "LALB", "alice", "CBP").say(f"!target nominate {MMSI} priority=high")
    for k in range(3):
        feed.feed(_pos(LALB.lat - 0.35, clock.now + timedelta(minutes=k)), clock.now)
        feed.flush(clock.now)
    assert _notices(parts, JOINT) == []
    feed.feed(_pos(LALB.lat - 1.0, clock.now + timedelta(minutes=30)), clock.now)
    feed.feed(_pos(LALB.lat - 0.4, clock.now + timedelta(minutes=60)), clock.now)
    feed.flush(clock.now)
    assert len(_notices(parts, JOINT)) == 1


def test_import_ais_of_a_ship_speeding_into_the_window_opens_its_gap(tmp_path, sqlite_url, clock):
    """Nominated by IMO with a typed ETA two days out; a recording in which the ship speeds up to arrive within 24
    hours, and only then says who it is (its type 5, with the IMO): after the import the gap is open, with the AIS
    ETA that opened it."""
    parts = _parts(sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9074729 priority=high eta=+48h")
    far = LALB.lat - 200 / 60
    t = clock.now - timedelta(minutes=5)
    lines = [_pos(far, t + timedelta(minutes=1), speed=5), _pos(far, t + timedelta(minutes=2), speed=12)]
    lines += _static(t + timedelta(minutes=3))
    nmea = tmp_path / "recorded.nmea"
    nmea.write_text("\n".join(lines) + "\n")
    out = CliRunner().invoke(app, ["import", "ais", str(nmea), "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    assert "(AIS, 200 nm at 12 kn)" in alice.say("!target show TGT-1")
    listing = alice.say("!conflicts")
    assert "CF-1 gap" in listing and "(AIS, 200 nm at 12 kn)" in listing


# --- memory: bounded by what was heard lately ------------------------------------------------------------------

def test_vessels_silent_for_retain_days_leave_memory_and_a_cap_evicts_the_longest_silent(sqlite_url, clock):
    parts = _parts(sqlite_url, clock)
    feed = AisIngest(parts.db, parts.directory, retain=timedelta(days=7), clock=lambda: clock.now + timedelta(days=8, hours=1))
    feed.resume()
    t = clock.now
    for line in _static(t, mmsi=366000001, name="OLD TIMER"):
        feed.feed(line, t)
    for m in (366000001, 366000002, 366000003):
        feed.feed(_pos(LALB.lat - 2, t, mmsi=m), t)
    feed.flush(t)
    later = t + timedelta(days=8)
    feed.feed(_pos(LALB.lat - 2, later, mmsi=366000003), later)
    feed.flush(later)
    assert set(feed.tracks.by_mmsi) == {"366000003"}
    assert set(feed._history_at) <= {"366000003"} and not feed.tracks.by_imo and not feed.tracks.by_name
    assert feed.evicted["retain"] == 2
    # Its stored row is kept (latest position and static data always are); heard again, it is known again.
    feed.feed(_pos(LALB.lat - 1.9, later + timedelta(minutes=1), mmsi=366000001), later)
    feed.flush(later)
    feed.flush(later)
    with parts.db.session() as s:
        assert (s.get(VesselRow, "366000001").name, s.get(VesselRow, "366000002").name) == ("OLD TIMER", None)
    assert feed.tracks.get("366000001").name == "OLD TIMER" and feed.tracks.mmsi_of("imo:9074729") == "366000001"
    # A flood of new MMSIs: past the cap, the longest silent leave first, counted.
    feed.max_tracks = 4
    for i in range(6):
        feed.feed(_pos(LALB.lat - 2, later + timedelta(minutes=2 + i), mmsi=366100000 + i), later)
    feed.flush(later)
    assert len(feed.tracks) <= 4 and "366100005" in feed.tracks.by_mmsi
    assert feed.evicted["cap"] == 8 - len(feed.tracks)


# --- the time rules, as properties -------------------------------------------------------------------------------

T0 = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def _bare_ingest(now: datetime) -> AisIngest:
    """An ingest that is never written (no database): for what happens in memory."""
    from watchfloor.commands.directory import Directory
    from watchfloor.config import load_settings

    return AisIngest(None, Directory(load_settings(None, zone=[{"code": "LALB"}])), clock=lambda: now)


@pytest.mark.calendar_free
@settings(max_examples=300, deadline=None)
@given(offsets=st.lists(st.integers(-86_400, 100 * 365 * 86_400), min_size=1, max_size=8, unique=True))
def test_a_report_is_believed_up_to_five_minutes_ahead_and_never_beyond(offsets):
    """Whatever the order: the track's time is the latest report no more than 5 minutes ahead of the time it is
    processed; every report further ahead is counted `future`, none of them ever held."""
    from watchfloor.ioc.reports import PositionReport

    feed = _bare_ingest(T0)
    for i, off in enumerate(offsets):
        feed.outcomes["ok"] += 1
        feed.apply([PositionReport(str(MMSI), T0 + timedelta(seconds=off), 33.0 + i / 100, -118.0, 10.0, 0.0)])
    believed = [o for o in offsets if o <= 300]
    track = feed.tracks.get(str(MMSI))
    assert (track.position_at if track else None) == (T0 + timedelta(seconds=max(believed)) if believed else None)
    assert feed.outcomes["future"] == len(offsets) - len(believed)
    assert feed.outcomes["ok"] == len(believed)


@pytest.mark.calendar_free
@settings(max_examples=300, deadline=None)
@given(times=st.lists(st.integers(0, 10_000), min_size=1, max_size=8, unique=True), data=st.data())
def test_an_older_report_never_replaces_a_newer_one_in_any_order(times, data):
    """Positions and static data: whatever order the reports come in, the track ends as the newest says."""
    from watchfloor.ioc.reports import PositionReport, StaticReport

    reports = [PositionReport(str(MMSI), T0 + timedelta(seconds=t), 33.0 + t / 1e5, -118.0, t % 20, 0.0)
               for t in times]
    reports += [StaticReport(str(MMSI), T0 + timedelta(seconds=t), name=f"NAME {t}", destination=f"PORT {t}")
                for t in times]
    order = data.draw(st.permutations(reports))
    feed = _bare_ingest(T0 + timedelta(days=1))
    feed.apply(order)
    track, newest = feed.tracks.get(str(MMSI)), max(times)
    assert track.position_at == T0 + timedelta(seconds=newest) and track.lat == 33.0 + newest / 1e5
    assert (track.name, track.destination) == (f"NAME {newest}", f"PORT {newest}")
    assert feed.tracks.mmsi_of(f"name:NAME {newest}") == str(MMSI)


@pytest.fixture(scope="module")
def order_world(tmp_path_factory):
    """One database for every example: LALB (a 30 nm approach) already followed, through another open target."""
    from tests.conftest import Clock

    clock = Clock()
    parts = _parts(f"sqlite:///{tmp_path_factory.mktemp('order') / 'wf.db'}", clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate 366999999 priority=low")
    feed = AisIngest(parts.db, parts.directory, clock=lambda: clock.now + timedelta(hours=1))
    feed.resume()
    yield parts, alice, feed, clock, iter(range(1, 10_000))
    parts.db.dispose()


def _imo(base: int) -> str:
    digits = f"{base:06d}"
    return digits + str(sum(int(d) * w for d, w in zip(digits, range(7, 1, -1))) % 10)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_order_of_identity_positions_and_flushes_does_not_change_the_notice(order_world, data):
    """Nominated by IMO; the ship sails into the approach. Its type 5 (the IMO) comes before, between or after
    its positions, and the feed writes at any moment: the entry is announced exactly once."""
    parts, alice, feed, clock, serial = order_world
    k = next(serial)
    mmsi, imo = 367000000 + k, _imo(900_000 + k)
    clock.advance(hours=1)
    assert alice.say(f"!target nominate IMO{imo} priority=high").startswith("TGT-")
    t = clock.now
    positions = [_pos(LALB.lat - 1.0, t + timedelta(minutes=1), mmsi=mmsi),   # outside
                 _pos(LALB.lat - 0.4, t + timedelta(minutes=10), mmsi=mmsi),  # the crossing
                 _pos(LALB.lat - 0.35, t + timedelta(minutes=11), mmsi=mmsi)]
    static = _static(t + timedelta(minutes=data.draw(st.integers(0, 20))), mmsi=mmsi, imo=int(imo), name=f"SHIP {k}")
    events = list(positions)
    events.insert(data.draw(st.integers(0, len(events))), "static")
    for _ in range(data.draw(st.integers(0, 3))):
        events.insert(data.draw(st.integers(0, len(events))), "flush")
    for e in events + ["flush", "flush"]:
        if e == "flush":
            feed.flush(clock.now)
        else:
            for line in (static if e == "static" else [e]):
                feed.feed(line, clock.now)
    mine = [x for x in _notices(parts, JOINT) if f"SHIP {k} entered" in x]
    assert len(mine) == 1, (events, mine)


def test_an_unexpected_decoder_failure_is_counted_and_the_import_goes_on(sqlite_url, clock):
    """`import ais` and the tests drive the ingest's own decoder: a line it fails on in a way nobody foresaw is
    counted malformed, and the lines after it are read."""
    parts = _parts(sqlite_url, clock)
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    real = feed.decoder

    class Choking:
        def feed(self, line, received):
            if "BOOM" in str(line):
                raise RecursionError("an unforeseen failure inside the decoder")
            return real.feed(line, received)

    feed._decoder = Choking()
    outcomes = [feed.feed(x, clock.now) for x in (_pos(33.0, clock.now), "BOOM", _pos(33.1, clock.now, mmsi=366000002))]
    assert outcomes == ["ok", "malformed", "ok"] and len(feed.tracks) == 2
