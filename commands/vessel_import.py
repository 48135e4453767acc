"""`watchfloor import noa` and `watchfloor import ais`: notices of arrival and recorded AIS feeds."""
from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
    """The file is refused, nothing stored: one line per problem; `code` is the command line's exit status (2: the
    command cannot be run as given, 1: the file held nothing usable)."""

    def __init__(self, problems: list[str], code: int = 1):
        super().__init__("\n".join(problems))
        self.problems = problems
        self.code = code


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


# A cell a spreadsheet would run as a formula when the notices are exported and opened (CSV injection, OWASP):
# refused, not neutralised, so what is stored is what the agency sent and nobody's export runs it.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _optional(field: str, raw: str, limit: int) -> str | None:
    if (raw or "").lstrip(" ").startswith(FORMULA_START):
        raise CommandError(field, f"'{raw.strip()[:16]}' begins with '{raw.lstrip(' ')[:1]}': a spreadsheet would run "
                                  "it as a formula; remove that character")
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


@dataclass
class NoaImportResult:
    ids: list[int]  # the notices stored
    already: list[Notice] = field(default_factory=list)  # in the file, and already stored (or twice in the file)


def _same_notice(a, b) -> bool:
    """The same vessel (IMO or MMSI) arriving at the same time (SQLite gives stored times back without zone)."""
    a_eta, b_eta = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (a.eta, b.eta))
    return bool((a.imo and a.imo == b.imo) or (a.mmsi and a.mmsi == b.mmsi)) and a_eta == b_eta


def import_notices(db, file: Path, zone: Zone, now: datetime | None = None) -> NoaImportResult:
    """Store the file's notices, except those already stored for the same vessel (IMO or MMSI) and ETA: the same
    file imported twice, or a notice sent again, is one notice."""
    from watchfloor.storage import locks
    from watchfloor.storage.vessels import add_notices, notices_of_keys

    now = now or datetime.now(UTC)
    notices = read_notices(file, zone, now)
    with db.session() as s:
        # An import into a zone takes the zone's lock (storage/locks.py): two imports of one file at once store it
        # once, the second seeing the first's rows.
        locks.hold(s, locks.deconfliction_lock(zone.code))
        keys = {k for n in notices for k in n.vessel_keys() if not k.startswith("name:")}
        stored = notices_of_keys(s, [zone.code], keys) if keys else []
        new, already = [], []
        for n in notices:
            if any(_same_notice(n, o) for o in [*stored, *new]):
                already.append(n)
            else:
                new.append(n)
        return NoaImportResult(add_notices(s, new, now) if new else [], already)


def import_noa(db, file: Path, zone: Zone, now: datetime | None = None) -> list[int]:
    return import_notices(db, file, zone, now).ids


# --- recorded AIS feeds -------------------------------------------------------------------------------------

# The national AIS archive's (MarineCadastre) columns by what they hold. Header spellings change by year
# (`BaseDateTime`, `LAT` until 2023; `base_date_time`, `latitude` since): a header cell is matched lower-cased,
# without `_` or spaces.
ARCHIVE_COLUMNS = {
    "mmsi": ("mmsi",), "time": ("basedatetime",), "lat": ("lat", "latitude"), "lon": ("lon", "longitude"),
    "sog": ("sog",), "cog": ("cog",), "heading": ("heading",), "name": ("vesselname",), "imo": ("imo",),
    "call_sign": ("callsign",),
}
_ARCHIVE_NEEDS = {"mmsi": "MMSI", "time": "BaseDateTime", "lat": "LAT", "lon": "LON"}
_BOM = b"\xef\xbb\xbf"
# Outcome words for the one line `import ais` prints when nothing in a file was usable.
_WHY = {"malformed": "malformed (neither an AIS sentence nor an archive row)", "checksum": "a wrong checksum",
        "empty": "no payload", "unknown_type": "a message type AIS does not define",
        "orphan": "parts of messages whose other parts never came",
        "ignored": "message types that carry no vessel position or identity",
        "future": "stamped in the future (a receiver's clock ahead)"}


@dataclass
class AisImportResult:
    lines: int
    outcomes: dict[str, int]
    tracks: int
    positions: int  # position history rows stored (and still there once retention has run)
    notices: int
    vessels: int = 0  # distinct vessels now tracked (stored before, or heard in this file)

    def nothing_usable(self) -> str | None:
        """Why no record of the file could be used (its commonest reason), or None when some could."""
        if self.outcomes.get("ok"):
            return None
        reasons = {k: v for k, v in self.outcomes.items() if v and k not in ("ok", "part", "skipped")}
        if not reasons:
            return "no records in it, only comments and blank lines" if self.lines else "no records in it"
        worst, n = max(sorted(reasons.items()), key=lambda kv: kv[1])
        return f"nothing usable: {n} of {self.lines} records {worst} ({_WHY.get(worst, worst)})"


