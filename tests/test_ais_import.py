"""`watchfloor import ais` of recordings as the field makes them: the forms it reads, the files it refuses, the
summary it prints (what was stored, why lines were dropped) and its exit status."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pyais import encode_dict
from pyais.util import checksum
from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from watchfloor.bot.cli import app
from watchfloor.storage.db import Database
from watchfloor.storage.vessel_tables import VesselPositionRow, VesselRow

DATA = Path(__file__).parent / "data" / "ais"


def run(db_url: str, file: Path, *args: str):
    out = CliRunner().invoke(app, ["import", "ais", str(file), "--db", db_url, *args])
    assert "Traceback" not in out.output and (out.exception is None or isinstance(out.exception, SystemExit)), \
        out.output
    return out


def write(tmp_path: Path, body: str | bytes, name: str = "feed.nmea") -> Path:
    f = tmp_path / name
    f.write_bytes(body if isinstance(body, bytes) else body.encode())
    return f


def stored(db_url: str) -> tuple[dict[str, VesselRow], int]:
    db = Database(db_url)
    try:
        with db.session() as s:
            vessels = {v.mmsi: v for v in s.exec(select(VesselRow)).all()}
            return vessels, s.exec(select(func.count()).select_from(VesselPositionRow)).one()
    finally:
        db.dispose()


def utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else (dt if dt.tzinfo else dt.replace(tzinfo=UTC))


def tag_block(body: str) -> str:
    return f"\\{body}*{checksum(body.encode()):02X}\\"


def timed(at: datetime, mmsi: int = 366123456, lat: float = 33.5, **fields) -> str:
    (line,) = encode_dict({"type": 1, "mmsi": mmsi, "lat": lat, "lon": -118.25, "speed": 12.5, "course": 45.0,
                           **fields})
    return tag_block(f"c:{int(at.timestamp())}") + line


def recent(days: float = 1) -> datetime:
    """A time `days` before now, to the second: these imports run on the real clock."""
    return (datetime.now(UTC) - timedelta(days=days)).replace(microsecond=0)


# --- when a file was recorded ------------------------------------------------------------------------------------

def test_a_file_in_which_no_line_carries_a_time_is_refused_unless_at_says_when(tmp_path, sqlite_url):
    """pyais's messages.ais: bare sentences among comments. Stamped "now" they would pass for live traffic."""
    f = DATA / "pyais" / "messages.ais"
    out = run(sqlite_url, f)
    assert out.exit_code == 2 and len(out.output.strip().splitlines()) == 1 and "--at" in out.output
    assert stored(sqlite_url) == ({}, 0)
    when = recent(days=2)
    out = run(sqlite_url, f, "--at", when.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert out.exit_code == 0, out.output
    vessels, _ = stored(sqlite_url)
    assert len(vessels) == 3 and {utc(v.position_at) for v in vessels.values()} == {when}
    out = run(sqlite_url, f, "--at", "yesterday-ish")
    assert out.exit_code == 2 and out.output.startswith("at:")


@pytest.mark.calendar_free  # recordings of 2008 and 2015, stored with their own times whatever today is
def test_nais_gatehouse_and_tag_block_recordings_import_at_their_own_times(sqlite_url):
    assert run(sqlite_url, DATA / "libais" / "uscg_test.nmea").exit_code == 0
    assert run(sqlite_url, DATA / "pyais" / "timestamped.ais").exit_code == 0
    assert run(sqlite_url, DATA / "libais" / "nmea_queue_test_tag_block.nmea").exit_code == 0
    vessels, _ = stored(sqlite_url)
    assert utc(vessels["218074000"].position_at) == datetime(2015, 4, 14, 0, 3, 12, tzinfo=UTC)  # !BSVDM, NAIS
    assert utc(vessels["577305000"].position_at) is not None  # type 27
    assert utc(vessels["367534680"].static_at) == datetime.fromtimestamp(1428796802, UTC)  # a two-part NAIS type 5
    assert utc(vessels["367309370"].position_at) == datetime(2008, 5, 9, 0, 0, 0, 10_000, tzinfo=UTC)  # $PGHP
    mare_island = vessels["366989380"]  # the group 27300, whose second part has no c:
    assert (mare_island.name, utc(mare_island.static_at)) == ("MARE ISLAND", datetime.fromtimestamp(1428621738, UTC))


# --- the national archive's CSV -------------------------------------------------------------------------------

@pytest.mark.calendar_free  # the layouts' rows are of 2017, 2022 and 2025
@pytest.mark.parametrize("name", ["AIS_2017_12_01_layout.csv", "AIS_2022_06_20_layout.csv",
                                  "ais-2025-01-01_layout.csv"])
def test_each_years_archive_layout_imports(sqlite_url, name):
    out = run(sqlite_url, DATA / "marinecadastre" / name)
    assert out.exit_code == 0, out.output
    vessels, positions = stored(sqlite_url)
    if name.startswith("AIS_2017"):
        first = vessels["477307900"]
        assert (first.name, first.imo, first.call_sign, round(first.lat, 5), first.heading) == (
            "FIRST", "9739666", "VRPJ6", 36.90512, 352)
        assert vessels["367390380"].cog is None  # -49.6: a course not available, not stored as given
        spirit = vessels["538006578"]
        assert (spirit.cog, spirit.sog, spirit.imo) == (None, 13.2, None)  # -204.8; a wrong IMO check digit
        maverick = vessels["366943250"]
        assert (maverick.sog, maverick.cog, maverick.heading) == (None, None, None)  # 102.3, 360, 511
    elif name.startswith("AIS_2022"):
        pride = vessels["538009563"]
        assert (pride.name, pride.imo, round(pride.lat, 5), round(pride.lon, 5), pride.cog) == (
            "DEL MONTE PRIDE", "9869693", 29.18611, -116.60291, 150.2)
        assert utc(pride.position_at) == datetime(2022, 6, 20, 0, 1, 4, tzinfo=UTC)
        assert vessels["338123456"].heading is None  # an empty Heading cell
    else:  # longitude before latitude, a space in the time
        moran = vessels["368382440"]
        assert (moran.name, moran.call_sign, round(moran.lat, 4), round(moran.lon, 4)) == (
            "PATRICIA B. MORAN", "WDP7519", 36.9648, -76.4352)
        assert utc(moran.position_at) == datetime(2025, 1, 1, 0, 1, tzinfo=UTC)
        assert (vessels["636019825"].cog, vessels["636019825"].heading) == (None, None)
    assert positions >= len(vessels)


@pytest.mark.calendar_free  # the 2022 layout's rows
@pytest.mark.parametrize("variant", ["comment", "bom", "lower", "blank"])
def test_an_archive_csv_with_a_comment_a_bom_or_a_lower_case_header_imports(tmp_path, sqlite_url, variant):
    text = (DATA / "marinecadastre" / "AIS_2022_06_20_layout.csv").read_text()
    body = {"comment": "# AIS_2022_06_20.csv, first rows\n" + text,
            "bom": "\ufeff" + text,
            "lower": text.replace(text.splitlines()[0], text.splitlines()[0].lower()),
            "blank": "\n# exported\n\n" + text.replace("\n", "\n\n", 1)}[variant]
    out = run(sqlite_url, write(tmp_path, body, "AIS_2022_06_20.csv"))
    assert out.exit_code == 0, out.output
    vessels, _ = stored(sqlite_url)
    assert set(vessels) == {"538009563", "367481660", "338123456"}
    assert "malformed" not in out.output
    if variant in ("comment", "blank"):
        assert "skipped" in out.output


def test_an_archive_row_at_lat_91_lon_181_is_no_position_but_keeps_the_ships_name(tmp_path, sqlite_url):
    when = recent().replace(tzinfo=None).isoformat()
    body = ("MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,CallSign\n"
            f"538001234,{when},91.0,181.0,0.0,360.0,511.0,PACIFIC DAWN,IMO9074729,V7AB3\n")
    out = run(sqlite_url, write(tmp_path, body, "AIS.csv"))
    assert out.exit_code == 0, out.output
    vessels, positions = stored(sqlite_url)
    dawn = vessels["538001234"]
    assert (dawn.name, dawn.imo, dawn.lat, dawn.position_at, positions) == ("PACIFIC DAWN", "9074729", None, None, 0)


@pytest.mark.calendar_free  # refused at its header, before any row's time is read
def test_an_archive_csv_without_a_needed_column_is_refused_naming_it(tmp_path, sqlite_url):
    out = run(sqlite_url, write(tmp_path, "MMSI,BaseDateTime,LAT\n538001234,2017-12-01T00:00:03,33.1\n", "a.csv"))
    assert out.exit_code == 1 and "header: no LON column" in out.output
    assert stored(sqlite_url) == ({}, 0)


# --- what the summary says, and the exit status --------------------------------------------------------------

def test_a_file_with_nothing_usable_exits_1_naming_the_commonest_reason(tmp_path, sqlite_url):
    when = recent()
    lines = [timed(when + timedelta(seconds=i), mmsi=366000000 + i) for i in range(3)]
    bad = [line[:-2] + ("00" if line[-2:] != "00" else "11") for line in lines]
    out = run(sqlite_url, write(tmp_path, "\n".join(bad + ["garbage"]) + "\n"))
    assert out.exit_code == 1
    assert "nothing usable: 3 of 4 records checksum (a wrong checksum)" in out.output
    assert stored(sqlite_url) == ({}, 0)
    out = run(sqlite_url, write(tmp_path, "# only a comment\n\n", "empty.nmea"))
    assert out.exit_code == 1 and "no records in empty.nmea" in out.output


def test_the_summary_counts_skipped_empty_and_orphan_lines_apart(tmp_path, sqlite_url):
    when = recent()
    first, second = encode_dict({"type": 5, "mmsi": 366123456, "imo": 9074729, "shipname": "EVER GIVEN"})
    stamp = tag_block(f"c:{int(when.timestamp())}")
    body = "\n".join(["# recorded on the pier", "", timed(when), stamp + "!AIVDM,1,1,,B,,0*25", stamp + second,
                      "   ", stamp + "!AIVDM,1,1,,B,,0*25"]) + "\n"
    out = run(sqlite_url, write(tmp_path, body))
    assert out.exit_code == 0, out.output
    assert "read 7 records" in out.output and "1 positions" in out.output
    assert "dropped 3 (empty 2, orphan 1)" in out.output and "skipped 3 (comments and blank lines)" in out.output


def test_the_summary_counts_the_positions_stored_not_those_retention_prunes(tmp_path, sqlite_url):
    """A recording of 20 days into a database keeping 7: the summary says what is there afterwards."""
    lines = [timed(recent(days=21 - day), lat=30 + day * 0.1) for day in range(20)]
    out = run(sqlite_url, write(tmp_path, "\n".join(lines) + "\n"))
    assert out.exit_code == 0, out.output
    _, positions = stored(sqlite_url)
    assert 0 < positions < 20
    assert f"{positions} positions" in out.output


def test_times_nobody_can_read_are_malformed_and_microseconds_are_read(tmp_path, sqlite_url):
    when = recent()
    (line,) = encode_dict({"type": 1, "mmsi": 366123456, "lat": 33.5, "lon": -118.25, "speed": 1, "course": 2})
    micro = tag_block(f"c:{int(when.timestamp()) * 1_000_000}") + line
    body = "\n".join([tag_block("c:nan") + line, tag_block("c:1e400") + line, micro]) + "\n"
    out = run(sqlite_url, write(tmp_path, body))
    assert out.exit_code == 0, out.output
    assert "dropped 2 (malformed 2)" in out.output
    vessels, _ = stored(sqlite_url)
    assert utc(vessels["366123456"].position_at) == when


def test_an_overlong_line_is_malformed_and_the_rest_is_read(tmp_path, sqlite_url):
    when = recent()
    huge = tag_block("s:" + "x" * 2_000_000) + timed(when)[len(tag_block(f"c:{int(when.timestamp())}")):]
    out = run(sqlite_url, write(tmp_path, "\n".join([timed(when), huge, timed(when, mmsi=366000001)]) + "\n"))
    assert out.exit_code == 0, out.output
    assert "dropped 1 (malformed 1)" in out.output
    assert set(stored(sqlite_url)[0]) == {"366123456", "366000001"}


def test_a_long_line_is_never_read_whole():
    """A recording with a line of megabytes (a binary file, a log gone wrong): read in bounded pieces."""
    from io import BytesIO

    from watchfloor.commands.vessel_import import _records

    class Reads(BytesIO):
        biggest = 0

        def readline(self, size=-1):
            line = super().readline(size)
            Reads.biggest = max(Reads.biggest, len(line))
            return line

    f = Reads(b"a\r\n" + b"x" * 5_000_000 + b"\nb\n" + b"y" * 1024 + b"\n" + b"z" * 1025)
    assert list(_records(f)) == [b"a", None, b"b", b"y" * 1024, None]
    assert Reads.biggest <= 1 << 16
