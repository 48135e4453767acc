"""Real recordings as their projects publish them (tests/data/ais/README.md), decoded by ioc/ais.py: what each
project's own tests assert about a file, asserted here of ours, and gpsd's own decode of its logs as the oracle."""
from __future__ import annotations

import gzip
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from watchfloor.ioc.ais import Decoder, PositionReport, StaticReport

pytestmark = pytest.mark.calendar_free  # every line is decoded at its own time, or at T0 given here

DATA = Path(__file__).parent / "data" / "ais"
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def decode(path: Path, received: datetime = T0) -> tuple[Counter, list, Decoder]:
    """Every line of a file through one decoder, as `import ais` and the live feed do: outcomes and reports."""
    d = Decoder()
    outcomes, reports = Counter(), []
    for line in path.read_bytes().splitlines():
        outcome, got = d.feed(line, received)
        outcomes[outcome] += 1
        reports += got
    return outcomes, reports, d


def at(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


# --- gpsd: test/daemon/*.log and gpsd's JSON decode of each (.chk) -------------------------------------------------

GPSD_LOGS = sorted((DATA / "gpsd").glob("*.log"))


def _text(value) -> str | None:
    return " ".join(str(value).replace("@", " ").split()) or None


def _gpsd(log: Path) -> tuple[dict, dict]:
    """gpsd's decode: every vessel's last position (lat, lon, SOG, COG; "not available" as None) and every type 5
    field it ever gave (name, call sign, destination, IMO), the last non-empty one."""
    positions, statics = {}, {}
    with gzip.open(f"{log}.chk.gz", "rt", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.startswith('{"class":"AIS"'):
                continue
            m = json.loads(line)
            t, mmsi = m["type"], f'{m["mmsi"]:09d}'
            if t in (1, 2, 3, 18, 19, 27):  # gpsd unscaled: 1/10000 minute (27: 1/10 minute), tenths of kn and °
                scale = 600 if t == 27 else 600_000
                lat, lon = m["lat"] / scale, m["lon"] / scale
                if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                    continue  # 91 / 181: no position
                if t == 27:
                    sog = None if m["speed"] >= 63 else float(m["speed"])
                    cog = None if m["course"] >= 360 else float(m["course"])
                else:
                    sog = None if m["speed"] >= 1023 else m["speed"] / 10
                    cog = None if m["course"] >= 3600 else m["course"] / 10
                positions[mmsi] = (round(lat, 4), round(lon, 4), sog, cog)
            elif t == 5:
                fields = {"name": _text(m["shipname"]), "call_sign": _text(m["callsign"]),
                          "destination": _text(m["destination"]),
                          "imo": f'{m["imo"]:07d}' if 0 < m["imo"] < 10_000_000 else None}
                statics.update({(mmsi, k): v for k, v in fields.items() if v})
    return positions, statics


def _ours(log: Path) -> tuple[dict, dict]:
    positions, statics = {}, {}
    for r in decode(log)[1]:
        if isinstance(r, PositionReport):
            positions[r.mmsi] = (round(r.lat, 4), round(r.lon, 4), r.sog, r.cog)
        elif r.destination or r.imo or r.eta or (r.name and r.call_sign):  # a type 5 (19 and 24 carry less)
            statics.update({(r.mmsi, k): getattr(r, k) for k in ("name", "call_sign", "destination", "imo")
                            if getattr(r, k)})
    return positions, statics


@pytest.mark.parametrize("log", GPSD_LOGS, ids=lambda p: p.name)
def test_every_vessels_last_position_is_the_one_gpsd_decodes(log):
    theirs, _ = _gpsd(log)
    ours, _ = _ours(log)
    assert theirs and ours == theirs


@pytest.mark.parametrize("log", GPSD_LOGS, ids=lambda p: p.name)
def test_every_type_5_name_call_sign_destination_and_imo_is_the_one_gpsd_decodes(log):
    _, theirs = _gpsd(log)
    _, ours = _ours(log)
    if log.name == "ais-nmea-type6-fid55.log":
        # PRINSES CHRISTINA sends her call sign as "@@J130B": gpsd ends a text at its first "@" (padding), so it
        # has none; "@" is padding wherever it stands, so ours is J130B.
        assert ours.pop(("244710865", "call_sign")) == "J130B"
    assert ours == theirs


def test_the_gpsd_logs_hold_920_vessels_with_positions_and_136_with_type_5s():
    """The size of the comparison above, so that a log that decodes to nothing cannot pass it unnoticed."""
    assert sum(len(_gpsd(log)[0]) for log in GPSD_LOGS) == 920
    assert sum(len({m for m, _ in _gpsd(log)[1]}) for log in GPSD_LOGS) == 136


def test_gpsds_sample_aivdm_of_every_type_decodes_its_nais_lines_at_their_receive_times():
    outcomes, reports, d = decode(DATA / "gpsd" / "sample.aivdm")
    # ;4R33:1uUK2F`q?mOt@@GoQ00000 is a type 11 (ignored); the positions of the NAIS lines carry their times
    assert outcomes["checksum"] == 0 and outcomes["ok"] == 22
    # the file's three broken lines, kept in it on purpose: a sentence without its "!", one without its
    # checksum, one with "\x0d\x0a" written out in it
    assert outcomes["malformed"] == 3


# --- libais -------------------------------------------------------------------------------------------------------

def test_libais_nais_lines_of_every_talker_and_station_form_decode_at_their_receive_times():
    """test/uscg_test.py: `!SAVDM`, `!BSVDM`, `!ABVDM`, `!ANVDM`, `!SAVDO`, `!BSVDO`; stations `r…`, `b…`, `D…`,
    `B…`; every multi-line message assembled."""
    path = DATA / "libais" / "uscg_test.nmea"
    outcomes, reports, d = decode(path)
    assert d.finish() == 0  # every part found its message
    times = {}
    for line in path.read_text().splitlines():
        if line.startswith("!"):
            times.setdefault(line.split(",")[-1], line)
    assert outcomes["checksum"] == 0 and outcomes["orphan"] == 0
    # the malformed ones are the file's deliberate non-AIS lines: a garbled $PSHI and four "--" separators
    assert outcomes["malformed"] == 5
    assert outcomes["ok"] == 16 and len(reports) == 18  # two type 19s: a position and static data each
    assert all(str(int(r.at.timestamp())) in times for r in reports)  # each at its own line's receive time
    # testManySingleLineMessages: of its 21 messages, the types 1, 2, 3, 18 and 27 are positions
    singles = {r.mmsi: r.at for r in reports if isinstance(r, PositionReport)}
    assert singles["218074000"] == at(1428969792) and singles["367428990"] == at(1429041003)  # !BSVDM, !ABVDM
    assert singles["366991820"] == at(1428883200) and singles["577305000"] == at(1428906229)  # 18, 27


def test_libais_tag_block_queue_keeps_the_type_5_whose_second_part_carries_no_time():
    """test/nmea_queue_test.py testTagBlockLines: messages 11, 5, 5, 3, 27; the group 27300's second part has only
    `g:` and `n:`."""
    outcomes, reports, d = decode(DATA / "libais" / "nmea_queue_test_tag_block.nmea")
    statics = [r for r in reports if isinstance(r, StaticReport)]
    positions = [r for r in reports if isinstance(r, PositionReport)]
    assert [(r.mmsi, r.at) for r in statics] == [("477056600", at(1426032000)), ("366989380", at(1428621738))]
    assert [(r.mmsi, r.at) for r in positions] == [("366969970", at(1428621738)), ("577305000", at(1428884269))]
    assert outcomes["ignored"] == 3 and d.finish() == 0  # ZDA, the type 11, VSI; no part left over


def test_libais_uscg_and_mixed_queues():
    """testUscgLines: messages 1, 5, 3, 27, the 27 (MMSI 577305000) at 1429287258; testMixedLines: 1, 4, 27 and
    a line of text."""
    outcomes, reports, _ = decode(DATA / "libais" / "nmea_queue_test_uscg.nmea")
    assert [type(r).__name__ for r in reports] == ["PositionReport", "StaticReport", "PositionReport",
                                                    "PositionReport"]
    assert (reports[-1].mmsi, reports[-1].at) == ("577305000", at(1429287258))
    assert reports[1].at == at(1429287190)
    outcomes, reports, _ = decode(DATA / "libais" / "nmea_queue_test_mixed.nmea")
    assert [r.mmsi for r in reports] == ["367075190", "577305000"]
    assert (outcomes["ok"], outcomes["ignored"], outcomes["malformed"]) == (2, 1, 1)


def test_libais_tagblock_nmea_matches_its_json_decode():
    """test/data/tagblock.json is libais's decode of tagblock.nmea: positions and the type 5, with their times."""
    _, reports, _ = decode(DATA / "libais" / "tagblock.nmea")
    expected = [json.loads(line) for line in (DATA / "libais" / "tagblock.json").read_text().splitlines()]
    want_positions = sorted((d["timestamp"][:19], round(d["lat"], 4), round(d["lon"], 4)) for d in expected
                            if d["type"] == 1)
    got_positions = sorted((r.at.strftime("%Y-%m-%dT%H:%M:%S"), round(r.lat, 4), round(r.lon, 4)) for r in reports
                           if isinstance(r, PositionReport))
    assert got_positions == want_positions and len(got_positions) == 3
    (static,) = [r for r in reports if isinstance(r, StaticReport)]
    (want,) = [d for d in expected if d["type"] == 5]
    assert (static.mmsi, static.name, static.call_sign, static.at.strftime("%Y-%m-%dT%H:%M:%S")) == (
        f'{want["mmsi"]:09d}', want["shipname"], want["callsign"], want["timestamp"][:19])


def test_libais_type_examples_and_test_aivdm_decode_without_a_bad_line():
    for name in ("typeexamples.nmea", "test.aivdm"):
        outcomes, reports, d = decode(DATA / "libais" / name)
        assert outcomes["malformed"] == outcomes["checksum"] == 0 and d.finish() == 0, name
        assert reports and all(r.at.year in (2010, 2011, 2012) for r in reports), name


# --- pyais ----------------------------------------------------------------------------------------------------------

def test_pyais_file_reader_files():
    """tests/test_file_stream.py: ais_test_messages holds 7 messages, all valid; messages.ais 6 among comments and
    blank lines."""
    outcomes, reports, _ = decode(DATA / "pyais" / "ais_test_messages")
    assert (outcomes["ok"], outcomes["part"], outcomes["skipped"]) == (7, 1, 1) and len(reports) == 7
    outcomes, reports, _ = decode(DATA / "pyais" / "messages.ais")
    assert (outcomes["ok"], outcomes["skipped"]) == (6, 5) and len(reports) == 6


def test_pyais_gatehouse_file_times_its_sentences():
    """tests/test_file_stream.py test_timestamp_messages: the first sentence is timed 2008-05-09 00:00:00.01 by
    the $PGHP line before it. The file's 2009 line carries the 2008 line's checksum (it was edited by hand): it
    times nothing here, so every sentence keeps the 2008 time."""
    outcomes, reports, _ = decode(DATA / "pyais" / "timestamped.ais")
    assert outcomes["checksum"] == 1
    assert [r.at for r in reports] == [datetime(2008, 5, 9, 0, 0, 0, 10_000, tzinfo=UTC)] * 4


def test_pyais_marinetraffic_sample_counts_its_empty_sentences_as_empty():
    """tests/test_file_stream.py test_marine_traffic_sample: every message decodes, or has no payload."""
    path = DATA / "pyais" / "nmea_data_sample.txt"
    outcomes, reports, d = decode(path)
    assert outcomes["empty"] == path.read_text().count(",,0*") == 100
    assert outcomes["malformed"] == outcomes["checksum"] == outcomes["unknown_type"] == 0
    # the sample has the first part of 20 two-part messages and none of their second parts
    d.finish()
    assert outcomes["part"] == 20 and d.orphaned == 20


def test_pyais_mixed_file():
    """tests/test_queue.py's mixed.txt: sentences, other NMEA, text, tag blocks (group 27300) and $PGHP lines."""
    outcomes, reports, d = decode(DATA / "pyais" / "mixed.txt")
    (mare_island,) = [r for r in reports if isinstance(r, StaticReport) and r.mmsi == "366989380"]
    assert mare_island.at == at(1428621738)
    gatehouse = [r for r in reports if r.at.year == 2008]
    assert [r.mmsi for r in gatehouse] == ["367309370", "413355820"]  # the sentences after the 2008 line
    assert outcomes["malformed"] == 3  # "foobar", "IamNotAnAisMessage1111", a sentence with no checksum