def _records(fh) -> Iterator[bytes | None]:
    """The lines of a binary file without their ends, each at most MAX_LINE bytes: a longer one (a binary file,
    a log gone wrong) is None, and is never read whole into memory."""
    from watchfloor.ioc.reports import MAX_LINE

    readline = fh.readline
    while True:
        line = readline(MAX_LINE + 2)  # the longest line, and its "\r\n"
        if not line:
            return
        content = line.rstrip(b"\r\n")
        if len(content) <= MAX_LINE:
            yield content
            continue
        while not line.endswith(b"\n"):  # the rest of the long line, in bounded pieces
            line = readline(1 << 16)
            if not line:
                break
        yield None


def _skippable(line: bytes) -> bool:
    s = line.strip()
    return not s or s[:1] == b"#"


def _archive_header(line: bytes) -> dict[str, int] | None:
    """The archive CSV's header as {what: column index}, or None if the line is no such header."""
    cells = [c.strip().strip('"').lower().replace("_", "").replace(" ", "")
             for c in next(csv.reader([line.decode("utf-8", "replace")]))]
    if "mmsi" not in cells:
        return None
    return {what: cells.index(name) for what, names in ARCHIVE_COLUMNS.items() for name in names if name in cells}


def _sniff(file: Path) -> tuple[str, dict[str, int] | None, float | None]:
    """What the file is: "csv" (the archive's, with its header's columns), "nmea" (with the first time a line
    carries of its own, None if none does) or "empty" (nothing but comments and blank lines). Reads only as far
    as it needs to."""
    from watchfloor.ioc.ais import own_time

    with file.open("rb") as fh:
        first = True
        for line in _records(fh):
            if line is None:
                break  # an overlong first line: not a header
            if first:
                line, first = line.removeprefix(_BOM), False
            if _skippable(line):
                continue
            header = _archive_header(line)
            if header is not None:
                return "csv", header, None
            break
        else:
            return "empty", None, None
        fh.seek(0)
        for line in _records(fh):
            if line is not None and (t := own_time(line)) is not None:
                return "nmea", None, t
    return "nmea", None, None


def import_ais(db, directory, file: Path, progress: Callable[[int], None] | None = None,
               flush_every: int = 50_000, at: datetime | None = None) -> AisImportResult:
    """Feed every record through the live feed's path, each at its own time; flush in batches.

    NMEA lines take the time they carry (ioc/ais.py); a line without one takes the time of the last line that
    had one, or, before the first such line, `at` (else that first line's time). A file in which no line
    carries a time is refused unless `at` says when it was recorded: an old recording is never taken for live
    traffic. Archive CSV rows carry their time in BaseDateTime."""
    from sqlalchemy import func
    from sqlmodel import select

    from watchfloor.storage.vessel_tables import VesselPositionRow

    from .ais_ingest import AisIngest

    try:
        kind, header, first_time = _sniff(file)
    except OSError as e:
        raise VesselImportError([f"file: cannot read {file.name}: {type(e).__name__}"]) from None
    if kind == "empty":
        raise VesselImportError([f"file: no records in {file.name}, only comments and blank lines"])
    if header is not None:
        missing = [name for what, name in _ARCHIVE_NEEDS.items() if what not in header]
        if missing:
            raise VesselImportError([f"header: no {', '.join(missing)} column in {file.name} (the national archive's "
                                     "columns are MMSI,BaseDateTime,LAT,LON,SOG,COG,Heading,VesselName,IMO,"
                                     "CallSign,...)"])
    start = None
    if header is None:
        start = at or (datetime.fromtimestamp(first_time, UTC) if first_time is not None else None)
        if start is None:
            raise VesselImportError([f"file: no line of {file.name} carries a time of its own (a tag block "
                                     "\\c:, the NAIS trailer, a $PGHP line or a leading timestamp); give "
                                     "--at TIME to say when it was recorded"], code=2)

    ingest = AisIngest(db, directory)
    ingest.resume()
    with db.session() as s:
        before = s.exec(select(func.max(VesselPositionRow.id))).one() or 0
    totals = {"tracks": 0, "positions": 0, "notices": 0}
    outcomes: Counter[str] = Counter()

    def flush(everything: bool = False) -> None:
        # Notices are stamped with the feed's own time, not the wall clock, so replays read as they happened.
        when = ingest.latest or datetime.now(UTC)
        batch = ingest.take(when, everything=everything)
        done = ingest.write(batch, when)
        for k in totals:
            totals[k] += done[k]
        outcomes.update(batch.outcomes)

    count = 0
    with file.open("rb") as fh:
        records = _records(fh)
        if header is not None:
            lines = _archive_rows(records, header, ingest)
        else:
            lines = _nmea_lines(records, ingest, start)
        for _ in lines:
            count += 1
            if count % flush_every == 0:
                flush()
            if progress and count % PROGRESS_EVERY == 0:
                progress(count)
    orphaned = 0
    if header is None:
        ingest.decoder.finish()  # the parts of messages the recording never completed
        orphaned = ingest.decoder.orphaned
    flush(everything=True)  # every track written and every gap re-checked, none left waiting its turn
    if orphaned:  # counted as parts line by line; they never made a message
        outcomes["part"] -= orphaned
        outcomes["orphan"] += orphaned
    if progress:
        progress(count)
    with db.session() as s:
        stored = s.exec(select(func.count()).select_from(VesselPositionRow).where(VesselPositionRow.id > before)).one()
    return AisImportResult(count, dict(outcomes), totals["tracks"], stored, totals["notices"], len(ingest.tracks))


