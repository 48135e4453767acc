"""`watchfloor import noa` and `watchfloor import ais`: notices of arrival and recorded AIS feeds."""
from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from watchfloor.ioc.arrivals import NOA_COLUMNS, Notice
from watchfloor.ioc.vessels import imo_check_ok
from watchfloor.ioc.zones import Zone

from .errors import CommandError
from .values import parse_text, parse_time

MAX_PROBLEMS = 20
PROGRESS_EVERY = 10_000


class VesselImportError(Exception):
    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _imo(raw: str) -> str | None:
    value = raw.strip().upper().removeprefix("IMO").strip()
    if not value:
        return None
    if not (len(value) == 7 and value.isdigit()):
        raise CommandError("imo", f"'{raw.strip()[:16]}' is not IMO followed by 7 digits")
    if not imo_check_ok(value):
        raise CommandError("imo", f"IMO{value} has a wrong check digit")
    return value


def _mmsi(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not (len(value) == 9 and value.isdigit()):
        raise CommandError("mmsi", "MMSI must be 9 digits")
    return value


def _cdc(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("yes", "y", "true", "1"):
        return True
    if value in ("", "no", "n", "false", "0"):
        return False
    raise CommandError("cdc", f"'{raw.strip()[:16]}' is not yes or no")


def _persons(raw: str) -> int | None:
    value = raw.strip()
    if not value:
        return None
    if not value.isdigit() or int(value) > 100_000:
        raise CommandError("persons", f"'{value[:16]}' is not a number of persons")
    return int(value)


def _optional(field: str, raw: str, limit: int) -> str | None:
    value = parse_text(field, raw or "")
    if len(value) > limit:
        raise CommandError(field, f"longer than {limit} characters")
    return value or None


def notice_from_row(row: dict[str, str], zone: Zone, now: datetime) -> Notice:
    name = _optional("vessel_name", row.get("vessel_name") or "", 120)
    imo, mmsi = _imo(row.get("imo") or ""), _mmsi(row.get("mmsi") or "")
    if not name:
        raise CommandError("vessel_name", "is empty")
    if imo is None and mmsi is None:
        raise CommandError("imo", "a notice needs the vessel's IMO or MMSI")
    if not (row.get("eta") or "").strip():
        raise CommandError("eta", "is empty")
    eta = parse_time("eta", row["eta"], zone.tz, now)
    submitted = parse_time("submitted", row["submitted"], zone.tz, now) if (row.get("submitted") or "").strip() \
        else None
    return Notice(zone=zone.code, vessel_name=name.upper(), imo=imo, mmsi=mmsi,
                  call_sign=_optional("call_sign", row.get("call_sign") or "", 16),
                  flag=_optional("flag", row.get("flag") or "", 60), eta=eta,
                  last_port=_optional("last_port", row.get("last_port") or "", 120), cdc=_cdc(row.get("cdc") or ""),
                  persons=_persons(row.get("persons") or ""), submitted=submitted)


def read_notices(file: Path, zone: Zone, now: datetime) -> list[Notice]:
    """Every row validated; any problem refuses the whole file, naming row and field."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise VesselImportError([f"file: cannot read {file.name}: {type(e).__name__}"]) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    unknown = [h for h in header if h not in NOA_COLUMNS]
    missing = [c for c in ("vessel_name", "eta") if c not in header]
    if unknown or missing:
        problems = [f"header: unknown column '{h}'" for h in unknown]
        problems += [f"header: missing column '{c}'" for c in missing]
        raise VesselImportError(problems + [f"header: expected {','.join(NOA_COLUMNS)}"])
    reader.fieldnames = header
    notices, problems = [], []
    for n, row in enumerate(reader, start=2):
        if None in row:
            problems.append(f"row {n}: more cells than columns")
            continue
        try:
            notices.append(notice_from_row(row, zone, now))
        except CommandError as e:
            problems.append(f"row {n}: {e.line}")
        if len(problems) >= MAX_PROBLEMS:
            problems.append("(stopped after 20 problems)")
            break
    if problems:
        raise VesselImportError(problems)
    if not notices:
        raise VesselImportError(["file: no notices in it"])
    return notices


def import_noa(db, file: Path, zone: Zone, now: datetime | None = None) -> list[int]:
    from watchfloor.storage.vessels import add_notices

    now = now or datetime.now(UTC)
    notices = read_notices(file, zone, now)
    with db.session() as s:
        return add_notices(s, notices, now)


# --- recorded AIS feeds -------------------------------------------------------------------------------------

_CSV_HEAD = "MMSI,"


@dataclass
class AisImportResult:
    lines: int
    outcomes: dict[str, int]
    tracks: int
    positions: int
    notices: int
    vessels: int = 0  # distinct vessels now tracked (stored before, or heard in this file)


def _csv_lines(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, str]]]:
    header = None
    for line in lines:
        cells = next(csv.reader([line]))
        if header is None:
            header = [c.strip() for c in cells]
            continue
        yield line, dict(zip(header, cells))


def import_ais(db, directory, file: Path, progress: Callable[[int], None] | None = None,
               flush_every: int = 50_000) -> AisImportResult:
    """Feed every record through the live feed's path, each at its own time; flush in batches."""
    from .ais_ingest import AisIngest

    ingest = AisIngest(db, directory)
    ingest.resume()
    totals = {"tracks": 0, "positions": 0, "notices": 0}
    outcomes: dict[str, int] = {}

    def flush() -> None:
        # Notices are stamped with the feed's own time, not the wall clock, so replays read as they happened.
        when = ingest.latest or datetime.now(UTC)
        batch = ingest.take(when)
        done = ingest.write(batch, when)
        for k in totals:
            totals[k] += done[k]
        for k, v in batch.outcomes.items():
            outcomes[k] = outcomes.get(k, 0) + v

    count = 0
    with file.open("r", encoding="utf-8", errors="replace") as fh:
        first = fh.readline()
        fh.seek(0)
        lines = (line.rstrip("\r\n") for line in fh)
        if first.upper().startswith(_CSV_HEAD):
            for _, row in _csv_lines(lines):
                outcome, reports = archive_reports(row)
                ingest.outcomes[outcome] += 1
                ingest.apply(reports)
                count += 1
                if count % flush_every == 0:
                    flush()
                if progress and count % PROGRESS_EVERY == 0:
                    progress(count)
        else:
            started = datetime.now(UTC)
            for line in lines:
                if not line.strip():
                    continue
                # A line without a time of its own is taken as heard just after the one before.
                ingest.feed(line, ingest.latest or started)
                count += 1
                if count % flush_every == 0:
                    flush()
                if progress and count % PROGRESS_EVERY == 0:
                    progress(count)
    flush()
    if progress:
        progress(count)
    return AisImportResult(count, outcomes, totals["tracks"], totals["positions"], totals["notices"],
                           len(ingest.tracks))


def _num(row: dict[str, str], key: str) -> float | None:
    value = (row.get(key) or "").strip()
    if not value:
        return None
    return float(value)


def archive_reports(row: dict[str, str]):
    """One row of the U.S. national AIS archive (MarineCadastre) as reports, with its outcome."""
    from watchfloor.ioc.ais import MALFORMED, OK, PositionReport, StaticReport

    try:
        mmsi = (row.get("MMSI") or "").strip()
        if not (mmsi.isdigit() and len(mmsi) <= 9):
            return MALFORMED, []
        mmsi = mmsi.zfill(9)
        at = datetime.fromisoformat((row.get("BaseDateTime") or "").strip().replace("Z", "+00:00"))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        lat, lon = _num(row, "LAT"), _num(row, "LON")
        sog, cog, heading = _num(row, "SOG"), _num(row, "COG"), _num(row, "Heading")
    except ValueError:
        return MALFORMED, []
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):  # NaN fails too
        return MALFORMED, []
    sog = sog if sog is None or math.isfinite(sog) else None
    cog = cog if cog is None or math.isfinite(cog) else None
    heading = heading if heading is None or math.isfinite(heading) else None
    reports = [PositionReport(mmsi, at, lat, lon, None if sog is None or sog >= 102.3 else sog,
                              None if cog is None or cog >= 360 else cog,
                              None if heading is None or heading >= 360 else int(heading))]
    imo = (row.get("IMO") or "").strip().upper().removeprefix("IMO")
    name = " ".join((row.get("VesselName") or "").split()) or None
    call = " ".join((row.get("CallSign") or "").split()) or None
    if name or call or imo:
        reports.append(StaticReport(mmsi, at, imo=imo if len(imo) == 7 and imo.isdigit() and imo_check_ok(imo)
                                    else None, name=name, call_sign=call))
    return OK, reports
