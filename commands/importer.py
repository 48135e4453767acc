"""`watchfloor import ops FILE`: CSV or JSON Lines, every row validated first, then all stored or none."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from types import SimpleNamespace

from pydantic_core import PydanticUndefined

from watchfloor.ioc.model import op_ref
from watchfloor.ioc.zones import get_zone
from watchfloor.storage import locks
from watchfloor.storage.audit import append as audit
from watchfloor.storage.tables import OperationRow

from .deconflict import Changes
from .engine import Engine
from .errors import CommandError
from .grammar import Token
from .ops import OP_KEYS, _op_type, apply_op_fields

COLUMNS = ("type", "agency", "vessel", "at", "radius", "start", "end", "mark", "note", "contact", "zone")
BATCH = 5000
ALERT_LIST = 20
TICK = 2000  # rows between progress reports
Progress = Callable[[str, int, int], None]  # (phase, rows done, rows in all): the CLI draws it on a terminal
_DEFAULTS = {name: f.default for name, f in OperationRow.model_fields.items()
             if name != "id" and f.default is not PydanticUndefined}


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


def read_rows(path: Path) -> list[dict[str, str]]:
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json") or text.lstrip().startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ImportError_([f"row {n}: not valid JSON ({e.msg})"]) from None
            if not isinstance(obj, dict):
                raise ImportError_([f"row {n}: must be a JSON object"])
            rows.append({k: "" if v is None else (",".join(map(str, v)) if isinstance(v, list) else str(v))
                         for k, v in obj.items()})
        return rows
    return list(csv.DictReader(io.StringIO(text)))


def _quiet(_phase: str, _done: int, _total: int) -> None:
    pass


def validate(engine: Engine, rows: list[dict[str, str]], zone_code: str | None, now: datetime,
             actor: str, progress: Progress = _quiet) -> list[dict]:
    """Turn every row into an insertable dict, or raise with every bad row named (row numbers from 1)."""
    problems: list[str] = []
    out: list[dict] = []
    rules = engine.rules
    far = engine.directory.settings.conflicts.far_from_zone_km
    for n, raw in enumerate(rows, start=1):
        if n % TICK == 0:
            progress("checking", n, len(rows))
        try:
            unknown = [k for k in raw if k and k.strip().lower() not in COLUMNS]
            if unknown:
                raise CommandError(unknown[0], "unknown column")
            cells = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            code = cells.get("zone") or zone_code
            if not code:
                raise CommandError("zone", "missing (give --zone or a zone column)")
            zone = get_zone(code)
            if zone is None:
                raise CommandError("zone", f"unknown zone '{code[:16]}'")
            agency = cells.get("agency", "").upper()
            if not agency:
                raise CommandError("agency", "missing")
            if not engine.directory.agency_known(agency):
                raise CommandError("agency", f"unknown agency '{agency[:24]}'")
            if not cells.get("type"):
                raise CommandError("type", "missing")
            # a plain record, not an OperationRow: building 200,000 SQLModel objects costs more than the insert
            row = SimpleNamespace(**_DEFAULTS, zone_code=zone.code, agency_code=agency, type=_op_type(cells["type"]),
                                  start_at=now, end_at=now, created_by=actor, created_at=now, updated_at=now)
            pairs = {k: Token(v, quoted=(k == "vessel" and not v.isdigit() and not v.upper().startswith("IMO")))
                     for k, v in cells.items() if k in OP_KEYS and v != ""}
            if "start" not in pairs:
                raise CommandError("start", "missing")
            apply_op_fields(row, pairs, zone=zone, now=now, rules=rules, far_km=far, fresh=True)
            out.append(vars(row))
        except CommandError as e:
            problems.append(f"row {n}: {e.line}")
            if len(problems) >= 50:
                problems.append("… stopping after 50 problems")
                break
    if problems:
        raise ImportError_(problems)
    progress("checking", len(rows), len(rows))
    return out


def import_ops(engine: Engine, path: Path, zone_code: str | None, actor: str = "import",
               progress: Progress = _quiet) -> ImportResult:
    now = engine.clock()
    rows = validate(engine, read_rows(path), zone_code, now, actor, progress)
    if not rows:
        raise ImportError_(["file: no rows to import"])
    changes = Changes()
    table = OperationRow.__table__
    zones = sorted({r["zone_code"] for r in rows})
    with engine.db.session() as s:
        # First, as every writer does (storage/locks.py): the scans below take them, after the audit record.
        locks.hold(s, *(locks.deconfliction_lock(z) for z in zones))
        if engine.db.is_postgres:
            first, last = _copy_postgres(s, table, rows)
        else:
            first = last = None
            for i in range(0, len(rows), BATCH):
                # Core, not the ORM bulk path: the ORM splices each batch's RETURNING rows into the last
                ids = s.connection().execute(table.insert().returning(table.c.id), rows[i:i + BATCH]).scalars().all()
                first = min(ids) if first is None else min(first, min(ids))
                last = max(ids) if last is None else max(last, max(ids))
                progress("storing", min(i + BATCH, len(rows)), len(rows))
        progress("storing", len(rows), len(rows))
        progress("checking conflicts", 0, len(zones))
        audit(s, at=now, actor=actor, action="op.import", entity=f"{op_ref(first)}..{op_ref(last)}",
              zone=zones[0] if len(zones) == 1 else None, detail={"rows": len(rows), "file": path.name, "zones": zones})
        for z in zones:
            zc = engine.deconfliction.scan_zone(s, z, now, actor)
            progress("checking conflicts", zones.index(z) + 1, len(zones))
            changes.merge(zc)
            if not zc:
                continue
            # one summary alert: a years-long import can raise thousands, which no watch room (nor Slack's
            # 50-block limit) can take in one message; the rest are listed by `!conflicts`
            cause = f"import of {len(rows)} operations from {path.name}"
            shown = Changes(zc.raised[:ALERT_LIST], zc.closed[:ALERT_LIST])
            if len(zc.raised) > ALERT_LIST or len(zc.closed) > ALERT_LIST:
                cause += (f": {len(zc.raised)} conflicts raised, {len(zc.closed)} closed in all; "
                          f"the first {ALERT_LIST} below, !conflicts lists every open one")
            engine.deconfliction.alert(s, z, shown, now, cause=cause)
    return ImportResult(len(rows), first, last, [f"CF-{c.id}" for c in changes.raised])


def _copy_postgres(s, table, rows: list[dict]) -> tuple[int, int]:
    """COPY the rows in, with ids taken from the table's own sequence first (so they stay unique and never
    reused while other processes write). psycopg re-parses every multi-row INSERT statement, which at 200,000
    rows costs far more than the insert itself; COPY skips that."""
    conn = s.connection()
    ids = conn.exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence('operation', 'id')) FROM generate_series(1, %(n)s)",
        {"n": len(rows)}).scalars().all()
    columns = ["id", *rows[0].keys()]
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        with cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for op_id, row in zip(ids, rows):
                copy.write_row((op_id, *row.values()))
    return min(ids), max(ids)
