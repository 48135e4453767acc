"""`vessel` and `arrivals` in chat: AIS position and ETA with its source, notices of arrival, CDC flagged."""
from __future__ import annotations

import json

from pyais import encode_dict
from sqlmodel import select

from tests.helpers import ConsoleUser, make_parts
from watchfloor.bot.cli.demo import seed
from watchfloor.commands.ais_ingest import AisIngest
from watchfloor.commands.vessel_import import import_noa
from watchfloor.ioc.zones import get_zone
from watchfloor.storage.tables import OutboxRow

LALB = get_zone("LALB")
NOA = ("vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted\n"
       "EVER GIVEN,IMO9074729,366123456,WDC1234,Panama,+40h,Shanghai,no,25,\n"
       "GAS CARRIER,IMO9319466,,C6AB2,Bahamas,+60h,Ulsan,yes,18,\n")


def _setup(tmp_path, sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    noa = tmp_path / "noa.csv"
    noa.write_text(NOA)
    import_noa(parts.db, noa, LALB, clock.now)
    feed = AisIngest(parts.db, parts.directory)
    # 14 nm south of the sector at 12 kn, heading north: ETA in 70 minutes.
    for line in encode_dict({"type": 1, "mmsi": 366123456, "lat": LALB.lat - 14 / 60, "lon": LALB.lon,
                             "speed": 12, "course": 0}):
        feed.feed(line, clock.now)
    for line in encode_dict({"type": 5, "mmsi": 366123456, "imo": 9074729, "shipname": "EVER GIVEN",
                             "callsign": "WDC1234", "destination": "USLAX"}):
        feed.feed(line, clock.now)
    feed.flush(clock.now)
    return parts


def test_vessel_shows_position_age_and_the_ais_eta(tmp_path, sqlite_url, clock):
    parts = _setup(tmp_path, sqlite_url, clock)
    bob = ConsoleUser(parts, "LALB", "bob")  # in no agency: reading is for everyone
    clock.advance(minutes=5)
    reply = bob.say("!vessel IMO9074729")
    assert "EVER GIVEN · IMO9074729 · MMSI 366123456 · call sign WDC1234" in reply
    assert "(5 min ago)" in reply and "12.0 kn" in reply and "14 nm from LALB" in reply
    assert "(AIS, 14 nm at 12 kn)" in reply
    assert "Notice of arrival: ETA" in reply and "from Shanghai" in reply
    lines = reply.splitlines()  # one fact a line: the voyage and the notice do not run together
    assert any(line.startswith("AIS voyage: destination USLAX") for line in lines), reply
    assert any(line.startswith("Notice of arrival: ETA") for line in lines), reply
    # Half an hour on without a position, the AIS ETA is stale and the notice's counts.
    clock.advance(minutes=30)
    reply = bob.say("!vessel 366123456")
    assert "stale" in reply and "(NOA)" in reply and "(AIS" not in reply
    assert "not heard on AIS" in bob.say('!vessel "NO SUCH SHIP"')
    assert bob.say("!vessel 12345").startswith("⚠ vessel: MMSI must be 9 digits")


def test_arrivals_lists_soonest_first_with_source_target_and_cdc(tmp_path, sqlite_url, clock):
    parts = _setup(tmp_path, sqlite_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9319466 priority=high")
    day = alice.say("!arrivals")
    assert "next 24h: 1 vessel" in day and "EVER GIVEN" in day and "(AIS, 14 nm at 12 kn)" in day
    four = alice.say("!arrivals 96h").splitlines()
    assert four[0].endswith("next 96h: 2 vessels")
    assert "EVER GIVEN" in four[1] and "no target" in four[1]
    assert "GAS CARRIER" in four[2] and "(NOA)" in four[2] and "⚠ CDC" in four[2] and "TGT-1 high" in four[2]
    assert "no cover" in four[2]
    assert alice.say("!arrivals 12h").startswith("⚠ window:")
    clock.advance(hours=1)
    alice.say("!op log boarding vessel=IMO9319466 at=33.74,-118.27 start=+58h end=2h")
    assert "covered by CBP" in alice.say("!arrivals 96h").splitlines()[2]


def test_target_show_and_list_say_which_eta_counts(tmp_path, sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9074729 eta=+50h priority=high")
    assert "(typed)" in alice.say("!target show TGT-1")
    noa = tmp_path / "noa.csv"
    noa.write_text(NOA)
    import_noa(parts.db, noa, LALB, clock.now)
    assert "(NOA)" in alice.say("!target show TGT-1")
    feed = AisFeedless(parts, clock)
    feed.sail(lat=LALB.lat - 14 / 60)
    shown, listed = alice.say("!target show TGT-1"), alice.say("!target list")
    assert "(AIS, 14 nm at 12 kn)" in shown and "(AIS, 14 nm at 12 kn)" in listed
    clock.advance(minutes=31)  # the position is no longer fresh: back to the notice of arrival
    assert "(NOA)" in alice.say("!target show TGT-1")


class AisFeedless:
    """The ingest as the feed drives it, without a socket."""

    def __init__(self, parts, clock):
        self.feed = AisIngest(parts.db, parts.directory)
        self.clock = clock

    def sail(self, lat: float, speed: float = 12, course: float = 0) -> None:
        for line in encode_dict({"type": 5, "mmsi": 366123456, "imo": 9074729, "shipname": "EVER GIVEN"}):
            self.feed.feed(line, self.clock.now)
        for line in encode_dict({"type": 1, "mmsi": 366123456, "lat": lat, "lon": LALB.lon, "speed": speed,
                                 "course": course}):
            self.feed.feed(line, self.clock.now)
        self.feed.flush(self.clock.now)


def test_briefing_lists_arrivals_by_best_eta_and_flags_dangerous_cargo(tmp_path, sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    # Typed 40 h out (outside the briefing's 24 h), but its notice of arrival says 20 h: it is arriving.
    alice.say("!target nominate IMO9319466 eta=+40h priority=high")
    noa = tmp_path / "noa.csv"
    noa.write_text("vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted\n"
                   "GAS CARRIER,IMO9319466,,C6AB2,Bahamas,+20h,Ulsan,yes,18,\n"
                   "BULK TRADER,IMO9074729,,,Liberia,+10h,Manzanillo,yes,,\n"
                   "LATE ONE,,538001234,,,+30h,Busan,no,,\n")
    import_noa(parts.db, noa, LALB, clock.now)
    brief = alice.say("!brief now")
    lines = brief.splitlines()
    target = next(line for line in lines if "TGT-1" in line)
    assert "(NOA)" in target and "⚠ CDC" in target and "NOT COVERED" in target
    other = next(line for line in lines if "BULK TRADER" in line)
    assert "(NOA)" in other and "IMO9074729" in other and "from Manzanillo" in other and "⚠ CDC" in other
    assert "LATE ONE" not in brief  # due after the briefing's 24 hours


def test_the_demo_has_ships_to_try(sqlite_url):
    parts = make_parts(sqlite_url)
    seed(parts)
    sam = ConsoleUser(parts, "LALB", "sam", "USCG", "supervisor")
    pearl = sam.say("!vessel IMO9356787")
    assert "OCEAN PEARL · IMO9356787 · MMSI 538009356" in pearl and "(AIS, 49 nm at 14 kn)" in pearl
    arrivals = sam.say("!arrivals 96h").splitlines()
    assert "OCEAN PEARL" in arrivals[1] and "TGT-1 high" in arrivals[1]
    assert any("SOUTHERN GAS" in a and "⚠ CDC" in a for a in arrivals)
    assert "0.2 kn" in sam.say('!vessel "HARBOR QUEEN"')
    assert "(AIS" not in sam.say("!vessel 636019999")  # outbound: no AIS ETA
    with parts.db.session() as s:
        notices = s.exec(select(OutboxRow).where(OutboxRow.kind == "notice")).all()
    texts = [json.loads(n.payload)["text"] for n in notices]  # (the demo's watch announcements are notices too)
    assert [t.split(",")[0] for t in texts if t.startswith("⚓")] == ["⚓ TGT-1 OCEAN PEARL entered the LALB approach"]


def _heard(parts, clock, mmsi: int, name: str, lat_offset_nm: float) -> None:
    """One vessel heard on AIS: its name, and a position `lat_offset_nm` south of the sector steaming north."""
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    for line in encode_dict({"type": 5, "mmsi": mmsi, "shipname": name}):
        feed.feed(line, clock.now)
    for line in encode_dict({"type": 1, "mmsi": mmsi, "lat": LALB.lat - lat_offset_nm / 60, "lon": LALB.lon,
                             "speed": 12, "course": 0}):
        feed.feed(line, clock.now)
    feed.flush(clock.now)


def test_a_target_known_by_name_follows_the_one_track_of_that_name(db_url, clock):
    parts = make_parts(db_url, clock=clock, zone=[{"code": "LALB", "approach_nm": 40}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    _heard(parts, clock, 366000101, "EVER GIVEN", 45)
    assert alice.say('!target nominate "Ever-Given" priority=high').startswith("TGT-1")
    shown = alice.say("!target show TGT-1")
    assert "(AIS, 45 nm at 12 kn)" in shown and "AIS tracks are named" not in shown
    arrivals = alice.say("!arrivals").splitlines()
    assert len(arrivals) == 2 and "EVER GIVEN" in arrivals[1] and "TGT-1 high" in arrivals[1]
    clock.advance(minutes=1)
    _heard(parts, clock, 366000101, "EVER GIVEN", 35)  # into the 40 nm approach: the notice names the target
    with parts.db.session() as s:
        texts = [json.loads(n.payload)["text"] for n in s.exec(select(OutboxRow).where(OutboxRow.kind == "notice"))]
    assert [t.split(",")[0] for t in texts if t.startswith("⚓")] == ["⚓ TGT-1 EVER GIVEN entered the LALB approach"]
    # A second ship of that name (punctuation aside): the target is matched to neither, and says so.
    _heard(parts, clock, 366000102, "EVER GIVEN.", 80)
    shown = alice.say("!target show TGT-1")
    assert "(AIS" not in shown
    assert "⚠ 2 AIS tracks are named EVER-GIVEN" in shown and "by IMO or MMSI" in shown
    parts.db.dispose()


def test_a_target_nominated_by_number_takes_the_ais_name_and_arrivals_label_bare_numbers(sqlite_url, clock):
    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9277230 priority=high eta=+5h")
    alice.say("!target nominate 366987654 priority=low eta=+6h")
    listed = alice.say("!arrivals").splitlines()
    assert len(listed) == 3, listed
    assert listed[1].split(" · ")[1] == "IMO 9277230" and "TGT-1 high" in listed[1]
    assert listed[2].split(" · ")[1] == "MMSI 366987654" and "TGT-2 low" in listed[2]
    # The IMO's ship is heard on AIS (its type 5 gives the IMO and the name): the target takes the name.
    feed = AisIngest(parts.db, parts.directory)
    feed.resume()
    for line in encode_dict({"type": 5, "mmsi": 538009999, "imo": 9277230, "shipname": "CAPE ORCHID"}):
        feed.feed(line, clock.now)
    feed.flush(clock.now)
    assert 'TGT-1 IMO9277230 "CAPE ORCHID"' in alice.say("!target show TGT-1")
    listed = alice.say("!arrivals").splitlines()
    assert listed[1].split(" · ")[1] == "CAPE ORCHID" and "TGT-1 high" in listed[1]
    # Nominated by the MMSI of a ship already heard: the reply and the gap alert name it.
    _heard(parts, clock, 366000555, "NORTHERN LIGHT", 30)
    reply = alice.say("!target nominate 366000555 priority=high")
    assert reply.startswith("TGT-3 ") and '366000555 "NORTHERN LIGHT"' in reply.splitlines()[0], reply
    with parts.db.session() as s:
        alerts = [json.loads(r.payload)["text"] for r in s.exec(select(OutboxRow).where(OutboxRow.kind == "alert"))]
    assert any("TGT-3" in a and "NORTHERN LIGHT" in a for a in alerts), alerts


def test_a_notice_of_arrival_bringing_a_target_into_the_window_opens_its_gap_once_rechecked(tmp_path, sqlite_url,
                                                                                           clock):
    """`import noa` changes targets' best ETAs; re-checking the zone's gaps after it (commands/gap_recheck.py) opens
    the gap the notice's ETA makes, with its source."""
    from watchfloor.commands.gap_recheck import recheck_zone

    parts = make_parts(sqlite_url, clock=clock, zone=[{"code": "LALB"}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9319466 priority=high eta=+48h")
    noa = tmp_path / "noa.csv"
    noa.write_text("vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted\n"
                   "GAS CARRIER,IMO9319466,,C6AB2,Bahamas,+20h,Ulsan,yes,18,\n")
    import_noa(parts.db, noa, LALB, clock.now)
    changes = recheck_zone(parts.db, parts.directory, "LALB", clock.now, "notices of arrival imported")
    assert [cf.kind for cf in changes.raised] == ["gap"]
    listing = alice.say("!conflicts")
    assert "CF-1 gap" in listing and "(NOA)" in listing
    assert not recheck_zone(parts.db, parts.directory, "LALB", clock.now, "again")  # once


def test_import_noa_opens_the_gap_its_notice_brings_into_the_window(tmp_path, sqlite_url):
    """The command itself re-checks the zone's gaps after storing (contract: gaps re-evaluated after every import).
    Run on the real clock, as a user runs it: the times are relative."""
    from typer.testing import CliRunner

    from watchfloor.bot.cli import app

    parts = make_parts(sqlite_url, zone=[{"code": "LALB"}])
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    alice.say("!target nominate IMO9319466 priority=high eta=+48h")
    assert "None open" in alice.say("!conflicts") or "0 conflicts" in alice.say("!conflicts")
    noa = tmp_path / "noa.csv"
    noa.write_text("vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted\n"
                   "GAS CARRIER,IMO9319466,,C6AB2,Bahamas,+20h,Ulsan,yes,18,\n")
    out = CliRunner().invoke(app, ["import", "noa", str(noa), "--zone", "LALB", "--db", sqlite_url])
    assert out.exit_code == 0, out.output
    listing = alice.say("!conflicts")
    assert "CF-1 gap" in listing and "(NOA)" in listing