def _nmea_lines(records: Iterator[bytes | None], ingest, start: datetime) -> Iterator[None]:
    from watchfloor.ioc.reports import MALFORMED

    decoder = ingest.decoder
    for line in records:
        if line is None:
            ingest.outcomes[MALFORMED] += 1
        else:
            # A line without a time of its own is taken as heard with the last line that had one.
            ingest.feed(line, decoder.recorded_at or start)
        yield None


def _archive_rows(records: Iterator[bytes | None], header: dict[str, int], ingest) -> Iterator[None]:
    from watchfloor.ioc.reports import MALFORMED, SKIPPED

    seen_header = False
    for line in records:
        if line is None:
            outcome, reports = MALFORMED, []
        elif not seen_header:
            # Comments and blank lines before the header, then the header itself (not a record).
            if _skippable(line.removeprefix(_BOM)):
                ingest.outcomes[SKIPPED] += 1
                yield None
            else:
                seen_header = True
            continue
        elif _skippable(line):
            outcome, reports = SKIPPED, []
        else:
            cells = next(csv.reader([line.decode("utf-8", "replace")]))
            outcome, reports = archive_reports({what: cells[i] for what, i in header.items() if i < len(cells)})
        ingest.outcomes[outcome] += 1
        ingest.apply(reports)
        yield None


def _num(row: dict[str, str], key: str) -> float | None:
    value = (row.get(key) or "").strip()
    if not value:
        return None
    return float(value)  # "nan" and "inf" too: no range or reading check lets them through


def _reading(value: float | None, below: float) -> float | None:
    """A speed, course or heading as read, or None for "not available": AIS's own marks (SOG 102.3, COG 360,
    heading 511) and what the archive adds, negative courses (a 12-bit field read as signed: -49.6 is 360, "not
    available"; -149.6 was 260, but which decoder wrote which cannot be known, so none is guessed)."""
    return value if value is not None and 0 <= value < below else None


def archive_reports(row: dict[str, str]):
    """One row of the U.S. national AIS archive (MarineCadastre), keyed by ARCHIVE_COLUMNS, as reports with its
    outcome."""
    from watchfloor.ioc.ais import IGNORED, MALFORMED, OK, PositionReport, StaticReport

    try:
        mmsi = (row.get("mmsi") or "").strip()
        if not (mmsi.isdigit() and len(mmsi) <= 9):
            return MALFORMED, []
        mmsi = mmsi.zfill(9)
        at = datetime.fromisoformat((row.get("time") or "").strip().replace("Z", "+00:00"))
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        lat, lon = _num(row, "lat"), _num(row, "lon")
        sog, cog, heading = _num(row, "sog"), _num(row, "cog"), _num(row, "heading")
    except ValueError:
        return MALFORMED, []
    reports = []
    # 91 / 181 say "position not available" (any latitude or longitude out of range says nothing more)
    if lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180:
        heading = _reading(heading, 360)
        reports.append(PositionReport(mmsi, at, lat, lon, _reading(sog, 102.3), _reading(cog, 360),
                                      None if heading is None else int(heading)))
    imo = (row.get("imo") or "").strip().upper().removeprefix("IMO")
    name = " ".join((row.get("name") or "").split()) or None
    call = " ".join((row.get("call_sign") or "").split()) or None
    if name or call or imo:
        reports.append(StaticReport(mmsi, at, imo=imo if len(imo) == 7 and imo.isdigit() and imo_check_ok(imo)
                                    else None, name=name, call_sign=call))
    return (OK if reports else IGNORED), reports
