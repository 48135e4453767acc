"""`watchfloor import ops`: CSV and JSON Lines, all or nothing, conflicts checked, one summary alert."""
from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
import subprocess
import sys

import pytest
import time_machine
from sqlmodel import select
from typer.testing import CliRunner

from watchfloor.bot.cli import app
from watchfloor.storage.db import Database
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow, OutboxRow
from tests.helpers import ConsoleUser, make_parts

HEADER = "type,agency,vessel,at,radius,start,end,mark,note,contact\n"
GOOD_CSV = HEADER + (
    'boarding,CBP,IMO9074729,"33.74,-118.27",,2026-12-05T14:00,2h,,"pilot boards, 0600",CBP desk\n'
    "patrol,USCG,,\"33.741,-118.271\",1nm,2026-12-05T15:00,2026-12-05T17:00,FOUO,,\n"
    'escort,HSI,"EVER GIVEN",,,2026-12-06T09:00Z,90m,,,\n'
    "dive,PD,366123456,\"33.70,-118.20\",200m,2026-12-07T08:00-08:00,1h30m,LES,,\n"
)


@pytest.fixture(autouse=True)
def on_a_fixed_day():
    """The rows are dated: they are imported on 2026-12-01 (time-machine), whatever day the suite runs."""
    with time_machine.travel(datetime(2026, 12, 1, 15, 0, tzinfo=UTC), tick=True):
        yield


