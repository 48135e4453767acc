"""`watchfloor import noa`: notices of arrival, all or nothing, errors naming row and field (SQLite and PG)."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlmodel import select
from typer.testing import CliRunner

from watchfloor.bot.cli import app
from watchfloor.storage.db import Database
from watchfloor.storage.vessel_tables import ArrivalNoticeRow

HEAD = "vessel_name,imo,mmsi,call_sign,flag,eta,last_port,cdc,persons,submitted\n"
GOOD = (HEAD + "Ever Given,IMO9074729,366123456,WDC1234,Panama,2026-12-03T06:00,Shanghai,yes,25,2026-11-29T10:00\n"
        "MAERSK ALFA,9074729,,OXYZ2,Denmark,2026-12-02T18:00Z,Busan,no,20,\n"
        "PACIFIC DAWN,,538001234,V7AB3,Marshall Islands,2026-12-04T09:30-08:00,Yokohama,,,\n")


@pytest.fixture(autouse=True)
def on_a_fixed_day():
    """The notices are dated: they are imported on 2026-12-01 (time-machine), whatever day the suite runs."""
    with time_machine.travel(datetime(2026, 12, 1, 15, 0, tzinfo=UTC), tick=True):
        yield


def _run(tmp_path, db_url, body: str, zone: str = "LALB"):
    f = tmp_path / "noa.csv"
    f.write_text(body)
    return CliRunner().invoke(app, ["import", "noa", str(f), "--zone", zone, "--db", db_url])


def _rows(db_url):
    db = Database(db_url)
    try:
        with db.session() as s:
            return s.exec(select(ArrivalNoticeRow).order_by(ArrivalNoticeRow.id)).all()
    finally:
        db.dispose()


def test_notices_are_loaded_with_zone_local_times(tmp_path, db_url):
    out = _run(tmp_path, db_url, GOOD)
    assert out.exit_code == 0, out.output
    assert "imported 3 notices of arrival into LALB" in out.output
    rows = _rows(db_url)
    assert [r.vessel_name for r in rows] == ["EVER GIVEN", "MAERSK ALFA", "PACIFIC DAWN"]
    ever = rows[0]
    assert (ever.imo, ever.mmsi, ever.cdc, ever.persons) == ("9074729", "366123456", True, 25)
    assert ever.eta.astimezone(UTC) == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)  # 06:00 PST
    assert rows[1].eta.astimezone(UTC) == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert rows[2].eta.astimezone(UTC) == datetime(2026, 12, 4, 17, 30, tzinfo=UTC)
    assert rows[1].cdc is False and rows[2].imo is None


def test_one_bad_row_stores_nothing_and_names_row_and_field(tmp_path, db_url):
    cases = {
        "X,IMO9074728,,,,2026-12-03T06:00,,,,\n": "row 3: imo: IMO9074728 has a wrong check digit",
        "X,,36612345,,,2026-12-03T06:00,,,,\n": "row 3: mmsi: MMSI must be 9 digits",
        "X,,366123456,,,tomorrow-ish,,,,\n": "row 3: eta:",
        "X,,366123456,,,2026-12-03T06:00,,maybe,,\n": "row 3: cdc:",
        "X,,,,,2026-12-03T06:00,,,,\n": "row 3: imo: a notice needs the vessel's IMO or MMSI",
    }
    for bad, reason in cases.items():
        out = _run(tmp_path, db_url, GOOD.splitlines(keepends=True)[0] + GOOD.splitlines(keepends=True)[1] + bad)
        assert out.exit_code == 1, out.output
        assert reason in out.output and "Traceback" not in out.output
    assert _rows(db_url) == []


def test_unknown_column_and_unknown_zone_are_refused(tmp_path, sqlite_url):
    out = _run(tmp_path, sqlite_url, "vessel_name,imo,eta,colour\nX,IMO9074729,2026-12-03T06:00,red\n")
    assert out.exit_code == 1 and "header: unknown column 'colour'" in out.output
    out = _run(tmp_path, sqlite_url, GOOD, zone="NOWHERE")
    assert out.exit_code == 2 and "zone: unknown zone" in out.output


def test_the_same_file_twice_stores_each_notice_once_and_says_what_was_there(tmp_path, db_url):
    assert _run(tmp_path, db_url, GOOD).exit_code == 0
    out = _run(tmp_path, db_url, GOOD)
    assert out.exit_code == 0, out.output
    assert "imported 0 notices of arrival into LALB; 3 already there, not stored again (EVER GIVEN ETA " \
           "2026-12-03 14:00Z, MAERSK ALFA ETA 2026-12-02 18:00Z, PACIFIC DAWN ETA 2026-12-04 17:30Z)" in out.output
    assert len(_rows(db_url)) == 3
    # A later notice of the same vessel (another ETA) is a notice; the same vessel and ETA known by its MMSI
    # alone, or repeated inside one file, is not.
    again = HEAD + ("EVER GIVEN,IMO9074729,,,,2026-12-05T06:00,,,,\n"
                    "EVER GIVEN,,366123456,,,2026-12-03T06:00,,,,\n"
                    "NEW ONE,IMO9074729,,,,2026-12-06T06:00,,,,\n"
                    "NEW ONE,IMO9074729,,,,2026-12-06T06:00,,,,\n")
    out = _run(tmp_path, db_url, again)
    assert "imported 2 notices" in out.output and "2 already there" in out.output
    assert len(_rows(db_url)) == 5


def test_two_imports_of_one_file_at_once_store_it_once(tmp_path, db_url):
    from concurrent.futures import ThreadPoolExecutor

    from watchfloor.commands.vessel_import import import_notices
    from watchfloor.ioc.zones import get_zone

    f = tmp_path / "noa.csv"
    f.write_text(GOOD)
    db = Database(db_url)
    db.upgrade()
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: import_notices(db, f, get_zone("LALB")), range(2)))
    finally:
        db.dispose()
    assert sorted(len(r.ids) for r in results) == [0, 3] and len(_rows(db_url)) == 3


@pytest.mark.postgres
def test_two_imports_that_meet_in_the_database_store_the_file_once(tmp_path, pg_url):
    """Not left to timing: the notices table is held by another session (a busy database would hold it so) until
    both imports are waiting, so without the zone's lock both would have read "nothing stored yet" before either
    wrote. With it the second waits for the first to commit, then finds every notice already there."""
    import threading
    import time

    import psycopg

    from watchfloor.commands.vessel_import import import_notices
    from watchfloor.ioc.zones import get_zone

    f = tmp_path / "noa.csv"
    f.write_text(GOOD)
    db = Database(pg_url)
    db.upgrade()
    results: list = []
    plain = pg_url.replace("+psycopg", "")
    try:
        with psycopg.connect(plain) as holder, psycopg.connect(plain, autocommit=True) as watcher:
            holder.execute("LOCK TABLE arrival_notice IN EXCLUSIVE MODE")  # reads pass, writes wait
            imports = [threading.Thread(target=lambda: results.append(import_notices(db, f, get_zone("LALB"))))
                       for _ in range(2)]
            for t in imports:
                t.start()
            deadline = time.monotonic() + 10
            while watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                  "AND wait_event_type = 'Lock'").fetchone()[0] < 2:
                assert time.monotonic() < deadline, "the two imports never both waited"
                time.sleep(0.05)
            holder.rollback()
            for t in imports:
                t.join(10)
    finally:
        db.dispose()
    stored = _rows(pg_url)
    assert sorted(len(r.ids) for r in results) == [0, 3], f"{len(stored)} notices stored for a file of 3"
    assert sorted(len(r.already) for r in results) == [0, 3] and len(stored) == 3


@pytest.mark.parametrize("column, cell", [
    ("vessel_name", "=cmd|' /C calc'!A0"), ("vessel_name", "  =HYPERLINK(\"http://x\")"),
    ("flag", "+Panama"), ("last_port", "@SUM(1+1)"), ("call_sign", "-2+3"), ("last_port", "\tShanghai"),
])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_refused_naming_row_and_field(tmp_path, db_url, column, cell):
    row = {"vessel_name": "EVER GIVEN", "imo": "IMO9074729", "mmsi": "", "call_sign": "", "flag": "",
           "eta": "2026-12-03T06:00", "last_port": "", "cdc": "", "persons": "", "submitted": ""}
    row[column] = cell
    quoted = ",".join('"' + v.replace('"', '""') + '"' for v in row.values())
    out = _run(tmp_path, db_url, GOOD.splitlines(keepends=True)[0] + quoted + "\n")
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.startswith(f"row 2: {column}: ") and "formula" in out.output
    assert len(out.output.strip().splitlines()) == 1
    assert _rows(db_url) == []
