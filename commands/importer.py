"""`watchfloor import ops FILE`: CSV or JSON Lines, every row validated first, then all stored or none.

Fast enough for years of plans at once (bench/bench_history.py: 200,000 rows, goal ≥ 25,000 rows/s on
PostgreSQL) by doing per row only what differs per row: every value goes through the parsers `op log` uses
(commands/values.py), but one repeated across rows (type, agency, vessel, radius, duration, marking, contact) is
parsed once per import; the rows go in with one COPY; their conflicts are found by one sweep over them and the
stored operations they can meet, and recorded a batch at a time.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from pathlib import Path

from sqlmodel import Session, col, select

from watchfloor.ioc.conflicts import sweep
from watchfloor.ioc.geo import circle_bbox
from watchfloor.ioc.markings import Marking, highest
from watchfloor.ioc.model import ConflictStatus, Operation, op_ref
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import locks
from watchfloor.storage import operations as ops_repo
from watchfloor.storage import targets as targets_repo
from watchfloor.storage import audit as audit_chain
from watchfloor.storage.audit import hold_chain
from watchfloor.storage.audit import append as audit
from watchfloor.storage.tables import AuditRow, ConflictRow, OperationRow

from .deconflict import Changes
from .engine import Engine
from .errors import CommandError
from .ops import DEFAULT_DURATION, _op_type
from .values import (_DURATION, MAX_TEXT, parse_duration, parse_end, parse_marking, parse_position, parse_radius,
                     parse_start, parse_text, parse_vessel_field)

COLUMNS = ("type", "agency", "vessel", "at", "radius", "start", "end", "mark", "note", "contact", "zone")
_TYPE, _AGENCY, _VESSEL, _AT, _RADIUS, _START, _END, _MARK, _NOTE, _CONTACT, _ZONE = range(len(COLUMNS))
# What each imported row stores, in this order (the COPY's columns; the id comes first, from the sequence).
STORED = ("zone_code", "agency_code", "type", "vessel_key", "lat", "lon", "radius_m", "min_lat", "max_lat",
          "min_lon", "max_lon", "start_at", "end_at", "marking", "status", "note", "contact", "created_by",
          "created_at", "updated_at", "revision")
BATCH = 5000
ALERT_LIST = 20
TICK = 2000  # rows between progress reports
Progress = Callable[[str, int, int], None]  # (phase, rows done, rows in all): the CLI draws it on a terminal
_DEFAULT_RADIUS = OperationRow.model_fields["radius_m"].default


class ImportError_(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportResult:
    count: int
    first_id: int | None
    last_id: int | None
    conflicts: list[str]


@dataclass
class Table:
    """The file's rows, each its cells in COLUMNS' order (stripped; "" where absent), and the first unknown column
    a row has (as written) by row index."""
    rows: list[tuple[str, ...]]
    unknown: dict[int, str]


def read_rows(path: Path) -> Table:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
        table = Table([], {})
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ImportError_([f"row {n}: not valid JSON ({e.msg})"]) from None
            if not isinstance(obj, dict):
                raise ImportError_([f"row {n}: must be a JSON object"])
            raw = {k: "" if v is None else (",".join(map(str, v)) if isinstance(v, list) else str(v))
                   for k, v in obj.items()}
            cells = {k.strip().lower(): v.strip() for k, v in raw.items() if k}
            if unknown := _unknown(raw):
                table.unknown[len(table.rows)] = unknown
            table.rows.append(tuple(cells.get(c, "") for c in COLUMNS))
        return table
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    width = len(header)
    # Where each column's cell is; a repeated column's last (as csv.DictReader has it); an absent column reads
    # the empty cell added at the end of every row.
    where = {h.strip().lower(): i for i, h in enumerate(header) if h}
    take = itemgetter(*(where.get(c, -1) for c in COLUMNS))
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) < width:  # a short row lacks its last cells; a long row's extra cells belong to no column
            row.extend([""] * (width - len(row)))
        row.append("")
        rows.append(tuple(map(str.strip, take(row))))
    unknown = _unknown(header)
    return Table(rows, dict.fromkeys(range(len(rows)), unknown) if unknown else {})


def _unknown(keys) -> str | None:
    return next((k for k in keys if k and k.strip().lower() not in COLUMNS), None)


def _quiet(_phase: str, _done: int, _total: int) -> None:
    pass


class _Parsed(dict):
    """text -> parsed value, each distinct text parsed once; a refused one raises (and is not kept)."""

    def __init__(self, parse):
        super().__init__()
        self.parse = parse

    def __missing__(self, text: str):
        value = self[text] = self.parse(text)
        return value


class _Rows:
    """Checks one row at a time as `op log` checks its keys (commands/ops.py apply_op_fields), in the same order
    so a row with several faults is refused for the same one, and returns what it stores (STORED's order).
    Values repeated across rows are parsed once: the parsers are pure given the zone and the import's clock."""

    def __init__(self, engine: Engine, zone_code: str | None, now: datetime, actor: str):
        self.rules, self.directory, self.zone_code, self.now, self.actor = (
            engine.rules, engine.directory, zone_code, now, actor)
        self.zones: dict = {}
        self.agencies: set[str] = set()
        self.types = _Parsed(_op_type)
        self.vessels = _Parsed(_vessel_key)
        self.radii = _Parsed(lambda t: parse_radius(t, self.rules.max_radius_m))
        self.durations = _Parsed(lambda t: parse_duration("end", t))
        self.marks = _Parsed(lambda t: parse_marking(t).value)
        self.contacts = _Parsed(lambda t: _text("contact", t))
        self.starts: dict[str, _Parsed] = {}  # by zone: a local time means that zone's

    def check(self, cells: tuple[str, ...]) -> tuple:
        code = cells[_ZONE] or self.zone_code
        if not code:
            raise CommandError("zone", "missing (give --zone or a zone column)")
        zone = self.zones.get(code)
        if zone is None:
            zone = get_zone(code)
            if zone is None:
                raise CommandError("zone", f"unknown zone '{code[:16]}'")
            self.zones[code] = zone
        agency = cells[_AGENCY].upper()
        if not agency:
            raise CommandError("agency", "missing")
        if agency not in self.agencies:
            if not self.directory.agency_known(agency):
                raise CommandError("agency", f"unknown agency '{agency[:24]}'")
            self.agencies.add(agency)
        if not cells[_TYPE]:
            raise CommandError("type", "missing")
        typ = self.types[cells[_TYPE]]
        start_text = cells[_START]
        if not start_text:
            raise CommandError("start", "missing")
        vessel = cells[_VESSEL]
        vessel = self.vessels[vessel] if vessel else None
        lat = lon = min_lat = max_lat = min_lon = max_lon = None
        at = cells[_AT]
        if at:
            lat, lon = parse_position(at)
        radius = _DEFAULT_RADIUS
        if cells[_RADIUS]:
            radius = self.radii[cells[_RADIUS]]
        if lat is not None:
            box = circle_bbox(lat, lon, radius)
            min_lat, max_lat, min_lon, max_lon = box.min_lat, box.max_lat, box.min_lon, box.max_lon
        # (op log warns of a place far from the zone; an import shows no warnings, so that check is not made)
        starts = self.starts.get(zone.code)
        if starts is None:
            starts = self.starts[zone.code] = _Parsed(lambda t, tz=zone.tz: parse_start(t, tz, self.now))
        start = starts[start_text]
        end_text = cells[_END]
        if not end_text:
            end = start + DEFAULT_DURATION
        elif end_text in self.durations or _DURATION.match(end_text):
            end = start + self.durations[end_text]  # a duration after the start, as parse_end reads it
        else:
            end = parse_end(end_text, start, zone.tz, self.now)
        if end <= start:
            raise CommandError("end", "must be after start")
        if end - start > self.rules.max_operation:
            raise CommandError("end", f"an operation may last at most "
                                      f"{self.rules.max_operation.total_seconds() / 3600:g} h")
        mark = cells[_MARK]
        mark = self.marks[mark] if mark else "UNCLASS"
        note = cells[_NOTE]
        note = (_text("note", note) or None) if note else None
        contact = cells[_CONTACT]
        contact = self.contacts[contact] if contact else None
        if lat is None and not vessel:
            raise CommandError("at", "give a place (at=LAT,LON) or a vessel (vessel=IMO...)")
        return (zone.code, agency, typ, vessel, lat, lon, radius, min_lat, max_lat, min_lon, max_lon, start, end,
                mark, "planned", note, contact, self.actor, self.now, self.now, 1)


def _vessel_key(text: str) -> str:
    # as `op log` tokenises it: a name is read as quoted, a number or IMO... as an identifier
    return parse_vessel_field(text, quoted=not text.isdigit() and not text.upper().startswith("IMO")).key


def _text(field: str, value: str) -> str:
    """parse_text's result; printable ASCII cannot hold the control characters it looks for, so skip that scan."""
    if value.isascii() and value.isprintable():
        value = " ".join(value.split())
        if len(value) <= MAX_TEXT.get(field, 500):
            return value
    return parse_text(field, value)


def validate(engine: Engine, table: Table, zone_code: str | None, now: datetime, actor: str,
             progress: Progress = _quiet) -> list[tuple]:
    """Turn every row into the values it stores (STORED's order), or raise with every bad row named (from 1)."""
    problems: list[str] = []
    out: list[tuple] = []
    check = _Rows(engine, zone_code, now, actor).check
    total = len(table.rows)
    for n, cells in enumerate(table.rows, start=1):
        if n % TICK == 0:
            progress("checking", n, total)
        try:
            if n - 1 in table.unknown:
                raise CommandError(table.unknown[n - 1], "unknown column")
            out.append(check(cells))
        except CommandError as e:
            problems.append(f"row {n}: {e.line}")
            if len(problems) >= 50:
                problems.append("… stopping after 50 problems")
                break
    if problems:
        raise ImportError_(problems)
    progress("checking", total, total)
    return out


def import_ops(engine: Engine, path: Path, zone_code: str | None, actor: str = "import",
               progress: Progress = _quiet) -> ImportResult:
    now = engine.clock()
    rows = validate(engine, read_rows(path), zone_code, now, actor, progress)
    if not rows:
        raise ImportError_(["file: no rows to import"])
    raised: list[int] = []
    zones = sorted({r[0] for r in rows})
    # The rows that can still meet another, as a scan of the zone reads them: not over for longer than the
    # same-vessel window (by their positions in `rows`, by zone).
    since = now - engine.rules.same_vessel_window
    current: dict[str, list[int]] = {z: [] for z in zones}
    for k, r in enumerate(rows):
        if r[12] > since:
            current[r[0]].append(k)
    with engine.db.session() as s:
        # First, as every writer does (storage/locks.py): the zones stay as read below until this commits.
        locks.hold(s, *(locks.deconfliction_lock(z) for z in zones))
        stored = {z: _stored_near(engine, s, z, [rows[k] for k in current[z]], since) for z in zones}
        ids = _insert(s, OperationRow.__table__, STORED, rows, progress)
        progress("storing", len(rows), len(rows))
        first, last = min(ids), max(ids)
        audit(s, at=now, actor=actor, action="op.import", entity=f"{op_ref(first)}..{op_ref(last)}",
              zone=zones[0] if len(zones) == 1 else None, detail={"rows": len(rows), "file": path.name, "zones": zones})
        for i, z in enumerate(zones):
            progress("checking conflicts", i, len(zones))
            mine = {ids[k]: _operation(ids[k], rows[k]) for k in current[z]}
            zc, new_ids = _check_zone(engine, s, z, mine, stored[z], now, actor)
            raised += new_ids
            if not zc:
                continue
            # one summary alert: a years-long import can raise thousands, which no watch room (nor Slack's
            # 50-block limit) can take in one message; the rest are listed by `!conflicts`
            cause = f"import of {len(rows)} operations from {path.name}"
            shown = Changes(zc.raised[:ALERT_LIST], zc.closed[:ALERT_LIST])
            if len(new_ids) > ALERT_LIST or len(zc.closed) > ALERT_LIST:
                cause += (f": {len(new_ids)} conflicts raised, {len(zc.closed)} closed in all; "
                          f"the first {ALERT_LIST} below, !conflicts lists every open one")
            engine.deconfliction.alert(s, z, shown, now, cause=cause)
        progress("checking conflicts", len(zones), len(zones))
    return ImportResult(len(rows), first, last, [f"CF-{i}" for i in raised])


def _insert(s: Session, table, columns: tuple[str, ...], rows: list[tuple],
            progress: Progress = _quiet) -> list[int]:
    """Insert the rows (values in `columns`' order) and return their ids, in the rows' order."""
    if s.get_bind().dialect.name == "postgresql":
        return _copy_postgres(s, table.name, columns, rows)
    ids: list[int] = []
    for i in range(0, len(rows), BATCH):
        # Core, not the ORM bulk path: the ORM splices each batch's RETURNING rows into the last
        ids += s.connection().execute(table.insert().returning(table.c.id, sort_by_parameter_order=True),
                                      [dict(zip(columns, r)) for r in rows[i:i + BATCH]]).scalars().all()
        progress("storing", min(i + BATCH, len(rows)), len(rows))
    return ids


def _copy_postgres(s: Session, table: str, columns: tuple[str, ...], rows: list[tuple]) -> list[int]:
    """COPY the rows in, with ids taken from the table's own sequence first (so they stay unique and never
    reused while other processes write; ascending, so an audit chain's order is its ids' order). psycopg
    re-parses every multi-row INSERT statement, which at 200,000 rows costs far more than the insert itself;
    COPY skips that, and its binary form skips formatting times and numbers as text (several times faster)."""
    raw = s.connection().connection.driver_connection
    with raw.cursor() as cur:
        cur.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, %s)",
                    (len(rows),))
        ids = sorted(i for (i,) in cur.fetchall())
        cur.execute("SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
                    (table,))
        oids = dict(cur.fetchall())
        with cur.copy(f"COPY {table} (id, {', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([oids["id"], *(oids[c] for c in columns)])  # binary values must match exactly
            write = copy.write_row
            for row_id, row in zip(ids, rows):
                write((row_id, *row))
    return ids


def _stored_near(engine: Engine, s: Session, zone: str, rows: list[tuple], since: datetime) -> dict[int, Operation]:
    """The zone's stored operations that the imported `rows` can meet: live, not over for longer than the
    same-vessel window (as a scan reads them), and within that window of the rows' stretch of time."""
    if not rows:
        return {}
    window = engine.rules.same_vessel_window
    lo, hi = min(r[11] for r in rows) - window, max(r[12] for r in rows) + window
    return ops_repo.current_in_zone(s, zone, max(since, lo), engine.rules.max_operation, starting_before=hi)


_MARKINGS = {m.value: m for m in Marking}


def _operation(op_id: int, r: tuple) -> Operation:
    return Operation(id=op_id, zone=r[0], agency=r[1], type=r[2], vessel_key=r[3], lat=r[4], lon=r[5], radius_m=r[6],
                     start=r[11], end=r[12], marking=_MARKINGS[r[13]], status=r[14], revision=r[20])


def _check_zone(engine: Engine, s: Session, zone: str, mine: dict[int, Operation], stored: dict[int, Operation],
                now: datetime, actor: str) -> tuple[Changes, list[int]]:
    """Check the zone's imported operations as `op log` checks one (commands/deconflict.py check_operation), all
    at once: one sweep over them and the stored operations they can meet (read before they went in). Their
    conflicts are new, as their ids are, so they are recorded in a few statements. Returns the changes (the
    raised ones loaded only as far as an alert shows them) and the ids of every conflict raised."""
    changes = Changes()
    if not mine:
        return changes, []
    hold_chain(s)  # the lock order: the audit chain's before any conflict row
    live = {**stored, **mine}
    found = sorted(f for f in sweep(live.values(), engine.rules) if f.op_ids[0] in mine or f.op_ids[1] in mine)
    new_ids = _raise_all(s, zone, found, live, now, actor)
    if new_ids:
        changes.raised = list(s.exec(select(ConflictRow).where(col(ConflictRow.id).in_(new_ids[:ALERT_LIST]))
                                     .order_by(ConflictRow.id)).all())
    # Targets on the imported vessels may be covered now (or, like op log, re-checked for a gap)
    vessels = {op.vessel_key for op in mine.values() if op.vessel_key}
    for target in targets_repo.open_in_zone(s, zone):
        if target.vessel_key in vessels:
            gap = engine.deconfliction.check_target(s, target, now, actor)
            new_ids += [cf.id for cf in gap.raised]
            changes.merge(gap)
    return changes, new_ids


_CONFLICT = ("zone_code", "kind", "key", "open_key", "op_a", "op_b", "rev_a", "rev_b", "marking", "status",
             "raised_at", "raised_by")
_AUDIT = ("at", "actor", "zone_code", "action", "entity", "detail", "prev_hash", "hash")


def _raise_all(s: Session, zone: str, found, live, now: datetime, actor: str) -> list[int]:
    """Record each finding as an open conflict, with one audit record each, as Deconfliction._raise does."""
    if not found:
        return []
    values = []
    for f in found:
        a, b = live[f.op_ids[0]], live[f.op_ids[1]]
        values.append((zone, f.kind, f.key, f.key, a.id, b.id, a.revision, b.revision,
                       highest([a.marking, b.marking]).value, ConflictStatus.OPEN.value, now, actor))
    ids = _insert(s, ConflictRow.__table__, _CONFLICT, values)
    _audit_all(s, now, actor, zone, [("conflict.raise", f"CF-{i}", {"kind": f.kind, "key": f.key})
                                     for i, f in zip(ids, found)])
    return list(ids)


def _audit_all(s: Session, at: datetime, actor: str, zone: str, records: list[tuple[str, str, dict]]) -> None:
    """Append many records to the audit trail at once: the hash chain and its head exactly as
    storage/audit.py `append` makes them one at a time (a round trip or three each)."""
    rows = audit_chain.chained(s, at=at, actor=actor, zone=zone, records=records)
    ids = _insert(s, AuditRow.__table__, _AUDIT, rows)
    audit_chain.set_head(s, max(ids), rows[-1][-1], at)