def run(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def stored(db_url):
    db = Database(db_url)
    with db.session() as s:
        rows = s.exec(select(OperationRow).order_by(OperationRow.id)).all()
        conflicts = s.exec(select(ConflictRow)).all()
        alerts = s.exec(select(OutboxRow).where(OutboxRow.room == "console:LALB", OutboxRow.kind == "alert")).all()
    db.dispose()
    return rows, conflicts, alerts


def test_csv_import_stores_every_row_with_its_fields(db_url, tmp_path):
    f = tmp_path / "ops.csv"
    f.write_text(GOOD_CSV)
    out = run("import", "ops", str(f), "--zone", "lalb", "--db", db_url)
    assert out.exit_code == 0, out.output
    assert out.output.startswith("imported 4 operations (OP-1..OP-4)")
    rows, conflicts, alerts = stored(db_url)
    assert [(r.type, r.agency_code, r.vessel_key, r.marking) for r in rows] == [
        ("boarding", "CBP", "imo:9074729", "UNCLASS"), ("patrol", "USCG", None, "FOUO"),
        ("escort", "HSI", "name:EVER GIVEN", "UNCLASS"), ("dive", "PD", "mmsi:366123456", "LES")]
    assert rows[0].note == "pilot boards, 0600" and rows[0].contact == "CBP desk" and rows[0].radius_m == 500
    assert rows[1].radius_m == 1852 and (rows[1].lat, rows[1].lon) == (33.741, -118.271)
    assert rows[0].start_at.isoformat() == "2026-12-05T22:00:00+00:00"      # zone local 14:00 PST
    assert rows[2].start_at.isoformat() == "2026-12-06T09:00:00+00:00"      # Z
    assert (rows[3].end_at - rows[3].start_at).total_seconds() == 5400
    assert len(conflicts) == 1 and {conflicts[0].op_a, conflicts[0].op_b} == {1, 2}
    assert len(alerts) == 1


def test_jsonl_import_same_keys_and_zone_column(db_url, tmp_path):
    f = tmp_path / "ops.jsonl"
    f.write_text("\n".join(json.dumps(d) for d in [
        {"type": "patrol", "agency": "USCG", "at": "40.60,-74.06", "start": "2026-12-05T10:00", "end": "2h",
         "zone": "NY"},
        {"type": "inspection", "agency": "CBP", "at": [33.74, -118.27], "start": "2026-12-05T10:00", "zone": "LALB",
         "note": None},
    ]) + "\n\n")
    out = run("import", "ops", str(f), "--db", db_url)
    assert out.exit_code == 0, out.output
    rows, _, _ = stored(db_url)
    assert [(r.zone_code, r.type) for r in rows] == [("NY", "patrol"), ("LALB", "inspection")]
    assert rows[0].start_at.isoformat() == "2026-12-05T15:00:00+00:00"  # New York local, EST
    assert rows[1].end_at - rows[1].start_at == rows[0].end_at - rows[0].start_at  # default 2 h


@pytest.mark.parametrize("name,text,message", [
    ("ops.csv", GOOD_CSV + 'patrol,CBP,,"95,0",,2026-12-05T14:00,2h,,,\n', "row 5: at: latitude 95 is out of range"),
    ("ops.csv", GOOD_CSV.replace("IMO9074729", "IMO9074728"), "row 1: vessel: IMO9074728 has a wrong check digit"),
    ("ops.csv", GOOD_CSV.replace("366123456", "12345"), "row 4: vessel: MMSI must be 9 digits"),
    ("ops.csv", GOOD_CSV.replace("USCG", "NAVYX"), "row 2: agency: unknown agency 'NAVYX'"),
    ("ops.csv", GOOD_CSV.replace("escort", "flying"), "row 3: type: unknown type 'flying'"),
    ("ops.csv", GOOD_CSV.replace("1h30m", "2026-12-07T07:00"), "row 4: end: must be after start"),
    ("ops.csv", GOOD_CSV.replace("2026-12-06T09:00Z", ""), "row 3: start: missing"),
    ("ops.csv", GOOD_CSV.replace(",contact\n", ",colour\n"), "row 1: colour: unknown column"),
    ("ops.jsonl", '{"type":"patrol","agency":"CBP","at":"1,1","start":"+1h"}\n{"type": \n',
     "row 2: not valid JSON"),
    ("ops.jsonl", '{"type":"patrol","agency":"CBP","at":"1,1","start":"+1h"}\n[1,2]\n', "row 2: must be a JSON object"),
])
def test_a_bad_row_anywhere_stores_nothing_and_names_row_and_field(sqlite_url, tmp_path, name, text, message):
    check_refused(sqlite_url, tmp_path, name, text, message)


def test_a_bad_last_row_stores_nothing_on_either_database(db_url, tmp_path):
    check_refused(db_url, tmp_path, "ops.csv", GOOD_CSV + GOOD_CSV.removeprefix(HEADER) * 49 + 'patrol,CBP,,"1,1",,2026-12-05T14:00,0m,,,\n',
                  "row 201: end: duration must be longer than zero")


def check_refused(db_url, tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    out = run("import", "ops", str(f), "--zone", "LALB", "--db", db_url)
    assert out.exit_code == 1
    assert message in out.output, out.output
    assert "Traceback" not in out.output
    rows, conflicts, alerts = stored(db_url)
    assert rows == [] and conflicts == [] and alerts == []


def test_zone_is_required_without_a_zone_column(sqlite_url, tmp_path):
    f = tmp_path / "ops.csv"
    f.write_text(GOOD_CSV)
    out = run("import", "ops", str(f), "--db", sqlite_url)
    assert out.exit_code == 1 and "row 1: zone: missing (give --zone or a zone column)" in out.output
    assert run("import", "ops", str(f), "--zone", "ATLANTIS", "--db", sqlite_url).exit_code == 2
    assert run("import", "ops", str(tmp_path / "missing.csv"), "--zone", "LALB", "--db", sqlite_url).exit_code == 2
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    out = run("import", "ops", str(empty), "--zone", "LALB", "--db", sqlite_url)
    assert out.exit_code == 1 and "no rows to import" in out.output


def test_imported_ops_conflict_with_logged_ones_and_post_one_summary_alert(db_url, tmp_path, clock):
    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    assert "OP-1 logged" in alice.say("!op log boarding at=33.74,-118.27 start=2026-12-05T14:00 end=3h")
    # five USCG patrols on the same spot and time: each conflicts with OP-1 and with every other agency's
    lines = "".join(f'patrol,{a},,"33.74,-118.27",,2026-12-05T15:00,1h,,,\n'
                    for a in ("USCG", "HSI", "PD", "PORT", "AMO"))
    f = tmp_path / "ops.csv"
    f.write_text(HEADER + lines)
    out = run("import", "ops", str(f), "--zone", "LALB", "--db", db_url)
    assert out.exit_code == 0, out.output
    assert "15 conflicts raised" in out.output  # 6 agencies pairwise
    rows, conflicts, alerts = stored(db_url)
    assert len(rows) == 6 and len(conflicts) == 15
    assert len(alerts) == 1  # one summary, not one per row or per conflict
    text = json.loads(alerts[0].payload)["text"]
    assert "15 new conflicts" in text and "import of 5 operations from ops.csv" in text
    db = Database(db_url)
    with db.session() as s:
        audit = s.exec(select(AuditRow).where(AuditRow.action == "op.import")).one()
        assert audit.entity == "OP-2..OP-6"
    db.dispose()
    # a console user in the zone sees the alert
    listing = alice.say("!conflicts")
    assert "15 conflicts" in listing


def test_import_subprocess_exit_codes(tmp_path):
    db = f"sqlite:///{tmp_path / 'wf.db'}"
    f = tmp_path / "ops.csv"
    f.write_text(GOOD_CSV.replace("USCG", "NAVYX"))
    env = {**os.environ, "WATCHFLOOR_DB_URL": db}
    bad = subprocess.run([sys.executable, "-m", "watchfloor.bot.cli", "import", "ops", str(f), "--zone", "LALB"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and bad.stderr.strip() == "row 2: agency: unknown agency 'NAVYX'"


def _ops_csv(path, n: int) -> None:
    # Run by a process on the real clock: the days are the 28 after today.
    days = [datetime.now(UTC).date() + timedelta(days=1 + d) for d in range(28)]
    lines = ["type,agency,at,start,end"]
    lines += [f"patrol,USCG,\"33.{i % 90:02d},-118.2\",{days[i % 28]}T{i % 24:02d}:00,1h" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def test_import_shows_progress_on_a_terminal_and_nothing_extra_when_piped(tmp_path):
    import pty

    f = tmp_path / "ops.csv"
    _ops_csv(f, 5000)
    cmd = [sys.executable, "-m", "watchfloor.bot.cli", "import", "ops", str(f), "--zone", "LALB"]
    env = {**os.environ, "WATCHFLOOR_DB_URL": f"sqlite:///{tmp_path / 'piped.db'}", "COLUMNS": "120"}
    piped = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == "" and len(piped.stdout.splitlines()) == 1
    assert piped.stdout.startswith("imported 5000 operations")

    # stderr on a terminal (a pseudo-terminal here), stdout still piped: the bar goes to the terminal only
    leader, follower = pty.openpty()
    env["WATCHFLOOR_DB_URL"] = f"sqlite:///{tmp_path / 'tty.db'}"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower, text=True, env=env)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closes when the process ends
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=300)
    os.close(leader)
    assert proc.returncode == 0 and out.startswith("imported 5000 operations")
    screen = seen.decode("utf-8", "replace")
    assert "5000/5000" in screen and "rows/s" in screen and "checking" in screen and "storing" in screen


def test_a_bad_row_in_the_middle_stores_nothing_and_uses_no_ids(db_url, tmp_path):
    good = GOOD_CSV.removeprefix(HEADER) * 25
    check_refused(db_url, tmp_path, "ops.csv", HEADER + good + 'patrol,CBP,,"33.7,-118.2",9km9,2026-12-05T14:00,1h,,,\n'
                  + good, "row 101: radius: '9km9' is not a distance")
    # the refused import took no ids from the sequence: the next one starts at OP-1
    f = tmp_path / "ok.csv"
    f.write_text(GOOD_CSV)
    out = run("import", "ops", str(f), "--zone", "LALB", "--db", db_url)
    assert out.exit_code == 0 and out.output.startswith("imported 4 operations (OP-1..OP-4)"), out.output


def test_imported_rows_are_checked_as_op_log_checks_each_and_a_scan_finds_nothing_more(db_url, tmp_path, clock):
    from watchfloor.commands.importer import import_ops
    from watchfloor.storage.audit import verify

    parts = make_parts(db_url, clock)
    alice = ConsoleUser(parts, "LALB", "alice", "CBP")
    bob = ConsoleUser(parts, "LALB", "bob", "USCG")
    assert "CF-1" in alice.say('!target nominate IMO9074729 eta=+5h priority=high reason="manifest"')  # a gap
    alice.say("!op log boarding at=33.74,-118.27 start=2026-12-05T22:00Z end=3h")
    assert "CF-2" in bob.say("!op log patrol at=33.74,-118.27 start=2026-12-05T22:30Z end=1h")
    f = tmp_path / "ops.csv"
    f.write_text("type,agency,vessel,at,start,end\n"
                 'patrol,HSI,,"33.74,-118.27",2026-12-05T22:00Z,1h\n'           # meets OP-1 and OP-2
                 'patrol,PD,,"33.7401,-118.2701",2026-12-05T22:30Z,1h\n'       # meets OP-1, OP-2 and row 1
                 'boarding,USCG,IMO9074729,"33.60,-118.10",2026-12-01T19:00Z,2h\n'  # covers the target
                 'inspection,CBP,IMO9074729,"33.80,-118.40",2026-12-01T23:00Z,1h\n'  # same vessel as row 3
                 'patrol,PORT,,"33.74,-118.27",2026-11-20T10:00Z,1h\n')         # long over: meets nothing live
    result = import_ops(parts.engine, f, "LALB")
    assert (result.first_id, result.last_id) == (3, 7)
    with parts.db.session() as s:
        conflicts = s.exec(select(ConflictRow).order_by(ConflictRow.id)).all()
        pairs = {(c.kind, c.op_a, c.op_b) for c in conflicts if c.status == "open"}
        assert sorted(result.conflicts) == sorted(f"CF-{c.id}" for c in conflicts[2:])
        assert pairs == {("overlap", 1, 2), ("overlap", 1, 3), ("overlap", 2, 3), ("overlap", 1, 4), ("overlap", 2, 4),
                         ("overlap", 3, 4), ("same-vessel", 5, 6)}
        assert len(conflicts) == 8  # CF-1..CF-2 stored, six raised by the import: CF-2 not again
        assert conflicts[0].kind == "gap" and conflicts[0].status == "closed"
        assert conflicts[0].closed_reason == "now covered by USCG OP-5"
        # nothing left for a scan of the zone: the import found what it would
        again = parts.engine.deconfliction.scan_zone(s, "LALB", clock(), "test")
        assert not again.raised and not again.closed
        # every conflict raised once in the audit trail, whose chain still holds
        raised = s.exec(select(AuditRow.entity).where(AuditRow.action == "conflict.raise")).all()
        assert sorted(raised) == sorted(f"CF-{c.id}" for c in conflicts)
        assert verify(s)[1] is None
    alerts = [r for r in stored(db_url)[2] if "import of 5 operations" in json.loads(r.payload)["text"]]
    assert len(alerts) == 1
    text = json.loads(alerts[0].payload)["text"]
    assert "6 new conflicts" in text and "CF-1 gap closed" in text, text
    parts.db.dispose()


CELLS = {  # for each column, good values first
    "type": ["patrol", "Boarding", " dive ", "", "flying"],
    "agency": ["CBP", "uscg", "", "NAVYX"],
    "vessel": ["", "IMO9074729", "366123456", "EVER GIVEN", "IMO9074728", "12345", "9074729", "x" * 90],
    "at": ["33.74,-118.27", "", "33.7;-118.2", "95,0", "abc", "nan,1", "0,181"],
    "radius": ["", "500m", "1nm", ".5km", "0m", "9km9", "300km"],
    "start": ["2026-12-05T14:00", "2026-12-06T09:00Z", "+2h", "14:00", "now", "2026-11-20 10:00", "",
              "2026-03-08T02:30", "2026-11-01T01:30", "1999-01-01T00:00", "garbage", "03:00"],
    "end": ["", "2h", "1h30m", "16:00", "2026-12-05T16:00Z", "0m", "2026-12-01T07:00", "200h", "xyz"],
    "mark": ["", "FOUO", "les", "SECRET"],
    "note": ["", "pilot boards, 0600", "  spaced   out  ", "é", "tab\there", "ctl\x07", "x" * 1001],
    "contact": ["", "CBP desk", "\u202eevil", "x" * 201],
    "zone": ["LALB", "ny", "", "ATLANTIS"],
}


def test_each_row_is_checked_exactly_as_op_log_checks_its_keys(sqlite_url):
    """The import parses each distinct value once, outside apply_op_fields: on random rows, good and bad, it
    refuses the same rows for the same reason and stores the same values as op log's checks would."""
    import random
    from types import SimpleNamespace

    from watchfloor.commands.errors import CommandError
    from watchfloor.commands.grammar import Token
    from watchfloor.commands.importer import COLUMNS, STORED, _Rows
    from watchfloor.commands.ops import OP_KEYS, _op_type, apply_op_fields
    from watchfloor.ioc.zones import get_zone
    from tests.conftest import Clock

    parts = make_parts(sqlite_url, Clock())
    now, engine = parts.engine.clock(), parts.engine

    def as_op_log(cells: dict[str, str]):
        cells = {k: v.strip() for k, v in cells.items()}
        zone = get_zone(cells.get("zone") or "LALB")
        if zone is None:
            raise CommandError("zone", f"unknown zone '{cells['zone'][:16]}'")
        agency = cells["agency"].upper()
        if not agency or not engine.directory.agency_known(agency):
            raise CommandError("agency", "missing" if not agency else f"unknown agency '{agency[:24]}'")
        if not cells["type"]:
            raise CommandError("type", "missing")
        row = SimpleNamespace(vessel_key=None, lat=None, lon=None, radius_m=500.0, min_lat=None, max_lat=None,
                              min_lon=None, max_lon=None, marking="UNCLASS", note=None, contact=None,
                              type=_op_type(cells["type"]), start_at=now, end_at=now)
        pairs = {k: Token(v, quoted=(k == "vessel" and not v.isdigit() and not v.upper().startswith("IMO")))
                 for k, v in cells.items() if k in OP_KEYS and v != ""}
        if "start" not in pairs:
            raise CommandError("start", "missing")
        apply_op_fields(row, pairs, zone=zone, now=now, rules=engine.rules, far_km=500, fresh=True)
        return (zone.code, agency, row.type, row.vessel_key, row.lat, row.lon, row.radius_m, row.min_lat,
                row.max_lat, row.min_lon, row.max_lon, row.start_at, row.end_at, row.marking, "planned", row.note,
                row.contact, "import", now, now, 1)

    def outcome(check, arg):
        try:
            return check(arg)
        except CommandError as e:
            return e.line

    rng = random.Random(16)
    rows = _Rows(engine, "LALB", now, "import")
    outcomes = set()
    for _ in range(3000):
        cells = {c: values[rng.randrange(2)] if rng.random() < 0.93 else rng.choice(values)
                 for c, values in CELLS.items()}
        mine, reference = outcome(rows.check, tuple(cells[c].strip() for c in COLUMNS)), outcome(as_op_log, cells)
        assert mine == reference, cells
        outcomes.add(mine.split(":")[0] if isinstance(mine, str) else "stored")
    assert len(STORED) == 21 and {"stored", "start", "end", "at", "vessel", "radius", "zone"} <= outcomes
    parts.db.dispose()
